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
from stages.common import StageError, get_logger, load_params, params_section, redact_url
from stages.input_checks import check_ids, check_label_spellings, select_columns
from stages.io import write_parquet
from stages.tables import read_table

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)


@dataclass
class Source:
    texts: str
    labels: str


@params_section("ingest")
@dataclass
class IngestParams:
    source: Source
    # texts without a label row: "drop" them with a warning, or "fail"
    unlabelled_texts: Literal["drop", "fail"] = "drop"


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
    from stages.stage_cli import run_stage

    run_stage(main, "stages.ingest", __doc__)
