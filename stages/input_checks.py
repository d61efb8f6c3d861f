"""The checks every table of texts or labels from outside the pipeline passes: its columns, its
ids and its class spellings.

ingest runs them on the source and split on the golden test set, so both refuse the same
problems with the same messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stages.common import StageError

if TYPE_CHECKING:
    import pandas as pd


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
