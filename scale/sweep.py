"""Sweeps: a grid or random search over params.yaml keys, each point one DVC experiment.

Each point runs as ``dvc exp run --temp -n <name> -S key=value ... <targets>`` and is ranked by a
validation metric from metrics/train.json, never a test metric. This module is the engine-free
part (plan, run one, rank, keep the best, report); flows/sweep.py fans the points out.
More: docs/scale.md.
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stages import artifacts
from stages.common import PositiveInt, StageError, get_logger, params_section, read_params_file
from stages.report_format import MISSING, md_table, num
from stages.vcs import file_at_revision, git, is_lock_error

log = get_logger(__name__)

LOCK_RETRIES = 5  # a point whose `dvc exp run` met another point's short repository lock


@params_section("sweep")
@dataclass
class SweepParams:
    """``sweep:`` in params.yaml."""

    grid: dict[str, list[Any]] = field(default_factory=dict)  # "section.key" -> values
    mode: Literal["grid", "random"] = "grid"
    samples: PositiveInt = 4         # random mode: points drawn from the grid's combinations
    seed: int = 0
    concurrency: PositiveInt = 2     # points running at once
    targets: list[str] = field(default_factory=lambda: ["train"])  # dvc exp run targets
    metric: str = "best_val_macro_f1"  # key of metrics/train.json; higher is better
    keep_best: Literal["branch", "none"] = "branch"
    name: str = "sweep"


def check_params(params: SweepParams, params_file: Path) -> None:
    """Refuse what would make a sweep meaningless: unknown keys, empty grids, a test metric.

    The rules no field bound can say; the bounds themselves (samples, concurrency) are declared on
    :class:`SweepParams` and checked when the section is loaded.
    """
    where = f"{params_file}:sweep"
    if not params.grid:
        raise StageError("sweep.grid is empty", where=where,
                         fix="add keys to try, e.g. train.learning_rate: [5.0e-5, 1.0e-4]")
    if "test" in params.metric.lower():
        raise StageError(f"sweep.metric {params.metric!r} looks like a test metric", where=where,
                         fix="rank by validation (best_val_macro_f1): the test split is the gate's")
    data = read_params_file(params_file)
    for key, values in params.grid.items():
        section, _, leaf = key.partition(".")
        if section in ("sweep", "score", "flow") or not leaf:
            raise StageError(f"sweep.grid key {key!r} is not a pipeline parameter", where=where,
                             fix="use section.key of a DVC stage's params, e.g. train.dropout")
        node: Any = data.get(section)
        for part in leaf.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is KeyError:
            raise StageError(f"unknown parameter {key!r}", where=where,
                             fix="sweep existing keys only: a typo would silently train the default")
        if not isinstance(values, list) or not values:
            raise StageError(f"sweep.grid.{key} must be a non-empty list", where=where)


def plan_points(params: SweepParams) -> list[dict[str, Any]]:
    """Every combination (grid), or ``samples`` distinct ones drawn with ``seed`` (random)."""
    keys = list(params.grid)
    combos = [dict(zip(keys, values, strict=True))
              for values in itertools.product(*(params.grid[k] for k in keys))]
    if params.mode == "random" and params.samples < len(combos):
        combos = random.Random(params.seed).sample(combos, params.samples)
    return combos


def set_param_args(point: dict[str, Any]) -> list[str]:
    """``-S key=value`` flags; values in YAML/JSON form, as `dvc exp run -S` parses them."""
    args = []
    for key, value in point.items():
        args += ["-S", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return args


def experiment_ref(repo: Path, name: str) -> tuple[str, str] | None:
    """(ref, commit) of the experiment called ``name`` (refs/exps/<baseline>/<name>)."""
    out = git("for-each-ref", "--format=%(refname) %(objectname)", "refs/exps", cwd=repo)
    hits = [line.split() for line in out.splitlines() if line.split()[0].endswith(f"/{name}")]
    return (hits[-1][0], hits[-1][1]) if hits else None


def experiment_metrics(repo: Path, ref: str) -> dict[str, Any]:
    """metrics/train.json as the experiment committed it."""
    raw = file_at_revision(ref, artifacts.TRAIN_METRICS.as_posix(), cwd=repo)
    if raw is None:
        raise StageError(f"experiment has no {artifacts.TRAIN_METRICS}", where=ref,
                         fix="sweep.targets must include train")
    return json.loads(raw)


def run_point(repo: Path, name: str, point: dict[str, Any], targets: list[str], metric: str,
              dvc: list[str], env: dict[str, str], timeout_s: float | None = None
              ) -> dict[str, Any]:
    """Run one point as a DVC experiment; its row for the results table (never raises for a
    failed training: the row says ``failed`` and why)."""
    cmd = [*dvc, "exp", "run", "--temp", "-n", name, *set_param_args(point), *targets]
    start = time.perf_counter()
    row: dict[str, Any] = {"experiment": name, "params": point, metric: None, "status": "failed"}
    for attempt in range(1, LOCK_RETRIES + 1):
        try:
            proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            row["error"] = f"timed out after {timeout_s} s"
            break
        output = proc.stdout + proc.stderr
        if proc.returncode == 0:
            break
        if is_lock_error(output) and attempt < LOCK_RETRIES:
            log.info("%s: repository lock busy (another point is starting); retry %d", name,
                     attempt)
            time.sleep(2 * attempt)
            continue
        errors = [line.strip() for line in output.splitlines() if "ERROR" in line]
        row["error"] = (errors[-1] if errors else output.strip()[-300:])[:500]
        break
    row["wall_s"] = round(time.perf_counter() - start, 1)
    if "error" in row:
        log.error("%s failed: %s", name, row["error"])
        return row
    found = experiment_ref(repo, name)
    if found is None:
        row["error"] = "dvc exp run succeeded but left no experiment ref"
        return row
    row["ref"], row["commit"] = found
    metrics = experiment_metrics(repo, row["ref"])
    if metric not in metrics:
        row["error"] = f"{artifacts.TRAIN_METRICS} has no {metric!r} (keys: {sorted(metrics)})"
        return row
    row.update({metric: metrics[metric], "best_epoch": metrics.get("best_epoch"),
                "epochs_run": metrics.get("epochs_run"), "status": "done"})
    log.info("%s: %s = %s (%s)", name, metric, metrics[metric], point)
    return row


def rank(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Finished points best first (higher metric), failed ones last."""
    done = sorted((r for r in rows if r["status"] == "done"), key=lambda r: -float(r[metric]))
    return done + [r for r in rows if r["status"] != "done"]


def keep_best(repo: Path, best: dict[str, Any], branch: str, dvc: list[str],
              env: dict[str, str]) -> str:
    """``dvc exp branch``: the best point as a git branch, ready for the gate (``dvc repro``)."""
    proc = subprocess.run([*dvc, "exp", "branch", best["experiment"], branch], cwd=repo, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise StageError(f"dvc exp branch failed: {(proc.stderr or proc.stdout).strip()[-300:]}",
                         where=str(repo), fix=f"a branch {branch!r} may exist already")
    return branch


def report_markdown(sweep_id: str, rows: list[dict[str, Any]], metric: str,
                    branch: str | None) -> str:
    keys = sorted({k for r in rows for k in r["params"]})
    head = ["#", "experiment", *keys, metric, "best epoch", "wall s", "status"]
    table = [[i, r["experiment"], *(str(r["params"].get(k, "")) for k in keys), num(r[metric]),
              num(r.get("best_epoch") or None), r.get("wall_s", MISSING),
              r["status"] + (f": {r['error']}" if "error" in r else "")]
             for i, r in enumerate(rows, 1)]
    lines = [f"# Sweep {sweep_id}", "",
             f"Ranked by `{metric}` (validation split; the test split is left for the gate).", "",
             *md_table(head, table, "l" * len(head))]
    if branch:
        lines += ["", f"Best kept as branch `{branch}`: `git checkout {branch} && dvc repro` runs "
                  "the rest of the pipeline and the gate on it."]
    return "\n".join(lines) + "\n"


def write_results(repo: Path, sweep_id: str, rows: list[dict[str, Any]], metric: str,
                  branch: str | None) -> None:
    from stages.io import write_json, write_text

    write_json(repo / artifacts.SWEEP_RESULTS, {"sweep": sweep_id, "metric": metric,
                                                "best_branch": branch, "points": rows})
    write_text(repo / artifacts.SWEEP_REPORT, report_markdown(sweep_id, rows, metric, branch))
