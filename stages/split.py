"""split: deterministic, stratified train/val/test split that never leaks duplicates.

Texts are grouped by their normalised form (case and whitespace ignored); a group is assigned to
one split as a whole, so the same message can never be in train and in test. Within each class
the groups are shuffled with ``split.seed`` and dealt out until each split has its share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from stages.common import StageError, get_logger, load_params, run_cli
from stages.data import SPLIT_NAMES, normalise_text, split_path
from stages.io import write_parquet

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)

TEXTS = "data/raw/texts.parquet"
LABELS = "data/labels/labels.parquet"


@dataclass
class SplitParams:
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # a class needs at least this many rows (and one distinct text per split) to be split
    min_rows_per_class: int = 10


def join(texts: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Labelled texts only (unlabelled ones were reported by ingest), sorted by id."""
    df = texts.merge(labels, on="id", how="inner", validate="one_to_one")
    return df.sort_values("id", ignore_index=True)


def assign_splits(df: pd.DataFrame, params: SplitParams) -> pd.Series:
    """Return the split name for each row of ``df`` (index-aligned)."""
    import numpy as np
    import pandas as pd

    if not 0 < params.val_fraction < 1 or not 0 < params.test_fraction < 1 \
            or params.val_fraction + params.test_fraction >= 1:
        raise StageError("split fractions must be in (0, 1) and leave rows for training",
                         where="params.yaml:split", fix="e.g. val_fraction: 0.15, test_fraction: 0.15")
    rng = np.random.default_rng(params.seed)
    key = df["text"].map(normalise_text)
    # a duplicate group follows the label of its first row; conflicting labels are validate's job
    group_label = df.groupby(key, sort=True)["label"].first()
    group_size = key.value_counts()
    assignment: dict[str, str] = {}
    too_small = []
    for label in sorted(group_label.unique()):
        groups = group_label.index[group_label == label].to_numpy()
        n_rows = int(group_size[groups].sum())
        if n_rows < params.min_rows_per_class or len(groups) < len(SPLIT_NAMES):
            too_small.append(f"{label} ({n_rows} rows, {len(groups)} distinct texts)")
            continue
        groups = groups[rng.permutation(len(groups))]
        n_test = max(1, round(n_rows * params.test_fraction))
        n_val = max(1, round(n_rows * params.val_fraction))
        taken = {"test": 0, "val": 0}
        for i, g in enumerate(groups):
            remaining_groups = len(groups) - i
            # fill test, then val; keep at least one group back for train
            if taken["test"] < n_test and remaining_groups > 2:
                name = "test"
            elif taken["val"] < n_val and remaining_groups > 1:
                name = "val"
            else:
                name = "train"
            assignment[g] = name
            if name != "train":
                taken[name] += int(group_size[g])
    if too_small:
        raise StageError(
            f"class(es) too small to split: {', '.join(too_small)}",
            where=LABELS,
            fix=f"each class needs at least {params.min_rows_per_class} rows and "
            f"{len(SPLIT_NAMES)} distinct texts: add examples, merge the class, or lower "
            "split.min_rows_per_class",
        )
    return pd.Series(key.map(assignment).to_numpy(), index=df.index, name="split")


def main() -> None:
    import pandas as pd

    params = load_params("split", SplitParams)
    df = join(pd.read_parquet(TEXTS), pd.read_parquet(LABELS))
    if df.empty:
        raise StageError("no labelled texts to split", where=f"{TEXTS} + {LABELS}",
                         fix="check that the label ids match the text ids")
    split = assign_splits(df, params)
    for name in SPLIT_NAMES:
        part = df[split == name].reset_index(drop=True)
        write_parquet(split_path(name), part)
        log.info("%-5s %5d rows, %d classes -> %s", name, len(part), part["label"].nunique(),
                 split_path(name))


if __name__ == "__main__":
    run_cli(main)
