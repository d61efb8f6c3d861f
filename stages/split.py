"""split: stable train/val/test split; new data never moves old rows.

A row's split is a pure function of its normalised text and ``split.salt``, so adding, removing or
relabelling rows moves nothing else and duplicates share a split. ``split.test_set`` names a
golden test file under data/test_set/ that is the test split.
More: docs/splits.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stages import artifacts
from stages.artifacts import LABEL_COLUMNS, SPLIT_NAMES, TEXT_COLUMNS, split_path
from stages.common import (
    Fraction,
    PositiveInt,
    StageError,
    check_constraints,
    get_logger,
    load_params,
    params_section,
)
from stages.data import normalise_text
from stages.io import read_parquet, write_parquet

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)

TEST_SET_COLUMNS = {"required": ["id", "text", "label"], "optional": ["source", "created_at"]}


@dataclass
class TestSetFiles:
    texts: str
    labels: str


@params_section("split")
@dataclass
class SplitParams:
    salt: str = "split-v1"             # change it to reshuffle every row (restarts comparisons)
    val_fraction: Fraction = 0.15
    test_fraction: Fraction = 0.15
    # a class needs at least this many rows (and one distinct text per split) to be split
    min_rows_per_class: PositiveInt = 10
    # a golden test set under data/test_set/: one file (id, text, label) or {texts, labels}
    test_set: str | TestSetFiles | None = None

    def check_params(self, where: str) -> None:
        if self.val_fraction + self.test_fraction >= 1:
            raise StageError(f"val_fraction + test_fraction = "
                             f"{self.val_fraction + self.test_fraction:g} leaves no rows to train on",
                             where=where, fix="e.g. val_fraction: 0.15, test_fraction: 0.15")


def bucket(keys: pd.Series, salt: str) -> pd.Series:
    """A uniform number in [0, 1) per normalised text, fixed by the text and the salt alone."""
    def u(key: str) -> float:
        digest = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    return keys.map(u)


def assign_splits(df: pd.DataFrame, params: SplitParams, has_test_set: bool = False) -> pd.Series:
    """The split name for each row of ``df`` (index-aligned); with a golden test set, only
    train and val are assigned here."""
    import numpy as np
    import pandas as pd

    check_constraints(params, "params.yaml:split")  # also for params built in code
    key = df["text"].map(normalise_text)
    u = bucket(key, params.salt)
    test_name = "train" if has_test_set else "test"
    split = pd.Series(np.where(u < params.test_fraction, test_name,
                               np.where(u < params.test_fraction + params.val_fraction,
                                        "val", "train")), index=df.index, name="split")
    needed = [n for n in SPLIT_NAMES if n != "test" or not has_test_set]
    too_small = []
    for label, rows in df.groupby("label", sort=True):
        keys = key[rows.index]
        if len(rows) < params.min_rows_per_class or keys.nunique() < len(needed):
            too_small.append(f"{label} ({len(rows)} rows, {keys.nunique()} distinct texts)")
            continue
        for name in needed:
            present = split[rows.index]
            if (present == name).any():
                continue
            # take from the split with the most distinct texts of this class (never its last one)
            per_split = keys.groupby(present).nunique()
            donor = per_split.idxmax()
            candidates = keys[present == donor].drop_duplicates()
            moved = bucket(candidates, f"{params.salt}:{name}").idxmin()
            split[key == candidates[moved]] = name
            log.info("class %s had no %s rows: moved 1 text from %s (split.min_rows_per_class "
                     "applies; more distinct texts make this unnecessary)", label, name, donor)
    if too_small:
        raise StageError(
            f"class(es) too small to split: {', '.join(too_small)}",
            where=str(artifacts.LABELS),
            fix=f"each class needs at least {params.min_rows_per_class} rows and "
            f"{len(needed)} distinct texts: add examples, merge the class, or lower "
            "split.min_rows_per_class",
        )
    return split


def join(texts: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Labelled texts only (unlabelled ones were reported by ingest), sorted by id."""
    df = texts.merge(labels, on="id", how="inner", validate="one_to_one")
    return df.sort_values("id", ignore_index=True)


def read_test_set(spec: str | TestSetFiles) -> pd.DataFrame:
    """The golden test set, checked like ingest's inputs (columns, ids, encoding)."""
    from stages.input_checks import check_ids, check_label_spellings, select_columns
    from stages.tables import read_table

    paths = [spec] if isinstance(spec, str) else [spec.texts, spec.labels]
    for path in paths:
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(artifacts.TEST_SET_DIR.resolve()):
            raise StageError(f"split.test_set must be a file under {artifacts.TEST_SET_DIR}/ so that DVC "
                             "sees when it changes", where=f"params.yaml:split.test_set = {path}",
                             fix=f"move it to {artifacts.TEST_SET_DIR}/ (or `dvc import-url URL "
                                 f"{artifacts.TEST_SET_DIR}/`) and point split.test_set there")
    if isinstance(spec, str):
        df = select_columns(read_table(spec, "test set"), TEST_SET_COLUMNS, "test set", spec)
        check_ids(df, "test set", spec)
        check_label_spellings(df, "test set", spec)
    else:
        texts = select_columns(read_table(spec.texts, "test set texts"), TEXT_COLUMNS,
                               "test set texts", spec.texts)
        labels = select_columns(read_table(spec.labels, "test set labels"), LABEL_COLUMNS,
                                "test set labels", spec.labels)
        check_ids(texts, "test set texts", spec.texts)
        check_ids(labels, "test set labels", spec.labels)
        check_label_spellings(labels, "test set labels", spec.labels)
        df = texts.merge(labels, on="id", how="inner")
        if len(df) != len(texts) or len(df) != len(labels):
            raise StageError(f"test set: {len(texts)} texts and {len(labels)} labels but only "
                             f"{len(df)} ids in both", where=f"{spec.texts}, {spec.labels}",
                             fix="every golden text needs exactly one label row with its id")
    blank = df["text"].isna() | (df["text"].str.strip() == "") | df["label"].isna()
    if blank.any():
        raise StageError(f"test set: {int(blank.sum())} row(s) with an empty text or label, e.g. "
                         f"ids {df.loc[blank, 'id'].head(5).tolist()}", where=str(paths[0]),
                         fix="fill in or remove those rows")
    return df.sort_values("id", ignore_index=True)


def split_frames(df: pd.DataFrame, params: SplitParams) -> dict[str, pd.DataFrame]:
    """train/val/test frames: the stable assignment, or train/val plus the golden test set."""
    golden = read_test_set(params.test_set) if params.test_set is not None else None
    if golden is not None:
        golden_keys = set(golden["text"].map(normalise_text))
        clash = df["text"].map(normalise_text).isin(golden_keys) | df["id"].isin(golden["id"])
        log.info("golden test set %s: %d rows; %d data rows with the same text or id left out of "
                 "train/val", params.test_set, len(golden), int(clash.sum()))
        df = df[~clash].reset_index(drop=True)
        unknown = sorted(set(golden["label"]) - set(df["label"]))
        if unknown:
            raise StageError(f"test set has label(s) that no training row has: {unknown}",
                             where=str(params.test_set),
                             fix="fix the labels in the test set, or add training data for them")
    split = assign_splits(df, params, has_test_set=golden is not None)
    frames = {name: df[split == name].reset_index(drop=True) for name in SPLIT_NAMES}
    if golden is not None:
        frames["test"] = golden
    return frames


def main() -> None:
    params = load_params("split", SplitParams)
    df = join(read_parquet(artifacts.RAW_TEXTS, "texts", fix="run `dvc repro ingest`"),
              read_parquet(artifacts.LABELS, "labels", fix="run `dvc repro ingest`"))
    if df.empty:
        raise StageError("no labelled texts to split", where=f"{artifacts.RAW_TEXTS} + {artifacts.LABELS}",
                         fix="check that the label ids match the text ids")
    frames = split_frames(df, params)
    for name, part in frames.items():
        write_parquet(split_path(name), part)
        log.info("%-5s %5d rows, %d classes -> %s", name, len(part), part["label"].nunique(),
                 split_path(name))


if __name__ == "__main__":
    from stages.stage_cli import run_stage

    run_stage(main, "stages.split", __doc__)
