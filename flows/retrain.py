"""retrain: the Prefect flow that runs the DVC pipeline as one observable, gated retraining run.

    python -m flows.retrain [--promote] [--pull] [--push] [--revision REV] [--until STAGE]
                            [-S section.key=value ...]

Thin on purpose: DVC's graph, status and ``-S`` overrides decide (flows/dvc_pipeline.py); each
task runs one ``dvc repro --single-item <stage>``. The flow adds one-at-a-time runs, retries and
timeouts, meaningful states and artifacts, and a run branch where promote runs.
More: docs/orchestration.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.exceptions import TerminationSignal
from prefect.states import Completed, Failed

from commands.promote import candidate_is_champion
from flows.dvc_pipeline import (
    ancestors,
    apply_overrides,
    changed_stages,
    dag_order,
    parse_overrides,
    stage_graph,
)
from flows.refusal import refused
from flows.server import Interrupted, raise_interrupted, temporary_server
from stages import artifacts
from stages.common import StageError, from_mapping, params_section, read_params_file, run_cli
from stages.markdown_safety import code
from stages.report_format import md_table, num, signed
from stages.vcs import STOPPED, StepFailed, dvc, dvc_command, git, has_staged_changes, stream_command

CONCURRENCY_LIMIT = "retrainer-retrain"  # global concurrency limit: one retraining at a time
LABEL_AUDIT = "label_audit"
LABEL_AUDIT_KEY = "retrain-label-audit"  # the audit's artifact, whether it passed or stopped the run
# deterministic checks: a retry fails the same way
NEVER_RETRY = ("validate", "validate_splits", LABEL_AUDIT, "gate")
VALIDATION_REPORTS = {"validate": artifacts.RAW_VALIDATION_DIR,
                      "validate_splits": artifacts.SPLIT_VALIDATION_DIR}
# files a retraining changes that belong in git (the champion's own files are promote's commit)
RESULT_PATHS = tuple(p.as_posix() for p in artifacts.RUN_RESULT_PATHS)
SKIPPED, RAN = "skipped (unchanged)", "ran"


@params_section("flow")
@dataclass
class FlowParams:
    """``flow:`` in params.yaml: per-stage timeouts and the retries of transient steps."""

    timeout_s: dict[str, int] = field(default_factory=lambda: {"default": 3600})
    retries: dict[str, int] = field(default_factory=dict)  # step name -> extra attempts
    retry_delay_s: list[int] = field(default_factory=lambda: [10, 60, 300])  # back-off

    def timeout(self, step: str) -> int:
        return int(self.timeout_s.get(step, self.timeout_s.get("default", 3600)))

    def retries_for(self, step: str) -> int:
        return int(self.retries.get(step, 0))


# ---------------------------------------------------------------------------------------------
# the flow's own params


def load_flow_params(repo: Path) -> FlowParams:
    """The ``flow:`` section (defaults when absent); retries on deterministic checks are refused."""
    path = repo / "params.yaml"
    params = from_mapping(FlowParams, read_params_file(path).get("flow") or {}, f"{path}:flow")
    bad = sorted(s for s in NEVER_RETRY if params.retries_for(s))
    if bad:
        raise StageError(f"flow.retries must not retry {bad}: they are deterministic checks and "
                         "a retry fails the same way", where=f"{path}:flow.retries",
                         fix="remove them; retry transient steps only (pull, push, ingest)")
    return params


# ---------------------------------------------------------------------------------------------
# tasks: each is one subprocess step; retries and timeouts are set per call from params.yaml


@task(name="dvc-stage")
def run_stage(stage: str, repo: str, timeout_s: int, check_first: bool) -> dict[str, Any]:
    """`dvc repro --single-item <stage>`, unless `dvc status` says the stage is unchanged.

    ``check_first``: an upstream stage ran in this run, so ask DVC again whether this one changed.
    """
    logger = get_run_logger()
    start = time.perf_counter()
    if check_first and not changed_stages(Path(repo), stage):
        status = SKIPPED
    else:
        stream_command([*dvc_command(), "repro", "--single-item", stage], Path(repo), stage,
                       timeout_s, logger)
        status = RAN
    return {"stage": stage, "status": status, "seconds": round(time.perf_counter() - start, 1)}


@task(name="dvc-pull")
def dvc_pull(repo: str, timeout_s: int) -> str:
    """Fetch data and models the workspace lacks from the DVC remote (transient: retried)."""
    logger = get_run_logger()
    if not dvc("remote", "list", cwd=Path(repo)).strip():
        logger.warning("pull requested but no DVC remote is configured: nothing to pull")
        return "no remote"
    stream_command([*dvc_command(), "pull", "--allow-missing"], Path(repo), "pull", timeout_s,
                   logger)
    return "pulled"


@task(name="dvc-checkout")
def dvc_checkout(repo: str, timeout_s: int) -> None:
    """Make the workspace's DVC outputs match the checked-out dvc.lock, where the cache has them."""
    try:
        stream_command([*dvc_command(), "checkout"], Path(repo), "checkout", timeout_s,
                       get_run_logger())
    except StepFailed:  # outputs missing from the cache are simply recomputed by the stages
        get_run_logger().warning("dvc checkout: some outputs are not in the cache; "
                                 "the stages will recompute them")


@task(name="promote")
def promote_candidate(repo: str, timeout_s: int) -> None:
    """`python -m commands.promote`: copy the checkpoint to models/champion, dvc add, commit."""
    stream_command([sys.executable, "-m", "commands.promote"], Path(repo), "promote", timeout_s,
                   get_run_logger())
    if os.environ.get("RETRAINER_SERVE_URL"):  # a running service: load the new champion now
        from serve.client import notify_reload

        notify_reload(os.environ["RETRAINER_SERVE_URL"], get_run_logger())


@task(name="push")
def push_results(repo: str, branch: str | None, timeout_s: int) -> list[str]:
    """`dvc push` to the configured remote, and the run branch to git's origin (transient)."""
    logger, path, done = get_run_logger(), Path(repo), []
    if dvc("remote", "list", cwd=path).strip():
        stream_command([*dvc_command(), "push"], path, "push", timeout_s, logger)
        done.append("dvc push")
    else:
        logger.info("no DVC remote configured: nothing to push (`dvc remote add -d ...`)")
    if branch and "origin" in git("remote", cwd=path).split():
        stream_command(["git", "push", "-u", "origin", branch], path, "push", timeout_s, logger)
        done.append(f"git push origin {branch}")
    return done


# ---------------------------------------------------------------------------------------------
# git: run branch and the results commit


def run_branch_name(run_name: str | None) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", (run_name or "run").lower()).strip("-") or "run"
    return f"retrain/{datetime.now(UTC):%Y-%m-%d}-{slug}"


def require_clean_tree(repo: Path, why: str) -> None:
    dirty = git("status", "--porcelain", "--untracked-files=no", cwd=repo)
    if dirty:
        files = ", ".join(line[3:] for line in dirty.splitlines()[:8])
        raise StageError(f"{why}, but tracked files have uncommitted changes: {files}",
                         where=str(repo), fix="commit or stash them, or run without revision")


def commit_results(repo: Path, message: str) -> str | None:
    """Commit dvc.lock, params, metrics, plots, reports and new .gitignore files; None if none."""
    paths = [p for p in RESULT_PATHS if (repo / p).exists()]
    new_ignores = [p for p in git("ls-files", "--others", "--exclude-standard", cwd=repo)
                   .splitlines() if p.endswith(".gitignore")]
    git("add", "-A", "--", *paths, *new_ignores, cwd=repo)
    if not has_staged_changes(repo):
        return None
    git("commit", "-q", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


# ---------------------------------------------------------------------------------------------
# artifacts


def _read(path: Path, since: float) -> str | None:
    """The file's text if this run wrote it (mtime after ``since``), else None."""
    if path.is_file() and path.stat().st_mtime >= since - 1:
        return path.read_text(encoding="utf-8")
    return None


def stage_report(repo: Path, stage: str, error: BaseException,
                 since: float) -> tuple[str | None, str, str]:
    """The report a failed check wrote in this run, its artifact key and the run's message; a
    stage without one: (None, "retrain-failure", the step's error)."""
    if stage in VALIDATION_REPORTS:
        summary = VALIDATION_REPORTS[stage] / artifacts.VALIDATION_SUMMARY
        report = _read(repo / summary, since)
        if report:
            return report, "retrain-validation", (
                f"data validation failed ({stage}): see the 'retrain-validation' artifact and "
                f"{summary}")
    elif stage == "gate":
        report = _read(repo / artifacts.GATE_REPORT, since)
        gate = _read(repo / artifacts.GATE_METRICS, since)
        if report:
            failed = ", ".join(json.loads(gate).get("failed") or []) if gate else ""
            return report, "retrain-gate", (
                f"the gate failed ({failed or 'see report'}): the candidate may not replace the "
                f"champion; see the 'retrain-gate' artifact and {artifacts.GATE_REPORT}")
    elif stage == LABEL_AUDIT:
        report = _read(repo / artifacts.LABEL_AUDIT_MD, since)
        if report:  # block mode over the limit, or exclude mode leaving a class no train rows
            return report, LABEL_AUDIT_KEY, (
                f"the label audit failed: {own_error(stage, error)}; see the '{LABEL_AUDIT_KEY}' "
                f"artifact and {artifacts.LABEL_AUDIT_HTML}")
    return None, "retrain-failure", str(error)


def own_error(stage: str, error: BaseException) -> str:
    """The stage's own error (its ``ERROR [stages.<stage>]: ...`` line), not DVC's last line
    about it ("failed to reproduce"); the step's error when the stage printed none."""
    prefix = f"ERROR [stages.{stage}]: "
    lines = [line.strip() for line in getattr(error, "tail", [])]
    return next((line.removeprefix(prefix) for line in reversed(lines) if line.startswith(prefix)),
                str(error))


def failure_artifact(repo: Path, stage: str, error: BaseException, since: float,
                     context: str) -> str:
    """A markdown artifact saying why the run stopped; returns the flow's failure message."""
    tail = getattr(error, "tail", [])
    report, key, message = stage_report(repo, stage, error, since)
    body = [f"# Retraining stopped at `{stage}`", "", f"**{message}**", "", context, ""]
    if report:
        body += [report.strip(), ""]
    if tail:
        body += [f"## Last lines of the `{stage}` log", "", "```", *tail, "```"]
    create_markdown_artifact(key=key, markdown="\n".join(body), description=message)
    return message


def label_audit_artifact(repo: Path, status: str, context: str) -> None:
    """The label audit's headline and most confused label pairs (metrics/label_audit.json)."""
    path = repo / artifacts.LABEL_AUDIT_METRICS
    if not path.is_file():
        return
    from stages.label_audit_report import verdict

    audit = json.loads(path.read_text(encoding="utf-8"))
    headline = verdict(audit)
    md = ["# Label audit", "", f"**{headline}.**", "", context, ""]
    if status == SKIPPED:
        md += ["DVC skipped the stage (its inputs are unchanged): this is the last audit's result.",
               ""]
    per_split = audit.get("per_split") or {}
    md += ["Suspects by split: " + ", ".join(f"{name} {row['suspects']} of {row['rows']}"
                                             for name, row in per_split.items()) + ".", ""]
    pairs = audit.get("confused_pairs") or []
    if pairs:
        md += ["## Most confused pairs (given label → suggested label)", ""]
        md += md_table(["given", "suggested", "suspects"],
                       [[code(p["given"]), code(p["suggested"]), p["rows"]] for p in pairs], "llr")
        md.append("")
    md += [f"Every suspect, lowest label quality first: `{artifacts.LABEL_AUDIT_HTML}` and "
           f"`{artifacts.LABEL_AUDIT_SUSPECTS}`."]
    create_markdown_artifact(key=LABEL_AUDIT_KEY, markdown="\n".join(md), description=headline)


def _delta(candidate: float | None, champion: float | None) -> float | None:
    return None if candidate is None or champion is None else round(candidate - champion, 6)


def success_artifacts(repo: Path, steps: list[dict[str, Any]], context: str) -> dict[str, Any]:
    """A metrics table (candidate, champion, TF-IDF baseline) and a candidate-vs-champion diff."""
    create_table_artifact(key="retrain-stages", description="what DVC did per stage in this run",
                          table=[{k: s[k] for k in ("stage", "status", "seconds")} for s in steps])
    if not (repo / artifacts.EVAL_METRICS).is_file():
        return {}
    ev = json.loads((repo / artifacts.EVAL_METRICS).read_text(encoding="utf-8"))
    cand, champ = ev["candidate"], ev.get("champion") or {}
    tfidf = (ev.get("baselines") or {}).get("tfidf_logreg") or {}
    rows = [{"metric": metric, "candidate": cand.get(metric), "champion": champ.get(metric),
             "delta": _delta(cand.get(metric), champ.get(metric)),
             "tfidf_baseline": tfidf.get(metric)}
            for metric in ("macro_f1", "accuracy", "weighted_f1")]
    create_table_artifact(key="retrain-metrics", table=rows, description=f"test split "
                          f"({ev.get('test_rows')} rows), {artifacts.EVAL_METRICS}")
    create_markdown_artifact(key="retrain-vs-champion", description="candidate vs champion on the "
                             "same test split", markdown=vs_champion_markdown(repo, ev, rows, context))
    return {r["metric"]: r["candidate"] for r in rows}


def vs_champion_markdown(repo: Path, ev: dict[str, Any], rows: list[dict[str, Any]],
                         context: str) -> str:
    cand, champ = ev["candidate"], ev.get("champion")
    md = ["# Candidate vs champion", "", context, "",
          f"Same test split for both ({ev.get('test_rows')} rows): the comparison is paired.", ""]
    if champ is None:
        md += ["No champion yet: this is the first model; only the absolute gate checks ran.", ""]
    md += md_table(["metric", "candidate", "champion", "delta"],
                   [[r["metric"], num(r["candidate"]), num(r["champion"]), signed(r["delta"])]
                    for r in rows])
    other = (champ or {}).get("per_class") or {}
    md += ["", *md_table(["class", "candidate F1", "champion F1"],
                         [[label, num(m.get("f1")), num(other.get(label, {}).get("f1"))]
                          for label, m in cand.get("per_class", {}).items()])]
    gate_path = repo / artifacts.GATE_METRICS
    if gate_path.is_file():
        verdict = "passed" if json.loads(gate_path.read_text()).get("passed") else "FAILED"
        md += ["", f"Gate: **{verdict}** ({artifacts.GATE_REPORT})."]
    with contextlib.suppress(StageError):
        diff = dvc("metrics", "diff", "--md", cwd=repo).strip()
        if diff:
            md += ["", "## `dvc metrics diff` (workspace vs HEAD)", "", diff]
    return "\n".join(md)


# ---------------------------------------------------------------------------------------------
# one retraining at a time


@contextlib.contextmanager
def one_retraining_at_a_time(logger: Any) -> Iterator[None]:
    """Hold the 1-slot global concurrency limit for the whole run (created on first use).

    Both deployments (and ad-hoc runs) share it, so a data-arrived event during the weekly run
    waits for it instead of fighting over the same checkout.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(CONCURRENCY_LIMIT)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # another run created it a moment ago
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=CONCURRENCY_LIMIT, limit=1))
    logger.info("waiting for the '%s' slot (one retraining at a time)", CONCURRENCY_LIMIT)
    with concurrency(CONCURRENCY_LIMIT, occupy=1, strict=True):
        logger.info("slot acquired")
        yield


# ---------------------------------------------------------------------------------------------
# the flow


@flow(name="retrain")
def retrain(repo_dir: str | None = None, revision: str | None = None, pull: bool = False,
            promote: bool = False, push: bool = False, overrides: dict[str, Any] | None = None,
            until: str | None = None, reason: str = "manual") -> Any:
    """Run the DVC pipeline stage by stage; on a pass, optionally promote on a run branch.

    repo_dir: the checkout to run in (default: $RETRAINER_REPO, else the working directory).
    revision: a git revision to start from (detached, then a run branch if anything is committed);
        needs a clean tree of tracked files. None: the checkout as it is, like `dvc repro`.
    pull / push: `dvc pull` first / `dvc push` (and `git push origin <branch>`) at the end.
    promote: after a passed pipeline, commit results and promote on `retrain/<date>-<run name>`.
    overrides: {"train.epochs": 3, ...} written to params.yaml on the run branch (`-S` style).
    until: run only this stage and what it depends on (`dvc repro <until>`); a run without the
        gate never promotes.
    reason: why this run happened (set by the data-arrived trigger), recorded in the artifacts.
    """
    from prefect.runtime import flow_run

    logger = get_run_logger()
    repo = Path(repo_dir or os.environ.get("RETRAINER_REPO") or os.getcwd()).resolve()
    if not (repo / "dvc.yaml").is_file() or not (repo / ".git").exists():
        return Failed(message=f"{repo} is not a git + DVC checkout of the pipeline (no dvc.yaml "
                              "or .git): set repo_dir or run from the repository root")
    logger.info("retraining in %s (reason: %s)", repo, reason)
    with one_retraining_at_a_time(logger):
        try:
            return _retrain(repo, revision, pull, promote, push, overrides or {}, until, reason,
                            flow_run.get_name(), logger)
        except StageError as exc:
            return refused(exc, "retrain-failure", "Retraining refused")


def _prepare_checkout(repo: Path, revision: str | None, pull: bool, overrides: dict[str, Any],
                      run_name: str | None, logger: Any) -> str | None:
    """Check out ``revision``, pull or check out DVC outputs, apply overrides on a run branch."""
    bootstrap = load_flow_params(repo)  # timeouts for the steps before a revision is checked out
    if revision:
        require_clean_tree(repo, f"revision={revision!r} asks to check out another revision")
        git("switch", "--detach", revision, cwd=repo)
        logger.info("checked out %s (%s)", revision, git("rev-parse", "--short", "HEAD", cwd=repo))
    if pull:
        dvc_pull.with_options(retries=bootstrap.retries_for("pull"),
                              retry_delay_seconds=bootstrap.retry_delay_s)(
            str(repo), bootstrap.timeout("pull"))
    elif revision:
        dvc_checkout(str(repo), bootstrap.timeout("checkout"))
    if not overrides:
        return None
    branch = run_branch_name(run_name)
    git("switch", "-c", branch, cwd=repo)
    logger.info("on run branch %s; params overrides: %s", branch,
                ", ".join(apply_overrides(repo / "params.yaml", overrides)))
    return branch


@dataclass
class StagesRun:
    """The stages' steps in order, and the first failed stage's message (None: all passed)."""

    steps: list[dict[str, Any]]
    failure: str | None = None


def _run_stages(repo: Path, stages: list[str], until: str | None, params: FlowParams,
                context: str, logger: Any) -> StagesRun:
    """Each stage as a task, in order, up to the first that fails."""
    changed = changed_stages(repo, *([until] if until else []), with_deps=until is not None)
    if not changed:  # the common scheduled run: no new data, code or params
        logger.info("dvc status: every stage is up to date; nothing to run")
        return StagesRun([{"stage": s, "status": SKIPPED, "seconds": 0.0} for s in stages])
    graph, ran, steps = stage_graph(repo), set(), []
    for stage in stages:
        upstream_ran = bool(ran & (ancestors(graph, stage) - {stage}))
        if stage not in changed and not upstream_ran:  # DVC said unchanged, and nothing it reads
            steps.append({"stage": stage, "status": SKIPPED, "seconds": 0.0})  # was rewritten
            continue
        stage_start = time.time()
        state = run_stage.with_options(
            task_run_name=f"dvc repro {stage}", retries=params.retries_for(stage),
            retry_delay_seconds=params.retry_delay_s,
        )(stage, str(repo), params.timeout(stage), stage not in changed, return_state=True)
        if state.is_failed():
            message = failure_artifact(repo, stage, state.result(raise_on_failure=False),
                                       stage_start, context)
            logger.error(message)
            return StagesRun(steps, failure=message)
        steps.append(state.result())
        if steps[-1]["status"] == RAN:
            ran.add(stage)
        logger.info("%s: %s in %.1f s", stage, steps[-1]["status"], steps[-1]["seconds"])
    return StagesRun(steps)


def _promote(repo: Path, branch: str | None, run_name: str | None, context: str,
             params: FlowParams, logger: Any) -> dict[str, Any]:
    """Commit the run's results on the run branch, then promote the candidate there."""
    if branch is None:
        branch = run_branch_name(run_name)
        git("switch", "-c", branch, cwd=repo)
    commit = commit_results(repo, f"retrain {run_name}: dvc.lock, params and metrics\n\n{context}")
    logger.info("committed the run's results on %s: %s", branch, commit or "nothing new")
    promote_candidate(str(repo), params.timeout("promote"))
    head = git("rev-parse", "HEAD", cwd=repo)
    create_markdown_artifact(
        key="retrain-promotion",
        markdown=f"# Promoted on `{branch}`\n\n{context}\n\nOpen a pull request from `{branch}`"
                 f" to review: `git log -2 --stat {branch}`.",
        description=f"new champion committed on {branch}")
    logger.info("promoted: branch %s, commit %s", branch, head[:10])
    return {"branch": branch, "promoted": True, "commit": head}


def _retrain(repo: Path, revision: str | None, pull: bool, promote: bool, push: bool,
             overrides: dict[str, Any], until: str | None, reason: str, run_name: str | None,
             logger: Any) -> Any:
    start = time.time()
    branch = _prepare_checkout(repo, revision, pull, overrides, run_name, logger)
    params = load_flow_params(repo)
    stages = dag_order(repo, until)
    if promote and "gate" not in stages:  # nothing approved the candidate: never promote it
        logger.warning("promote skipped: this run has no gate stage (until=%r)", until)
        promote = False
    context = (f"Run `{run_name}` in `{repo}` at `{git('rev-parse', '--short', 'HEAD', cwd=repo)}`"
               f"{f' (branch `{branch}`)' if branch else ''}; reason: {reason}.")
    logger.info("stages: %s", " -> ".join(stages))
    run = _run_stages(repo, stages, until, params, context, logger)
    audit = next((s for s in run.steps if s["stage"] == LABEL_AUDIT), None)
    if audit is not None:  # the audit passed (a failed one is in the failure artifact)
        label_audit_artifact(repo, audit["status"], context)
    if run.failure is not None:
        return Failed(message=run.failure)
    steps = run.steps
    result: dict[str, Any] = {"stages": steps, "metrics": success_artifacts(repo, steps, context),
                              "branch": branch, "promoted": False}
    unchanged = candidate_is_champion(repo)  # a retrain on the champion's data, params and code
    if unchanged:
        message = ("nothing changed since the champion was trained: the candidate is the "
                   "champion's own checkpoint (same data, params and code); nothing to promote")
        logger.info(message)
    elif promote:
        result.update(_promote(repo, branch, run_name, context, params, logger))
    if push:
        result["pushed"] = push_results.with_options(
            retries=params.retries_for("push"), retry_delay_seconds=params.retry_delay_s)(
            str(repo), result["branch"], params.timeout("push"))
    result["seconds"] = round(time.time() - start, 1)
    return Completed(message=message, data=result) if unchanged else result


# ---------------------------------------------------------------------------------------------
# the command line: Ctrl-C and SIGTERM end the run in seconds, with one line


def missing_outputs(repo: Path) -> list[str]:
    """Outputs dvc.lock records that are not in the workspace: DVC removes a stage's outputs when
    the stage starts, so a run stopped half way leaves them gone until they are checked out."""
    import yaml

    lock_file = repo / "dvc.lock"
    if not lock_file.is_file():
        return []
    try:
        lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    return [out["path"] for stage in (lock.get("stages") or {}).values()
            for out in stage.get("outs") or [] if not (repo / out["path"]).exists()]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.retrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo-dir", help="checkout to run in (default: current directory)")
    parser.add_argument("--revision", help="git revision to start from (clean tree needed)")
    parser.add_argument("--pull", action="store_true", help="dvc pull first")
    parser.add_argument("--promote", action="store_true", help="promote on a passed pipeline")
    parser.add_argument("--push", action="store_true", help="dvc push (and git push) at the end")
    parser.add_argument("--until", help="run only this stage and its upstream stages")
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                        help="param override, e.g. -S train.epochs=3 (repeatable)")
    args = parser.parse_args()
    overrides = parse_overrides(args.set_param)
    signal.signal(signal.SIGTERM, raise_interrupted)
    # Ctrl-C too, explicitly: a process started with SIGINT ignored (a shell without job control
    # starts background jobs so, and children inherit it) gets no KeyboardInterrupt from Python
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with temporary_server():
            state = retrain(repo_dir=args.repo_dir, revision=args.revision, pull=args.pull,
                            promote=args.promote, push=args.push, until=args.until,
                            overrides=overrides, return_state=True)
    except (Interrupted, KeyboardInterrupt, TerminationSignal) as exc:
        signum = getattr(exc, "signal", signal.SIGINT)
        name = signum if isinstance(signum, str) else signal.Signals(signum).name
        step = STOPPED.get("step")
        print(f"retrain: interrupted by {name}"
              + (f" during `{step}`: its processes were stopped" if step else "")
              + "; the run is recorded as Crashed", file=sys.stderr)
        missing = missing_outputs(Path(args.repo_dir or "."))
        if missing:
            print(f"retrain: missing outputs (DVC removes a stage's outputs when it starts): "
                  f"{', '.join(missing)}; restore the last completed run's from the cache: "
                  f"dvc checkout {' '.join(missing)}", file=sys.stderr)
        sys.exit(128 + signal.Signals[name].value)
    print(f"retrain: {state.name}: {state.message or ''}".rstrip(": "))
    sys.exit(0 if state.is_completed() else 1)


if __name__ == "__main__":
    run_cli(main)
