"""Degenerate data never reaches a library traceback: a single class is refused where data is
checked (validate, validate --splits) and where it is used (train, evaluate's baseline), and
evaluate + gate answer on test splits with one class, a class without test rows, or predictions
that are all one class.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO_ROOT, make_rows, set_params, write_csv, write_tiny_splits
from tests.helpers import assert_failed_with, assert_no_traceback, run_module


def one_class_project(root: Path) -> Path:
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    texts, labels = make_rows(60)
    only = [lab for lab in labels if lab["label"] == "delivery_status"]
    keep = {lab["id"] for lab in only}
    write_csv(root / "texts.csv", [t for t in texts if t["id"] in keep])
    write_csv(root / "labels.csv", only)
    set_params(root, {"ingest": {"source": {"texts": "texts.csv", "labels": "labels.csv"}}})
    return root


def test_validate_refuses_a_single_class(tmp_path: Path) -> None:
    root = one_class_project(tmp_path)
    assert run_module("stages.ingest", root).returncode == 0
    proc = run_module("stages.validate", root)
    err = assert_failed_with(proc, "stages.validate", "classes.count")
    out = proc.stdout + err
    assert "observed 1; expected at least 2 classes" in out
    summary = (root / "reports/validation/raw/summary.md").read_text()
    assert "`classes.count` | **FAIL**" in summary


def test_validate_splits_refuses_a_single_class(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    texts, labels = make_rows(30)
    df = pd.DataFrame(texts).merge(pd.DataFrame(labels), on="id")
    df = df[df["label"] == "refund_request"]
    (tmp_path / "data/splits").mkdir(parents=True)
    for name, part in (("train", df.iloc[::2]), ("val", df.iloc[1::4]), ("test", df.iloc[3::4])):
        part.reset_index(drop=True).to_parquet(tmp_path / f"data/splits/{name}.parquet")
    proc = run_module("stages.validate", tmp_path, "--splits")
    assert_failed_with(proc, "stages.validate", "splits.class_count")


def test_train_refuses_a_single_class_before_training(split_dir: Path) -> None:
    train = split_dir / "data/splits/train.parquet"
    df = pd.read_parquet(train)
    df.assign(label="refund_request").to_parquet(train)
    for name in ("val", "test"):
        path = split_dir / f"data/splits/{name}.parquet"
        pd.read_parquet(path).assign(label="refund_request").to_parquet(path)
    proc = run_module("stages.train", split_dir)
    assert_failed_with(proc, "stages.train", "the train split has 1 class(es) ['refund_request']",
                       "data/splits/train.parquet", "classes.count")
    assert not (split_dir / "models/checkpoint").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("degenerate")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    write_tiny_splits(root, tiny_model_dir, epochs=1)
    set_params(root, {"gate": {"min_paired_rows": 1}})
    proc = run_module("stages.train", root)
    assert proc.returncode == 0, proc.stderr
    return root


def _one_class(test: pd.DataFrame) -> pd.DataFrame:
    return test[test["label"] == test["label"].iloc[0]]


def _class_without_rows(test: pd.DataFrame) -> pd.DataFrame:
    return test[test["label"] != test["label"].iloc[0]]


def _same_text(test: pd.DataFrame) -> pd.DataFrame:
    """Every row the same text (a model predicts it one way), under different true labels."""
    return test.assign(text=test["text"].iloc[0])


@pytest.mark.parametrize("make_test", [_one_class, _class_without_rows, _same_text],
                         ids=["one-class-in-test", "class-without-test-rows",
                              "all-predictions-one-class"])
@pytest.mark.slow
def test_evaluate_and_gate_answer_on_degenerate_test_splits(trained: Path, make_test) -> None:
    root = trained
    test_file = root / "data/splits/test.parquet"
    original = test_file.read_bytes()
    try:
        make_test(pd.read_parquet(test_file)).reset_index(drop=True).to_parquet(test_file)
        proc = run_module("stages.evaluate", root)
        assert proc.returncode == 0, proc.stderr[-3000:]
        ev = json.loads((root / "metrics/eval.json").read_text())
        assert 0 <= ev["candidate"]["macro_f1"] <= 1
        if make_test is _same_text:
            predicted = pd.read_parquet(root / "data/predictions/test.parquet")["candidate_pred"]
            assert predicted.nunique() == 1
        gate = run_module("stages.gate", root)
        assert gate.returncode in (0, 1), gate.stderr[-3000:]
        assert_no_traceback(gate.stderr)
        assert (root / "metrics/gate.json").is_file()
    finally:
        test_file.write_bytes(original)
