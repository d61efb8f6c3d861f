"""ingest: read the user's texts and labels (CSV, JSONL or Parquet; path or fsspec URL).

Writes data/raw/texts.parquet and data/labels/labels.parquet as two separate outputs, so that a
relabelling is a labels-only change that DVC (and the PR report) can see as such. Checks only what
makes the files unusable: readability, encoding, required columns, ids. Content checks (blank
texts, unknown labels, class balance, drift) belong to the validate stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from stages import artifacts
from stages.artifacts import LABEL_COLUMNS, TEXT_COLUMNS
from stages.common import StageError, get_logger, load_params, redact_url, run_cli
from stages.io import read_table, write_parquet

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)


@dataclass
class Source:
    texts: str
    labels: str


@dataclass
class IngestParams:
    source: Source
    # texts without a label row: "drop" them with a warning, or "fail"
    unlabelled_texts: Literal["drop", "fail"] = "drop"


def select_columns(df: pd.DataFrame, columns: dict[str, list[str]], what: str, where: str) -> pd.DataFrame:
    """Keep the known columns; fail naming every missing required column."""
    df = df.rename(columns=lambda c: str(c).strip())
    missing = [c for c in columns["required"] if c not in df.columns]
    if missing:
        raise StageError(
            f"{what}: required column(s) {missing} missing; found {list(df.columns)}",
            where=where,
            fix=f"{what} files need the columns {columns['required']} "
            f"(optional: {columns['optional']})",
        )
    keep = columns["required"] + [c for c in columns["optional"] if c in df.columns]
    df = df[keep].copy()
    for c in keep:
        df[c] = df[c].astype("string")
    return df


def check_ids(df: pd.DataFrame, what: str, where: str) -> None:
    """Ids are present and unique; ids that differ only by surrounding whitespace are refused
    (" a1" and "a1" would silently become two rows, or a label would miss its text)."""
    blank = df["id"].isna() | (df["id"].str.strip() == "")
    if blank.any():
        rows = (blank[blank].index[:5] + 2).tolist()  # +2: header line and 1-based lines
        raise StageError(f"{what}: {int(blank.sum())} row(s) with an empty id (file rows {rows})",
                         where=where, fix="give every row a unique id")
    stripped = df["id"].str.strip()
    padded = stripped != df["id"]
    if padded.any():
        clash = stripped.duplicated(keep=False) & ~df["id"].duplicated(keep=False)
        if clash.any():
            key = stripped[clash].iloc[0]
            spellings = sorted(df.loc[stripped == key, "id"].unique())
            raise StageError(f"{what}: ids {spellings} differ only by surrounding whitespace",
                             where=where, fix="trim the ids at the source; ids must be unique "
                             "without leading or trailing spaces")
        raise StageError(f"{what}: {int(padded.sum())} id(s) have leading or trailing whitespace, "
                         f"e.g. {df.loc[padded, 'id'].head(3).tolist()}", where=where,
                         fix="trim the ids at the source (the same id must be spelled the same "
                         "in the texts and the labels file)")
    dup = df["id"].duplicated(keep=False)
    if dup.any():
        examples = sorted(df.loc[dup, "id"].unique())[:5]
        raise StageError(
            f"{what}: {int(df.loc[dup, 'id'].nunique())} id(s) appear more than once, e.g. {examples}",
            where=where, fix="ids must be unique; remove or merge the duplicate rows",
        )


def check_label_spellings(df: pd.DataFrame, what: str, where: str) -> None:
    """Refuse class names that differ only by case or surrounding spaces ("Refund", "refund ").

    Refused, not merged: which spelling is right is the data owner's call, and merging silently
    would change what the classes mean. Both spellings are named.
    """
    labels = df["label"].dropna()
    key = labels.str.strip().str.casefold()
    spellings = labels.groupby(key.to_numpy()).unique()
    clashes = [sorted(v) for v in spellings if len(v) > 1]
    if clashes:
        shown = "; ".join(" vs ".join(repr(x) for x in group) for group in clashes[:5])
        raise StageError(f"{what}: {len(clashes)} class name(s) are spelled in several ways that "
                         f"differ only by case or spaces: {shown}", where=where,
                         fix="use exactly one spelling per class in the labels file")


def join_report(texts: pd.DataFrame, labels: pd.DataFrame, params: IngestParams) -> None:
    """Fail on labels without a text; drop or fail on texts without a label, per params."""
    orphan = ~labels["id"].isin(texts["id"])
    if orphan.any():
        raise StageError(
            f"labels: {int(orphan.sum())} label row(s) have no text with the same id, "
            f"e.g. {labels.loc[orphan, 'id'].head(5).tolist()}",
            where=redact_url(params.source.labels),
            fix="every label id must exist in the texts file; remove the rows or add the texts",
        )
    unlabelled = ~texts["id"].isin(labels["id"])
    if unlabelled.any():
        msg = (f"{int(unlabelled.sum())} text(s) have no label, "
               f"e.g. {texts.loc[unlabelled, 'id'].head(5).tolist()}")
        if params.unlabelled_texts == "fail":
            raise StageError(f"texts: {msg}", where=redact_url(params.source.texts),
                             fix="label them, or set ingest.unlabelled_texts: drop")
        log.warning("%s; they will be left out of the splits (ingest.unlabelled_texts: drop)", msg)


def ingest(params: IngestParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    texts_at, labels_at = redact_url(params.source.texts), redact_url(params.source.labels)
    texts = select_columns(read_table(params.source.texts, "texts"), TEXT_COLUMNS, "texts",
                           texts_at)
    labels = select_columns(read_table(params.source.labels, "labels"), LABEL_COLUMNS, "labels",
                            labels_at)
    check_ids(texts, "texts", texts_at)
    check_ids(labels, "labels", labels_at)
    check_label_spellings(labels, "labels", labels_at)
    join_report(texts, labels, params)
    return texts.sort_values("id", ignore_index=True), labels.sort_values("id", ignore_index=True)


def main() -> None:
    params = load_params("ingest", IngestParams)
    texts, labels = ingest(params)
    log.info("read %d texts from %s and %d labels from %s", len(texts),
             redact_url(params.source.texts), len(labels), redact_url(params.source.labels))
    write_parquet(artifacts.RAW_TEXTS, texts)
    write_parquet(artifacts.LABELS, labels)
    log.info("wrote %s and %s", artifacts.RAW_TEXTS, artifacts.LABELS)


if __name__ == "__main__":
    run_cli(main)
