"""Resumable and distributed training on the tiny model (CPU): a killed run continues and ends
where an uninterrupted run ends; two gloo processes match one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO_ROOT, run_stage, set_params
from tests.test_train import weights_of

# Runs the real stage; the second resumable-state save SIGKILLs the process just before it
# writes, so the work since the first save is lost, as in a real crash.
KILL_ON_SECOND_SAVE = """
import os, signal
import stages.train as t
saves = []
real_save = t.save_resume_state
def save(state):
    saves.append(state["progress"]["step"])
    if len(saves) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(state)
t.save_resume_state = save
from stages.common import run_cli
run_cli(t.main)
"""

RESUME = {"epochs": 2, "batch_size": 4, "save_every": 3, "log_every": 1}


def run_killed(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-c", KILL_ON_SECOND_SAVE], cwd=cwd, env=env,
                          capture_output=True, text=True)


def outputs(root: Path) -> dict:
    return {"weights": weights_of(root),
            "epochs": pd.read_csv(root / "plots/train_epochs.csv"),
            "steps": pd.read_csv(root / "plots/train_steps.csv")}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(split_dir: Path, tmp_path: Path) -> None:
    set_params(split_dir, {"train": RESUME})
    assert run_stage("train", split_dir).returncode == 0
    uninterrupted = outputs(split_dir)
    assert json.loads((split_dir / "models/train_state/done.json").read_text())["complete"]

    for p in ("models", "plots", "metrics"):
        subprocess.run(["rm", "-rf", str(split_dir / p)], check=True)
    killed = run_killed(split_dir)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (split_dir / "models/train_state/state.pt").is_file()
    assert not (split_dir / "models/checkpoint").exists(), "a killed run must not leave a checkpoint"

    resumed = run_stage("train", split_dir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from step 3" in resumed.stderr
    summary = json.loads((split_dir / "metrics/train.json").read_text())
    assert summary["resumed_from_step"] == 3
    after = outputs(split_dir)
    assert after["weights"] == uninterrupted["weights"]
    pd.testing.assert_frame_equal(after["epochs"], uninterrupted["epochs"])
    pd.testing.assert_frame_equal(after["steps"], uninterrupted["steps"])
    assert not (split_dir / "models/train_state/state.pt").exists(), "state is dropped when done"


def test_changed_params_never_resume_stale_state(split_dir: Path) -> None:
    set_params(split_dir, {"train": RESUME})
    assert run_killed(split_dir).returncode == -9
    set_params(split_dir, {"train": {"learning_rate": 5e-4}})
    proc = run_stage("train", split_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "starting fresh" in proc.stderr
    assert json.loads((split_dir / "metrics/train.json").read_text())["resumed_from_step"] == 0


def test_changed_data_never_resumes_stale_state(split_dir: Path) -> None:
    set_params(split_dir, {"train": RESUME})
    assert run_killed(split_dir).returncode == -9
    train = pd.read_parquet(split_dir / "data/splits/train.parquet")
    train.iloc[:-1].to_parquet(split_dir / "data/splits/train.parquet")
    proc = run_stage("train", split_dir)
    assert proc.returncode == 0
    assert "starting fresh" in proc.stderr


@pytest.mark.parametrize("option", [
    pytest.param({"distributed": True, "nproc_per_node": 2}, marks=pytest.mark.slow),  # torchrun, 2 ranks
    {"grad_accum_steps": 2}])
def test_two_processes_or_accumulation_match_one_process(split_dir: Path, tiny_model_dir: Path,
                                                         option: dict) -> None:
    # without dropout the only differences left are float summation order and rank seeds
    no_dropout = split_dir / "tiny-no-dropout"
    shutil.copytree(tiny_model_dir, no_dropout)
    config = json.loads((no_dropout / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (no_dropout / "config.json").write_text(json.dumps(config))
    set_params(split_dir, {"train": {"epochs": 2, "batch_size": 8, "save_every": 0, "dropout": 0.0,
                                     "base_model": str(no_dropout)}})
    assert run_stage("train", split_dir).returncode == 0
    single = json.loads((split_dir / "metrics/train.json").read_text())
    single_curve = pd.read_csv(split_dir / "plots/train_epochs.csv")

    set_params(split_dir, {"train": option})
    proc = run_stage("train", split_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    multi = json.loads((split_dir / "metrics/train.json").read_text())
    curve = pd.read_csv(split_dir / "plots/train_epochs.csv")
    assert multi["processes"] == option.get("nproc_per_node", 1)
    assert multi["optimizer_steps"] == single["optimizer_steps"]
    assert (curve["val_loss"] - single_curve["val_loss"]).abs().max() < 0.02
    assert abs(multi["best_val_macro_f1"] - single["best_val_macro_f1"]) < 0.1
