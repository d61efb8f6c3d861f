"""The whole pipeline, as a user runs it: `dvc repro` in a real git + DVC repository (tiny model).

One test walks the life of a repo, because every step needs the one before it: a first full run,
a no-op re-run, an experiment that changes one evaluate param, and a labels-only change.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import TINY_PIPELINE, dvc, set_params
from tests.helpers import git

pytestmark = pytest.mark.slow  # the whole pipeline, dvc repro on a real repository

STAGES = ["ingest", "validate", "split", "validate_splits", "label_audit", "train", "oos", "evaluate",
          "gate", "export", "quantize", "benchmark"]


def lock(repo: Path) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())["stages"]


def out_md5(repo: Path, stage: str, path: str) -> str:
    return next(o["md5"] for o in lock(repo)[stage]["outs"] if o["path"] == path)


def test_repro_runs_everything_then_nothing_then_only_what_changed(pipeline_repo: Path) -> None:
    repo = pipeline_repo
    # the random tiny model cannot reach the real floors; the gate logic has its own tests
    set_params(repo, TINY_PIPELINE)

    first = dvc(repo, "repro")
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout, stage
    assert set(lock(repo)) == set(STAGES)
    for path in ("models/checkpoint/model.safetensors", "models/onnx/model.int8.onnx",
                 "metrics/eval.json", "metrics/gate.json", "plots/confusion.png",
                 "reports/validation/raw/report.html"):
        assert (repo / path).exists(), path
    assert json.loads((repo / "metrics/gate.json").read_text())["passed"] is True
    shown = dvc(repo, "metrics", "show", "--json").stdout
    assert "macro_f1" in shown

    again = dvc(repo, "repro")
    assert "Data and pipelines are up to date." in again.stdout
    assert "Running stage" not in again.stdout
    assert "Data and pipelines are up to date." in dvc(repo, "status").stdout

    # re-validating the same splits writes new report timestamps but must not re-train
    dvc(repo, "repro", "--force", "--single-item", "validate_splits")
    assert "Data and pipelines are up to date." in dvc(repo, "status").stdout

    # a clone that fetches the outputs from the cache (as `dvc pull` would) is up to date too:
    # no output is left that only the original workspace has
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first run")
    clone = repo.parent / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    dvc(clone, "cache", "dir", str(repo / ".dvc/cache"))
    dvc(clone, "checkout")
    assert "Data and pipelines are up to date." in dvc(clone, "status").stdout

    # an experiment on an evaluate param re-runs evaluate, never the stages before it
    exp = dvc(repo, "exp", "run", "-S", "evaluate.tfidf_max_features=500")
    assert "Running stage 'evaluate'" in exp.stdout
    for upstream in ("ingest", "validate", "split", "validate_splits", "train"):
        assert f"Running stage '{upstream}'" not in exp.stdout, upstream

    # relabelling three rows is a labels-only change: raw texts keep their hash
    texts_md5 = out_md5(repo, "ingest", "data/raw/texts.parquet")
    labels_md5 = out_md5(repo, "ingest", "data/labels/labels.parquet")
    labels = pd.read_csv(repo / "data/sample/labels.csv")
    labels.loc[:2, "label"] = "payment_failed"
    labels.to_csv(repo / "data/sample/labels.csv", index=False)
    status = dvc(repo, "status", "ingest").stdout
    assert "data/sample/labels.csv" in status and "data/sample/texts.csv" not in status
    dvc(repo, "repro", "--single-item", "ingest")
    assert out_md5(repo, "ingest", "data/raw/texts.parquet") == texts_md5
    assert out_md5(repo, "ingest", "data/labels/labels.parquet") != labels_md5
