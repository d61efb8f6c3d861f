"""retrain: the Prefect flow that runs the DVC pipeline as one observable, gated retraining run.

    python -m flows.retrain [--promote] [--pull] [--push] [--revision REV] [--until STAGE]
                            [-S section.key=value ...]

The flow is thin on purpose: each task runs ONE DVC stage as `dvc repro --single-item <stage>` in
a subprocess (the venv's dvc), its output streamed line by line into the run log. DVC's cache and
dvc.lock stay the single source of truth: a Prefect run and a manual `dvc repro` write the same
dvc.lock and skip the same unchanged stages.

Why ``--single-item`` and not ``dvc repro <stage>``: the flow walks the DAG itself (the order comes
from `dvc dag --dot`, so it is never written down twice), hence every upstream stage already ran
in an earlier task. ``--single-item`` makes a task exactly one stage (its own log, duration,
retries and timeout) instead of re-checking every upstream stage again in every task.

What the flow adds to DVC:

- one retraining at a time: a global concurrency limit (``retrainer-retrain``, 1 slot) held for
  the whole run, so the weekly and the event-driven deployment never overlap; DVC's own repository
  lock, when someone else holds it, fails the run with a message that says so;
- retries with back-off for transient steps (pull, push, ingest from a remote source), never for
  deterministic checks (validate, validate_splits, gate); a timeout per stage (``flow:`` in
  params.yaml) that kills the stage's whole process group;
- states that mean something: failed validation or gate ends the run Failed with a markdown
  artifact saying why (the GX summary / reports/gate.md); success leaves a metrics table and a
  candidate-vs-champion markdown artifact;
- param overrides (``-S`` style) written to params.yaml on a run branch, and promotion: on a
  passed pipeline ``python -m stages.promote`` runs on branch ``retrain/<date>-<run name>``, after
  dvc.lock, params and metrics were committed there (never on main), ready for a pull request.
"""

from __future__ import annotations

import argparse
import collections
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Failed

from stages.common import StageError, from_mapping, read_params_file, run_cli

CONCURRENCY_LIMIT = "retrainer-retrain"  # global concurrency limit: one retraining at a time
NEVER_RETRY = ("validate", "validate_splits", "gate")  # deterministic: a retry fails the same way
VALIDATION_REPORTS = {"validate": "reports/validation/raw",
                      "validate_splits": "reports/validation/splits"}
GATE_REPORT, GATE_JSON, EVAL_JSON = "reports/gate.md", "metrics/gate.json", "metrics/eval.json"
# what dvc prints when another process holds the repository lock / a read-write lock on an output
LOCK_HINTS = ("Unable to acquire lock", "is busy, it is being blocked by")
TAIL_LINES = 60
# files a retraining changes that belong in git (the champion's own files are promote's commit)
RESULT_PATHS = ("dvc.lock", "params.yaml", "metrics", "plots", "reports")


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


class StepFailed(Exception):
    """A subprocess step (a DVC stage, promote, pull, push) exited non-zero or timed out."""

    def __init__(self, step: str, message: str, tail: list[str]) -> None:
        self.step, self.tail = step, tail
        super().__init__(message)


# ---------------------------------------------------------------------------------------------
# subprocesses: the venv's dvc, output streamed into the run log, a hard timeout


def dvc_command() -> list[str]:
    """The dvc of this Python environment: the flow must run the stages with the venv's Python."""
    exe = Path(sys.executable).parent / "dvc"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "dvc"]


def subprocess_env(repo: Path) -> dict[str, str]:
    """PATH starts with the venv's bin (dvc's `python -m stages.x` must be the venv's python)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH")) if p)
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env["PYTHONUNBUFFERED"] = "1"  # stage logs arrive as they are written, not at exit
    return env


def _pump(stream: Any, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def stream_command(cmd: list[str], repo: Path, step: str, timeout_s: float | None,
                   logger: Any) -> list[str]:
    """Run ``cmd`` in ``repo``, logging each output line as it arrives; return the last lines.

    The command gets its own process group: on timeout, cancellation or any error the whole group
    (dvc and the stage it started) is terminated, so a timed-out stage never keeps running.
    """
    logger.info("$ %s", " ".join(cmd[-4:] if cmd[0] == sys.executable else cmd))
    proc = subprocess.Popen(cmd, cwd=repo, env=subprocess_env(repo), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                            start_new_session=True)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + timeout_s if timeout_s else None
    try:
        while True:
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0:
                raise StepFailed(step, f"{step} timed out after {timeout_s:.0f} s (flow.timeout_s."
                                       f"{step} in params.yaml); its processes were stopped",
                                 list(tail))
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                continue
            if line is None:
                break
            line = line.rstrip()
            if line.strip():
                tail.append(line)
                logger.info("%s | %s", step, line)
        code = proc.wait()
    finally:
        _stop(proc)
    if code != 0:
        if any(hint in line for line in tail for hint in LOCK_HINTS):
            raise StepFailed(step, f"{step}: {lock_message(repo)}", list(tail))
        errors = [line.strip() for line in tail if "ERROR" in line]
        raise StepFailed(step, f"{step} failed (exit {code})"
                         + (f": {errors[-1][:300]}" if errors else ""), list(tail))
    return list(tail)


def lock_message(repo: Path) -> str:
    return (f"DVC's repository lock is held by another process (a `dvc repro`/`dvc exp` in "
            f"{repo}, or a run outside Prefect). Wait for it to finish and re-run; if nothing is "
            "running, the lock is stale: remove .dvc/tmp/lock and .dvc/tmp/rwlock")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def git(repo: Path, *args: str) -> str:
    """A git command in ``repo``; a failure is a StageError with git's own message."""
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StageError(f"git {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}",
                         where=str(repo))
    return proc.stdout.strip()


def dvc_output(repo: Path, *args: str) -> str:
    proc = subprocess.run([*dvc_command(), *args], cwd=repo, env=subprocess_env(repo),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        if any(hint in proc.stderr + proc.stdout for hint in LOCK_HINTS):
            raise StageError(f"dvc {args[0]}: {lock_message(repo)}", where=str(repo))
        raise StageError(f"dvc {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}",
                         where=str(repo), fix="check dvc.yaml and params.yaml (`dvc dag`)")
    return proc.stdout


# ---------------------------------------------------------------------------------------------
# the DAG, params and overrides


def dag_order(repo: Path, until: str | None = None) -> list[str]:
    """Stages in dependency order as DVC sees them (`dvc dag --dot`); ties keep dvc.yaml's order.

    With ``until``, only that stage and its ancestors (what `dvc repro <until>` would run).
    """
    dot = dvc_output(repo, "dag", "--dot")
    nodes = re.findall(r'^"([^"]+)";$', dot, flags=re.M)
    edges = re.findall(r'^"([^"]+)" -> "([^"]+)";$', dot, flags=re.M)
    if until is not None:
        if until not in nodes:
            raise StageError(f"unknown stage {until!r}", where="dvc.yaml",
                             fix=f"use one of {nodes}")
        keep, frontier = {until}, [until]
        while frontier:
            child = frontier.pop()
            for a, b in edges:
                if b == child and a not in keep:
                    keep.add(a)
                    frontier.append(a)
        nodes = [n for n in nodes if n in keep]
        edges = [(a, b) for a, b in edges if a in keep and b in keep]
    parents = {n: {a for a, b in edges if b == n} for n in nodes}
    order: list[str] = []
    while len(order) < len(nodes):
        ready = [n for n in nodes if n not in order and parents[n] <= set(order)]
        if not ready:
            raise StageError("dvc dag has a cycle", where="dvc.yaml")
        order.append(ready[0])
    return order


def up_to_date(repo: Path, until: str | None) -> bool:
    """True when `dvc status` finds nothing to reproduce: one DVC start-up instead of one per
    stage. (It cannot tell which downstream stages a change will reach, so it is all or nothing.)
    """
    import json

    target = ["--with-deps", until] if until else []
    return json.loads(dvc_output(repo, "status", "--json", *target) or "{}") == {}


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


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.epochs=3", ...]`` (as `dvc exp run -S`) into a mapping; values are YAML."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StageError(f"override {item!r} is not section.key=value",
                             fix="e.g. -S train.epochs=3")
        out[key.strip()] = yaml.safe_load(value)
    return out


def apply_overrides(params_file: Path, overrides: dict[str, Any]) -> list[str]:
    """Write ``{"section.key": value}`` into params.yaml, keeping its comments and layout.

    Only existing keys: a typo must stop the run here, not silently add an unused key. String
    values are read as YAML, like `dvc exp run -S` does ("3" is the number 3).
    """
    import yaml
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    data = rt.load(params_file.read_text(encoding="utf-8"))
    changed = []
    for key, value in overrides.items():
        if isinstance(value, str):
            value = yaml.safe_load(value)
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.get(part) if hasattr(node, "get") else None
        if not parents or not hasattr(node, "get") or leaf not in node:
            raise StageError(f"unknown parameter {key!r}", where=str(params_file),
                             fix="override an existing key: section.key[.subkey]=value")
        node[leaf] = value
        changed.append(f"{key}={value!r}")
    with params_file.open("w", encoding="utf-8") as f:
        rt.dump(data, f)
    return changed


# ---------------------------------------------------------------------------------------------
# tasks: each is one subprocess step; retries and timeouts are set per call from params.yaml


@task(name="dvc-stage")
def run_stage(stage: str, repo: str, timeout_s: int) -> dict[str, Any]:
    """`dvc repro --single-item <stage>`: DVC decides whether it runs, is skipped or restored."""
    logger = get_run_logger()
    start = time.perf_counter()
    tail = stream_command([*dvc_command(), "repro", "--single-item", stage], Path(repo), stage,
                          timeout_s, logger)
    text = "\n".join(tail)
    status = ("skipped (unchanged)" if "didn't change, skipping" in text
              else "restored from run-cache" if "skipping run, checking out" in text else "ran")
    return {"stage": stage, "status": status, "seconds": round(time.perf_counter() - start, 1)}


@task(name="dvc-pull")
def dvc_pull(repo: str, timeout_s: int) -> str:
    """Fetch data and models the workspace lacks from the DVC remote (transient: retried)."""
    logger = get_run_logger()
    if not dvc_output(Path(repo), "remote", "list").strip():
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
    """`python -m stages.promote`: copy the checkpoint to models/champion, dvc add, commit."""
    stream_command([sys.executable, "-m", "stages.promote"], Path(repo), "promote", timeout_s,
                   get_run_logger())
    if os.environ.get("RETRAINER_SERVE_URL"):  # a running service: load the new champion now
        from serve.client import notify_reload

        notify_reload(os.environ["RETRAINER_SERVE_URL"], get_run_logger())


@task(name="push")
def push_results(repo: str, branch: str | None, timeout_s: int) -> list[str]:
    """`dvc push` to the configured remote, and the run branch to git's origin (transient)."""
    logger, path, done = get_run_logger(), Path(repo), []
    if dvc_output(path, "remote", "list").strip():
        stream_command([*dvc_command(), "push"], path, "push", timeout_s, logger)
        done.append("dvc push")
    else:
        logger.info("no DVC remote configured: nothing to push (`dvc remote add -d ...`)")
    if branch and "origin" in git(path, "remote").split():
        stream_command(["git", "push", "-u", "origin", branch], path, "push", timeout_s, logger)
        done.append(f"git push origin {branch}")
    return done


# ---------------------------------------------------------------------------------------------
# git: run branch and the results commit


def run_branch_name(run_name: str | None) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", (run_name or "run").lower()).strip("-") or "run"
    return f"retrain/{datetime.now(UTC):%Y-%m-%d}-{slug}"


def require_clean_tree(repo: Path, why: str) -> None:
    dirty = git(repo, "status", "--porcelain", "--untracked-files=no")
    if dirty:
        files = ", ".join(line[3:] for line in dirty.splitlines()[:8])
        raise StageError(f"{why}, but tracked files have uncommitted changes: {files}",
                         where=str(repo), fix="commit or stash them, or run without revision")


def commit_results(repo: Path, message: str) -> str | None:
    """Commit dvc.lock, params, metrics, plots, reports and new .gitignore files; None if none."""
    paths = [p for p in RESULT_PATHS if (repo / p).exists()]
    new_ignores = [p for p in git(repo, "ls-files", "--others", "--exclude-standard").splitlines()
                   if p.endswith(".gitignore")]
    git(repo, "add", "-A", "--", *paths, *new_ignores)
    if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=repo).returncode == 0:
        return None
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


# ---------------------------------------------------------------------------------------------
# artifacts


def _read(path: Path, since: float) -> str | None:
    """The file's text if this run wrote it (mtime after ``since``), else None."""
    if path.is_file() and path.stat().st_mtime >= since - 1:
        return path.read_text(encoding="utf-8")
    return None


def failure_artifact(repo: Path, stage: str, error: BaseException, since: float,
                     context: str) -> str:
    """A markdown artifact saying why the run stopped; returns the flow's failure message."""
    import json

    tail = getattr(error, "tail", [])
    report, key, message = None, "retrain-failure", str(error)
    if stage in VALIDATION_REPORTS:
        report = _read(repo / VALIDATION_REPORTS[stage] / "summary.md", since)
        if report:
            key = "retrain-validation"
            message = (f"data validation failed ({stage}): see the 'retrain-validation' "
                       f"artifact and {VALIDATION_REPORTS[stage]}/summary.md")
    elif stage == "gate":
        report = _read(repo / GATE_REPORT, since)
        gate = _read(repo / GATE_JSON, since)
        if report:
            key = "retrain-gate"
            failed = ", ".join(json.loads(gate).get("failed") or []) if gate else ""
            message = (f"the gate failed ({failed or 'see report'}): the candidate may not "
                       f"replace the champion; see the 'retrain-gate' artifact and {GATE_REPORT}")
    body = [f"# Retraining stopped at `{stage}`", "", f"**{message}**", "", context, ""]
    if report:
        body += [report.strip(), ""]
    if tail:
        body += [f"## Last lines of the `{stage}` log", "", "```", *tail, "```"]
    create_markdown_artifact(key=key, markdown="\n".join(body), description=message)
    return message


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def success_artifacts(repo: Path, steps: list[dict[str, Any]], context: str) -> dict[str, Any]:
    """A metrics table (candidate, champion, TF-IDF baseline) and a candidate-vs-champion diff."""
    import json

    steps_table = [{"stage": s["stage"], "status": s["status"], "seconds": s["seconds"]}
                   for s in steps]
    create_table_artifact(key="retrain-stages", table=steps_table,
                          description="what DVC did per stage in this run")
    if not (repo / EVAL_JSON).is_file():
        return {}
    ev = json.loads((repo / EVAL_JSON).read_text(encoding="utf-8"))
    cand, champ = ev["candidate"], ev.get("champion")
    tfidf = (ev.get("baselines") or {}).get("tfidf_logreg") or {}
    rows = []
    for metric in ("macro_f1", "accuracy", "weighted_f1"):
        c, b = cand.get(metric), (champ or {}).get(metric)
        rows.append({"metric": metric, "candidate": c, "champion": b,
                     "delta": None if b is None or c is None else round(c - b, 6),
                     "tfidf_baseline": tfidf.get(metric)})
    create_table_artifact(key="retrain-metrics", table=rows,
                          description=f"test split ({ev.get('test_rows')} rows), metrics/eval.json")
    gate = json.loads((repo / GATE_JSON).read_text()) if (repo / GATE_JSON).is_file() else {}
    md = ["# Candidate vs champion", "", context, "",
          f"Same test split for both ({ev.get('test_rows')} rows): the comparison is paired.", ""]
    if champ is None:
        md += ["No champion yet: this is the first model; only the absolute gate checks ran.", ""]
    md += ["| metric | candidate | champion | delta |", "|---|---:|---:|---:|"]
    md += [f"| {r['metric']} | {_fmt(r['candidate'])} | {_fmt(r['champion'])} | "
           f"{_fmt(r['delta'])} |" for r in rows]
    md += ["", "| class | candidate F1 | champion F1 |", "|---|---:|---:|"]
    for label, m in cand.get("per_class", {}).items():
        other = ((champ or {}).get("per_class") or {}).get(label, {})
        md.append(f"| {label} | {_fmt(m.get('f1'))} | {_fmt(other.get('f1'))} |")
    if gate:
        verdict = "passed" if gate.get("passed") else "FAILED"
        md += ["", f"Gate: **{verdict}** ({GATE_REPORT})."]
    try:
        diff = dvc_output(repo, "metrics", "diff", "--md").strip()
    except StageError:
        diff = ""
    if diff:
        md += ["", "## `dvc metrics diff` (workspace vs HEAD)", "", diff]
    create_markdown_artifact(key="retrain-vs-champion", markdown="\n".join(md),
                             description="candidate vs champion on the same test split")
    return {r["metric"]: r["candidate"] for r in rows}


# ---------------------------------------------------------------------------------------------
# one retraining at a time


@contextmanager
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
            with suppress(ObjectAlreadyExists):  # another run created it a moment ago
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
            message = str(exc).replace("\n", " ")
            create_markdown_artifact(key="retrain-failure", markdown=f"# Retraining refused\n\n"
                                     f"```\n{exc}\n```", description=message)
            return Failed(message=message)


def _retrain(repo: Path, revision: str | None, pull: bool, promote: bool, push: bool,
             overrides: dict[str, Any], until: str | None, reason: str, run_name: str | None,
             logger: Any) -> Any:
    start = time.time()
    branch: str | None = None
    bootstrap = load_flow_params(repo)  # timeouts for the steps before a revision is checked out
    if revision:
        require_clean_tree(repo, f"revision={revision!r} asks to check out another revision")
        git(repo, "switch", "--detach", revision)
        logger.info("checked out %s (%s)", revision, git(repo, "rev-parse", "--short", "HEAD"))
    if pull:
        dvc_pull.with_options(retries=bootstrap.retries_for("pull"),
                              retry_delay_seconds=bootstrap.retry_delay_s)(
            str(repo), bootstrap.timeout("pull"))
    elif revision:
        dvc_checkout(str(repo), bootstrap.timeout("checkout"))
    if overrides:
        branch = run_branch_name(run_name)
        git(repo, "switch", "-c", branch)
        logger.info("on run branch %s; params overrides: %s", branch,
                    ", ".join(apply_overrides(repo / "params.yaml", overrides)))
    params = load_flow_params(repo)
    stages = dag_order(repo, until)
    if promote and "gate" not in stages:  # nothing approved the candidate: never promote it
        logger.warning("promote skipped: this run has no gate stage (until=%r)", until)
        promote = False
    context = (f"Run `{run_name}` in `{repo}` at `{git(repo, 'rev-parse', '--short', 'HEAD')}`"
               f"{f' (branch `{branch}`)' if branch else ''}; reason: {reason}.")
    logger.info("stages: %s", " -> ".join(stages))
    steps = []
    if up_to_date(repo, until):  # the common scheduled run: no new data, code or params
        logger.info("dvc status: every stage is up to date; nothing to run")
        steps = [{"stage": s, "status": "skipped (unchanged)", "seconds": 0.0} for s in stages]
        stages = []
    for stage in stages:
        stage_start = time.time()
        state = run_stage.with_options(
            task_run_name=f"dvc repro {stage}", retries=params.retries_for(stage),
            retry_delay_seconds=params.retry_delay_s,
        )(stage, str(repo), params.timeout(stage), return_state=True)
        if state.is_failed():
            error = state.result(raise_on_failure=False)
            message = failure_artifact(repo, stage, error, stage_start, context)
            logger.error(message)
            return Failed(message=message)
        steps.append(state.result())
        logger.info("%s: %s in %.1f s", stage, steps[-1]["status"], steps[-1]["seconds"])
    metrics = success_artifacts(repo, steps, context)
    result: dict[str, Any] = {"stages": steps, "metrics": metrics, "branch": branch,
                              "promoted": False, "seconds": round(time.time() - start, 1)}
    if promote:
        if branch is None:
            branch = run_branch_name(run_name)
            git(repo, "switch", "-c", branch)
        commit = commit_results(repo, f"retrain {run_name}: dvc.lock, params and metrics\n\n"
                                      f"{context}")
        logger.info("committed the run's results on %s: %s", branch, commit or "nothing new")
        promote_candidate(str(repo), params.timeout("promote"))
        result.update(branch=branch, promoted=True, commit=git(repo, "rev-parse", "HEAD"))
        create_markdown_artifact(
            key="retrain-promotion",
            markdown=f"# Promoted on `{branch}`\n\n{context}\n\nOpen a pull request from `{branch}`"
                     f" to review: `git log -2 --stat {branch}`.",
            description=f"new champion committed on {branch}")
        logger.info("promoted: branch %s, commit %s", branch, result["commit"][:10])
    if push:
        result["pushed"] = push_results.with_options(
            retries=params.retries_for("push"), retry_delay_seconds=params.retry_delay_s)(
            str(repo), branch, params.timeout("push"))
    return result


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
    state = retrain(repo_dir=args.repo_dir, revision=args.revision, pull=args.pull,
                    promote=args.promote, push=args.push, until=args.until, overrides=overrides,
                    return_state=True)
    print(f"retrain: {state.name}: {state.message or ''}".rstrip(": "))
    sys.exit(0 if state.is_completed() else 1)


if __name__ == "__main__":
    run_cli(main)
