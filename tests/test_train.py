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
    assert manifest["torch"] and manifest["transformers"] and manifest["pooling"].startswith("cls")
    assert "samples_per_s" not in manifest and "created_unix" not in manifest  # volatile: metrics/train.json
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


def test_a_params_typo_answers_before_torch_is_imported(workdir: Path) -> None:
    """`python -m stages.train` with a misspelt key: the message, exit 1, and torch never loaded
    (it costs seconds; the check costs milliseconds)."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    set_params(workdir, {"train": {"max_lenght": 64}})
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "stages.train"], cwd=workdir,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 1
    assert "unknown parameter(s) ['max_lenght']" in proc.stderr and ".yaml:train" in proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "stages.common" in imported  # -X importtime did report
    assert not {"torch", "transformers"} & imported


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


@pytest.mark.slow
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


@pytest.mark.parametrize("pooling", ["mean", "max", "cls", None])
def test_pooling_follows_the_base_models_sentence_transformers_config(pooling: str | None,
                                                                      tmp_path: Path) -> None:
    import torch

    from stages.classifier import pool
    from stages.model import build_classifier
    from tests.tiny_model import build_tiny_bert

    base = build_tiny_bert(tmp_path / "base", pooling=pooling)
    model, tokenizer, source = build_classifier(str(base), ["a", "b", "c"], "auto", dropout=0.0)
    expected = pooling or "cls"
    assert model.pooling == expected
    assert source.startswith(expected) and ("sentence-transformers config" in source) == bool(pooling)
    # the logits are the head applied to exactly that pooling of the encoder's hidden states,
    # padding ignored: a short text scores the same alone and beside a long one
    batch = tokenizer(["a short one", "a much longer text with many more words in it"],
                      padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        hidden = model.encoder(**batch).last_hidden_state
        manual = model.head(pool(hidden, batch["attention_mask"], expected))
        logits = model(**batch).logits
        alone = model(**tokenizer(["a short one"], return_tensors="pt")).logits
    assert torch.allclose(logits, manual, atol=1e-6)
    assert torch.allclose(logits[0], alone[0], atol=1e-5)


def test_an_unsupported_pooling_config_asks_for_train_pooling(tmp_path: Path) -> None:
    from stages.common import StageError
    from stages.model import build_classifier
    from tests.tiny_model import build_tiny_bert

    base = build_tiny_bert(tmp_path / "base", pooling="mean_sqrt_len")
    with pytest.raises(StageError, match="set train.pooling to mean, cls or max"):
        build_classifier(str(base), ["a", "b"], "auto", dropout=0.0)
    model, _, source = build_classifier(str(base), ["a", "b"], "max", dropout=0.0)
    assert model.pooling == "max" and "train.pooling" in source


def test_train_stage_keeps_the_base_models_pooling(split_dir: Path, tiny_st_model_dir: Path) -> None:
    from stages.model import load_classifier

    set_params(split_dir, {"train": {"base_model": str(tiny_st_model_dir)}})
    proc = run_stage("train", split_dir)
    assert proc.returncode == 0, proc.stderr
    assert "pooling mean (sentence-transformers config" in proc.stderr
    ckpt = split_dir / "models/checkpoint"
    assert json.loads((ckpt / "pooling.json").read_text()) == {"mode": "mean"}
    assert json.loads((ckpt / "manifest.json").read_text())["pooling"].startswith("mean")
    model, _ = load_classifier(ckpt)
    assert model.pooling == "mean"
    # the training-data fingerprint: one hash per distinct train/val text, no text itself
    record = json.loads((ckpt / "training_data.json").read_text())
    train = pd.read_parquet(split_dir / "data/splits/train.parquet")
    val = pd.read_parquet(split_dir / "data/splits/val.parquet")
    assert record["rows"] == {"train": len(train), "val": len(val)}
    assert len(record["fingerprints"]) == pd.concat([train, val])["text"].str.lower().nunique()
    assert train["text"].iloc[0] not in (ckpt / "training_data.json").read_text()


def test_early_stopping_keeps_the_best_epoch() -> None:
    import torch

    from stages.train import Progress, TrainParams, end_of_epoch

    params = TrainParams(epochs=10, early_stopping_patience=2, early_stopping_min_delta=0.01)
    model = torch.nn.Linear(2, 2)
    prog, best = Progress(), None
    curve = [0.50, 0.70, 0.705, 0.69, 0.71]  # epoch 3 gains < min_delta; epoch 4 is worse
    for epoch, f1 in enumerate(curve, start=1):
        prog.epoch = epoch
        with torch.no_grad():
            model.weight.fill_(epoch)  # weights that say which epoch they are from
        best = end_of_epoch(prog, {"val_loss": 1.0, "val_accuracy": f1, "val_macro_f1": f1},
                            model, params) or best
        if prog.stopped_early:
            break
    assert prog.stopped_early and prog.epoch == 4  # two epochs without a 0.01 gain
    assert prog.best_epoch == 3 and prog.best_f1 == 0.705  # better, if only a little
    assert float(best["weight"][0, 0]) == 3.0


def test_train_stage_stops_early_and_says_so(split_dir: Path) -> None:
    # nothing can learn at learning rate 1e-12 (below float32 resolution of the weights; 0 is
    # refused by the params check): val macro-F1 is flat, so patience 1 stops at epoch 2
    set_params(split_dir, {"train": {"epochs": 6, "early_stopping_patience": 1,
                                     "learning_rate": 1e-12, "head_learning_rate": 1e-12}})
    proc = run_stage("train", split_dir)
    assert proc.returncode == 0, proc.stderr
    assert "early stop" in proc.stderr
    summary = json.loads((split_dir / "metrics/train.json").read_text())
    assert summary["stopped_early"] and summary["epochs_run"] == 2 and summary["max_epochs"] == 6
    assert summary["best_epoch"] == 1
    assert list(pd.read_csv(split_dir / "plots/train_epochs.csv")["epoch"]) == [1, 2]


def test_a_champion_from_before_the_shared_classifier_still_loads(tmp_path: Path,
                                                                 tiny_model_dir: Path) -> None:
    """Promoted before pooling.json existed: a transformers sequence classifier, no fingerprint."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from stages.model import class_names, load_classifier, predict_logits

    old = tmp_path / "old-champion"
    AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=2, id2label={0: "a", 1: "b"}).save_pretrained(old)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(old)
    model, tokenizer = load_classifier(old)
    assert class_names(model) == ["a", "b"]
    assert predict_logits(model, tokenizer, ["hello there"], 16).shape == (1, 2)


def test_the_epoch_progress_bar_counts_every_batch(split_dir: Path) -> None:
    import re

    proc = run_stage("train", split_dir)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((split_dir / "metrics/train.json").read_text())
    per_epoch = summary["optimizer_steps"] // summary["epochs_run"]
    # tqdm redraws with \r; every state of the first epoch's bar, first to last
    states = re.findall(r"epoch 1/\d+:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)", proc.stderr)
    assert states, proc.stderr[-2000:]
    assert states[0][0] == "0" and states[-1] == (str(per_epoch), str(per_epoch))
