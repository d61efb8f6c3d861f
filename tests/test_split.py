"""split: deterministic, stratified, duplicates never straddle splits, small classes fail clearly."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stages.data import normalise_text
from stages.split import SplitParams, assign_splits
from tests.conftest import make_rows, run_stage


def frame(n_per_class: int = 20, seed: int = 0) -> pd.DataFrame:
    texts, labels = make_rows(n_per_class, seed)
    return pd.DataFrame(texts).merge(pd.DataFrame(labels), on="id")


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    df = frame()
    a = assign_splits(df, SplitParams(seed=1))
    b = assign_splits(df, SplitParams(seed=1))
    c = assign_splits(df, SplitParams(seed=2))
    assert a.equals(b)
    assert not a.equals(c)


def test_stratified_every_class_in_every_split() -> None:
    df = frame(20)
    split = assign_splits(df, SplitParams(val_fraction=0.2, test_fraction=0.2))
    counts = pd.crosstab(df["label"], split)
    assert (counts > 0).all().all()
    assert counts["test"].between(3, 5).all() and counts["val"].between(3, 5).all()


def test_normalised_duplicates_stay_together() -> None:
    df = frame(20)
    dup = df.iloc[[0, 1]].copy()
    dup["id"] = ["dup-a", "dup-b"]
    dup["text"] = ["  " + dup["text"].iloc[0].upper() + "  ", dup["text"].iloc[1].replace(" ", "   ")]
    df = pd.concat([df, dup], ignore_index=True)
    split = assign_splits(df, SplitParams())
    keys = df["text"].map(normalise_text)
    per_key = split.groupby(keys).nunique()
    assert (per_key == 1).all()
    assert split[df["id"] == "dup-a"].iloc[0] == split.iloc[0]


def test_class_with_a_single_example_fails(workdir: Path) -> None:
    texts, labels = make_rows(12)
    texts.append({"id": "lonely", "text": "a class of one", "source": "email"})
    labels.append({"id": "lonely", "label": "solo_class"})
    (workdir / "data/raw").mkdir(parents=True)
    (workdir / "data/labels").mkdir(parents=True)
    pd.DataFrame(texts).to_parquet(workdir / "data/raw/texts.parquet")
    pd.DataFrame(labels).to_parquet(workdir / "data/labels/labels.parquet")
    proc = run_stage("split", workdir)
    assert proc.returncode == 1
    assert "class(es) too small to split: solo_class (1 rows, 1 distinct texts)" in proc.stderr
    assert "split.min_rows_per_class" in proc.stderr
    assert not (workdir / "data/splits").exists()


def test_writes_three_parquet_splits(workdir: Path) -> None:
    texts, labels = make_rows(15)
    (workdir / "data/raw").mkdir(parents=True)
    (workdir / "data/labels").mkdir(parents=True)
    pd.DataFrame(texts).to_parquet(workdir / "data/raw/texts.parquet")
    pd.DataFrame(labels).to_parquet(workdir / "data/labels/labels.parquet")
    assert run_stage("split", workdir).returncode == 0
    parts = {n: pd.read_parquet(workdir / f"data/splits/{n}.parquet") for n in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == len(texts)
    assert set(parts["train"].columns) >= {"id", "text", "label"}
    ids = [set(p["id"]) for p in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.0, 0.2), (1.2, 0.1)])
def test_bad_fractions_are_rejected(fractions: tuple[float, float]) -> None:
    from stages.common import StageError

    with pytest.raises(StageError, match="split fractions"):
        assign_splits(frame(), SplitParams(val_fraction=fractions[0], test_fraction=fractions[1]))
