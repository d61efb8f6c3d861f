"""sweep: a Prefect flow that fans a grid/random search out as child runs, one DVC experiment each.

    python -m flows.sweep [--repo-dir DIR] [--concurrency N] [--no-branch]

Reads ``sweep:`` in params.yaml; every point is a child flow run ``sweep-point`` running
``dvc exp run --temp ... train``, at most ``concurrency`` at once (locally, or on a Kubernetes
work pool with ``point_deployment``). Results go to reports/sweep.md/.json; the best point is kept
as the branch ``sweep/<sweep id>``.
More: docs/scale.md.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import as_completed
from prefect.states import Failed

from stages.common import StageError, from_mapping, read_params_file, run_cli


def _tools(repo: Path) -> tuple[list[str], dict[str, str]]:
    from stages.vcs import dvc_command, dvc_env

    return dvc_command(), dvc_env(repo)


@flow(name="sweep-point")
def sweep_point(repo_dir: str, name: str, point: dict[str, Any], targets: list[str],
                metric: str, push_to: str | None = None) -> dict[str, Any]:
    """One point: a DVC experiment; ``push_to`` a git remote to `dvc exp push` it to."""
    from scale.sweep import run_point

    repo = Path(repo_dir)
    dvc, env = _tools(repo)
    row = run_point(repo, name, point, targets, metric, dvc, env)
    if push_to and row["status"] == "done":
        from stages.vcs import stream_command

        stream_command([*dvc, "exp", "push", push_to, name], repo, "exp-push", 600,
                       get_run_logger())
    return row


@task(name="sweep-point")
def point_child_run(repo_dir: str, name: str, point: dict[str, Any], targets: list[str],
                    metric: str, deployment: str | None) -> dict[str, Any]:
    """The point as a child flow run: here (local), or on the deployment's work pool."""
    if deployment is None:
        return sweep_point(repo_dir, name, point, targets, metric)
    from prefect.deployments import run_deployment

    from scale.sweep import experiment_metrics, experiment_ref

    run = run_deployment(deployment, parameters={
        "repo_dir": ".", "name": name, "point": point, "targets": targets, "metric": metric,
        "push_to": "origin"}, timeout=None)
    repo = Path(repo_dir)
    dvc, env = _tools(repo)
    row: dict[str, Any] = {"experiment": name, "params": point, metric: None, "status": "failed",
                           "flow_run": str(run.id)}
    if not run.state or not run.state.is_completed():
        row["error"] = f"child run {run.name} ended {run.state.name if run.state else 'unknown'}"
        return row
    from stages.vcs import run

    run([*dvc, "exp", "pull", "origin", name], f"dvc exp pull {name}", cwd=repo, env=env)
    found = experiment_ref(repo, name)
    if found is not None:
        row["ref"], row["commit"] = found
        metrics = experiment_metrics(repo, row["ref"])
        row.update({metric: metrics.get(metric), "best_epoch": metrics.get("best_epoch"),
                    "status": "done" if metric in metrics else "failed"})
    return row


@flow(name="sweep")
def sweep(repo_dir: str | None = None, concurrency: int | None = None, keep_best: bool = True,
          point_deployment: str | None = None) -> Any:
    """Run the ``sweep:`` grid as child runs (``concurrency`` at a time) and keep the best."""
    from scale.sweep import SweepParams, check_params, plan_points, rank, write_results
    from scale.sweep import keep_best as branch_best

    logger = get_run_logger()
    repo = Path(repo_dir or ".").resolve()
    params_file = repo / "params.yaml"
    try:
        params = from_mapping(SweepParams, read_params_file(params_file).get("sweep") or {},
                              f"{params_file}:sweep")
        check_params(params, params_file)
    except StageError as exc:
        return Failed(message=str(exc))
    limit = concurrency or params.concurrency
    points = plan_points(params)
    sweep_id = f"{params.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    logger.info("sweep %s: %d point(s) over %s, %d at a time, ranked by %s", sweep_id,
                len(points), sorted(params.grid), limit, params.metric)
    names = [f"{sweep_id}-{i}" for i in range(1, len(points) + 1)]
    waiting, running, rows = list(zip(names, points, strict=True)), [], []
    while waiting or running:  # a sliding window: at most `limit` child runs in flight
        while waiting and len(running) < limit:
            name, point = waiting.pop(0)
            running.append(point_child_run.submit(str(repo), name, point, params.targets,
                                                  params.metric, point_deployment))
        finished = next(as_completed(running))
        running.remove(finished)
        rows.append(finished.result())
    ranked = rank(rows, params.metric)
    best = ranked[0] if ranked and ranked[0]["status"] == "done" else None
    branch = None
    if best and keep_best and params.keep_best == "branch":
        dvc, env = _tools(repo)
        branch = branch_best(repo, best, f"sweep/{sweep_id}", dvc, env)
        logger.info("best point %s (%s = %s) kept as branch %s", best["experiment"],
                    params.metric, best[params.metric], branch)
    write_results(repo, sweep_id, ranked, params.metric, branch)
    create_table_artifact(key="sweep-results", description=f"sweep {sweep_id} by {params.metric}",
                          table=[{"experiment": r["experiment"], **r["params"],
                                  params.metric: r[params.metric], "status": r["status"]}
                                 for r in ranked])
    if branch:
        create_markdown_artifact(key="sweep-best", markdown=(
            f"# Best of sweep {sweep_id}\n\n`{best['experiment']}`: {params.metric} = "
            f"{best[params.metric]} with {best['params']}\n\nBranch `{branch}`: check it out and "
            "run `dvc repro` (or the retrain flow) for the gate."))
    result = {"sweep": sweep_id, "points": ranked, "best": best, "branch": branch}
    if best is None:
        return Failed(message=f"no point of sweep {sweep_id} finished (see reports/sweep.md)",
                      data=result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo-dir", help="checkout to sweep in (default: current directory)")
    parser.add_argument("--concurrency", type=int, help="points at once (default: sweep.concurrency)")
    parser.add_argument("--no-branch", action="store_true", help="do not branch the best point")
    parser.add_argument("--point-deployment", help="run points as runs of this deployment")
    args = parser.parse_args()
    state = sweep(repo_dir=args.repo_dir, concurrency=args.concurrency,
                  keep_best=not args.no_branch, point_deployment=args.point_deployment,
                  return_state=True)
    print(f"sweep: {state.name}: {state.message or ''}".rstrip(": "))
    if state.is_completed():
        result = state.result()
        print(f"best: {result['best']['experiment']} -> branch {result['branch']}")
    sys.exit(0 if state.is_completed() else 1)


if __name__ == "__main__":
    run_cli(main)
