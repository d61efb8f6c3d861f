"""The sweep flow on a real git + DVC checkout (tiny model): two points become two DVC experiments,
run side by side as Prefect child runs, and the best by the validation metric becomes a branch."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import dvc, set_params
from tests.helpers import git

POINTS = [1e-3, 3e-3]


def read_exp_show(repo: Path) -> dict[str, dict[str, Any]]:
    """DVC's own view of the experiments: name -> (learning rate, val macro-F1)."""
    data = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    found = {}
    for baseline in data:
        for exp in baseline.get("experiments") or []:
            rev = exp["revs"][0]
            found[rev["name"]] = {
                "lr": rev["data"]["params"]["params.yaml"]["data"]["train"]["learning_rate"],
                "f1": rev["data"]["metrics"]["metrics/train.json"]["data"]["best_val_macro_f1"]}
    return found


@pytest.mark.slow  # two real training runs through dvc exp run (~30 s alone, 2 min under load)
def test_two_point_sweep_makes_two_experiments_and_branches_the_best(
        prefect_api: Any, pipeline_repo: Path) -> None:
    from flows.sweep import sweep

    set_params(pipeline_repo, {"sweep": {"grid": {"train.learning_rate": POINTS},
                                         "concurrency": 2, "targets": ["train"]}})
    git(pipeline_repo, "commit", "-qam", "sweep grid")
    state = sweep(repo_dir=str(pipeline_repo), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()

    exps = read_exp_show(pipeline_repo)
    names = [r["experiment"] for r in result["points"]]
    assert sorted(exps) == sorted(names) and len(names) == 2
    assert sorted(e["lr"] for e in exps.values()) == POINTS
    best = max(exps, key=lambda n: exps[n]["f1"])
    assert result["best"]["experiment"] == best
    assert result["best"]["best_val_macro_f1"] == exps[best]["f1"]
    assert [r["best_val_macro_f1"] for r in result["points"]] == sorted(
        (e["f1"] for e in exps.values()), reverse=True)

    # the best point is a branch whose params.yaml and metrics are that experiment's
    branch = result["branch"]
    assert branch.startswith("sweep/")
    shown = subprocess.run(["git", "show", f"{branch}:params.yaml"], cwd=pipeline_repo,
                           capture_output=True, text=True, check=True).stdout
    assert yaml.safe_load(shown)["train"]["learning_rate"] == exps[best]["lr"]
    metrics = json.loads(subprocess.run(["git", "show", f"{branch}:metrics/train.json"],
                                        cwd=pipeline_repo, capture_output=True, text=True,
                                        check=True).stdout)
    assert metrics["best_val_macro_f1"] == exps[best]["f1"]

    # the workspace was not touched by the runs (they ran in DVC's temp copies); the report is
    report = (pipeline_repo / "reports/sweep.md").read_text()
    assert best in report.splitlines()[6] and "validation split" in report
    assert not (pipeline_repo / "models/checkpoint").exists()


@pytest.mark.parametrize(("grid", "metric", "message"), [
    ({}, "best_val_macro_f1", "sweep.grid is empty"),
    ({"train.learnin_rate": [1e-3]}, "best_val_macro_f1", "unknown parameter 'train.learnin_rate'"),
    ({"train.learning_rate": [1e-3]}, "test_macro_f1", "looks like a test metric"),
])
def test_bad_sweeps_are_refused_before_any_run(tmp_path: Path, grid: dict, metric: str,
                                               message: str) -> None:
    import shutil

    from scale.sweep import SweepParams, check_params
    from stages.common import StageError
    from tests.conftest import REPO_ROOT

    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    with pytest.raises(StageError, match=message):
        check_params(SweepParams(grid=grid, metric=metric), tmp_path / "params.yaml")


def test_random_mode_draws_distinct_seeded_points() -> None:
    from scale.sweep import SweepParams, plan_points

    params = SweepParams(grid={"train.learning_rate": [1e-4, 2e-4, 3e-4],
                               "train.dropout": [0.1, 0.2]}, mode="random", samples=3, seed=7)
    points = plan_points(params)
    assert len(points) == 3 and len({json.dumps(p, sort_keys=True) for p in points}) == 3
    assert points == plan_points(params)  # the same seed, the same points
    assert len(plan_points(SweepParams(grid=params.grid))) == 6  # grid: every combination
