"""train and evaluate on the tiny model: outputs, determinism, and the errors a user can hit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stages.train import length_grouped_batches
from tests.conftest import run_stage, set_params


def weights_of(root: Path) -> bytes:
    from safetensors.torch import load_file

    tensors = load_file(root / "models/checkpoint/model.safetensors")
    return b"".join(tensors[k].numpy().tobytes() for k in sorted(tensors))


def test_train_writes_checkpoint_manifest_and_curves(split_dir: Path) -> None:
    proc = run_stage("train", split_dir)
    assert proc.returncode == 0, proc.stderr
    ckpt = split_dir / "models/checkpoint"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "labels.json", "manifest.json"):
        assert (ckpt / name).is_file(), name
    assert not list(ckpt.glob("*.bin")), "weights must be safetensors only"
    config = json.loads((ckpt / "config.json").read_text())
    labels = json.loads((ckpt / "labels.json").read_text())
    assert labels == sorted(labels) and len(labels) == 6
    assert [config["id2label"][str(i)] for i in range(6)] == labels
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert manifest["seed"] == 42 and manifest["device"] == "cpu"
    assert set(manifest["data_sha256"]) == {"train", "val"}
    assert manifest["samples_per_s"] > 0 and manifest["torch"] and manifest["transformers"]
    epochs = pd.read_csv(split_dir / "plots/train_epochs.csv")
    assert list(epochs["epoch"]) == [1, 2]
    steps = pd.read_csv(split_dir / "plots/train_steps.csv")
    assert len(steps) > 0 and steps["loss"].notna().all()
    summary = json.loads((split_dir / "metrics/train.json").read_text())
    assert summary["best_epoch"] in (1, 2)
    assert summary["best_val_macro_f1"] == epochs["val_macro_f1"].max()


def test_same_seed_same_weights_and_metrics(split_dir: Path) -> None:
    assert run_stage("train", split_dir).returncode == 0
    first_weights = weights_of(split_dir)
    first_curve = (split_dir / "plots/train_epochs.csv").read_text()
    assert run_stage("train", split_dir).returncode == 0
    assert weights_of(split_dir) == first_weights
    assert (split_dir / "plots/train_epochs.csv").read_text() == first_curve


def test_base_model_pointing_nowhere(split_dir: Path) -> None:
    set_params(split_dir, {"train": {"base_model": "/nonexistent/model-dir"}})
    proc = run_stage("train", split_dir)
    assert proc.returncode == 1
    assert "no Hugging Face model at '/nonexistent/model-dir'" in proc.stderr
    assert "train.base_model" in proc.stderr
    assert not (split_dir / "models/checkpoint").exists()


def test_missing_model_package_is_named(split_dir: Path) -> None:
    set_params(split_dir, {"train": {"base_model": "pkg:no_such_model_pkg"}})
    proc = run_stage("train", split_dir)
    assert proc.returncode == 1
    assert "model package 'no_such_model_pkg' is not installed" in proc.stderr


def test_divergence_is_reported_and_nothing_written(split_dir: Path) -> None:
    set_params(split_dir, {"train": {"learning_rate": 1.0e12, "grad_clip": 0.0, "epochs": 3}})
    proc = run_stage("train", split_dir)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "training diverged" in proc.stderr and "lower train.learning_rate" in proc.stderr
    assert not (split_dir / "models/checkpoint").exists()


def test_length_grouped_batches_cover_every_example_once() -> None:
    import random

    lengths = [random.Random(i).randint(3, 60) for i in range(1000)]
    batches = length_grouped_batches(lengths, 32, random.Random(0))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    assert all(len(b) <= 32 for b in batches)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10, "batches should group similar lengths"


def test_evaluate_scores_candidate_and_baselines(split_dir: Path) -> None:
    assert run_stage("train", split_dir).returncode == 0
    proc = run_stage("evaluate", split_dir)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((split_dir / "metrics/eval.json").read_text())
    assert metrics["champion"] is None
    assert set(metrics["baselines"]) == {"majority", "tfidf_logreg"}
    test = pd.read_parquet(split_dir / "data/splits/test.parquet")
    pred = pd.read_parquet(split_dir / "data/predictions/test.parquet")
    assert list(pred["id"]) == list(test["id"])
    probs = pred[[c for c in pred if c.startswith("prob_")]]
    assert probs.shape[1] == 6 and (probs.sum(axis=1) - 1).abs().max() < 1e-5
    accuracy = (pred["candidate_pred"] == pred["label"]).mean()
    assert metrics["candidate"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert set(metrics["slices"]["length_bucket"]) <= {"short", "medium", "long"}
    assert (split_dir / "plots/confusion.png").read_bytes()[:4] == b"\x89PNG"
    confusion = pd.read_csv(split_dir / "plots/confusion.csv")
    assert len(confusion) == len(test)


def test_champion_is_scored_with_its_own_max_length(split_dir: Path) -> None:
    """A candidate trained on short inputs must not truncate the champion's inputs too."""
    import shutil

    assert run_stage("train", split_dir).returncode == 0  # max_length 32
    assert run_stage("evaluate", split_dir).returncode == 0
    as_candidate = json.loads((split_dir / "metrics/eval.json").read_text())["candidate"]
    shutil.copytree(split_dir / "models/checkpoint", split_dir / "models/champion")
    (split_dir / "models/champion.json").write_text(json.dumps({"champion": {"path": "models/champion"}}))

    set_params(split_dir, {"train": {"max_length": 4}})
    assert run_stage("train", split_dir).returncode == 0
    assert run_stage("evaluate", split_dir).returncode == 0
    metrics = json.loads((split_dir / "metrics/eval.json").read_text())
    assert metrics["champion"] == as_candidate
