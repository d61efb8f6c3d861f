"""The `retrain` flow on a real git + DVC checkout of the project (tiny model), one Prefect test
server for the whole session (its start-up costs ~13 s; PREFECT_HOME in a temp dir).

The pipeline tests share one checkout (module scope) so DVC's cache carries over: each test sets
every param it depends on, so any order passes, but in file order most stages are cache hits.
Runs stop at the gate (``until="gate"``): export/quantize/benchmark have tests of their own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import set_params
from tests.helpers import git, run_module

PASSING_GATE = {"min_macro_f1": 0.0, "min_accuracy": 0.0, "min_class_recall": 0.0,
                "tfidf_margin": None, "max_regression_macro_f1": None,
                "max_regression_slice": None}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """One pipeline checkout shared by the module's pipeline tests (see the module docstring)."""
    from tests.conftest import make_pipeline_repo

    return make_pipeline_repo(tmp_path_factory.mktemp("flow"), tiny_model_dir)


def run_flow(**kwargs: Any) -> Any:
    from flows.retrain import retrain

    return retrain(**kwargs, return_state=True)


def artifacts(client: Any, state: Any) -> dict[str, Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    return {a.key: a for a in client.read_artifacts(flow_run_filter=runs)}


def task_runs(client: Any, state: Any) -> dict[str, Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    return {t.name: t for t in client.read_task_runs(flow_run_filter=runs)}


# --- pure helpers ------------------------------------------------------------------------------


def test_dag_order_follows_dvc_and_until_keeps_only_ancestors(repo: Path) -> None:
    from flows.dvc_pipeline import dag_order

    order = dag_order(repo)
    stages = list(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    assert sorted(order) == sorted(stages)
    for before, after in (("ingest", "validate"), ("validate", "split"), ("split", "train"),
                          ("validate_splits", "train"), ("train", "evaluate"),
                          ("evaluate", "gate")):
        assert order.index(before) < order.index(after)
    assert dag_order(repo, until="split") == ["ingest", "validate", "split"]


def test_overrides_keep_comments_and_reject_unknown_keys(tmp_path: Path) -> None:
    from flows.dvc_pipeline import apply_overrides, parse_overrides
    from stages.common import StageError

    params = tmp_path / "params.yaml"
    params.write_text("train:\n  # the learning rate\n  epochs: 4  # passes\n  seed: 1\n")
    changed = apply_overrides(params, parse_overrides(["train.epochs=2"]) | {"train.seed": "7"})
    assert changed == ["train.epochs=2", "train.seed=7"]
    text = params.read_text()
    assert "# the learning rate" in text and "# passes" in text
    assert yaml.safe_load(text) == {"train": {"epochs": 2, "seed": 7}}
    with pytest.raises(StageError, match="unknown parameter 'train.epoch'"):
        apply_overrides(params, {"train.epoch": 3})


def test_retries_of_deterministic_checks_are_refused(tmp_path: Path) -> None:
    from flows.retrain import load_flow_params
    from stages.common import StageError

    (tmp_path / "params.yaml").write_text("flow:\n  retries: {ingest: 2, gate: 1}\n")
    with pytest.raises(StageError, match="must not retry"):
        load_flow_params(tmp_path)
    (tmp_path / "params.yaml").write_text("flow:\n  retries: {label_audit: 1}\n")
    with pytest.raises(StageError, match=r"must not retry \['label_audit'\]"):
        load_flow_params(tmp_path)


# --- the flow on the pipeline ------------------------------------------------------------------


@pytest.mark.slow
def test_validation_failure_fails_the_run_with_the_summary(prefect_api: Any, repo: Path) -> None:
    set_params(repo, {"validate": {"min_rows": 100000}, "flow": {"retries": {"ingest": 1}}})
    state = run_flow(repo_dir=str(repo), promote=True)
    assert state.is_failed()
    assert "data validation failed (validate)" in state.message
    art = artifacts(prefect_api, state)["retrain-validation"]
    summary = (repo / "reports/validation/raw/summary.md").read_text()
    assert summary.strip().splitlines()[0] in art.data
    runs = task_runs(prefect_api, state)
    assert runs["dvc repro validate"].run_count == 1  # deterministic: never retried
    assert "dvc repro split" not in runs
    assert git(repo, "branch", "--list", "retrain/*") == ""


@pytest.mark.slow
def test_gate_failure_fails_the_run_with_the_gate_report(prefect_api: Any, repo: Path) -> None:
    set_params(repo, {"validate": {"min_rows": 50},
                      "gate": {**PASSING_GATE, "min_macro_f1": 0.999}})
    state = run_flow(repo_dir=str(repo), promote=True, until="gate")
    assert state.is_failed()
    assert "the gate failed (min_macro_f1)" in state.message
    art = artifacts(prefect_api, state)["retrain-gate"]
    assert (repo / "reports/gate.md").read_text().strip().splitlines()[0] in art.data
    assert json.loads((repo / "metrics/gate.json").read_text())["passed"] is False
    assert task_runs(prefect_api, state)["dvc repro gate"].run_count == 1
    assert git(repo, "branch", "--list", "retrain/*") == ""  # nothing promoted


@pytest.mark.slow
def test_label_audit_in_block_mode_fails_the_run_with_its_report(prefect_api: Any,
                                                                  pipeline_repo: Path) -> None:
    """Labels moved to another class, and no suspect allowed: the audit stops the run before
    train, with the stage's own message and its report as the artifact."""
    import pandas as pd

    labels = pd.read_csv(pipeline_repo / "data/sample/labels.csv")
    classes = sorted(labels["label"].unique())
    moved = labels.index[::10]                               # 12 of 120 rows, every class
    labels.loc[moved, "label"] = labels.loc[moved, "label"].map(
        lambda c: classes[(classes.index(c) + 1) % len(classes)])
    labels.to_csv(pipeline_repo / "data/sample/labels.csv", index=False)
    set_params(pipeline_repo, {"label_audit": {"mode": "block", "max_suspect_share": 0.0,
                                               "features": "tfidf"}})
    state = run_flow(repo_dir=str(pipeline_repo), until="train", promote=True)
    assert state.is_failed()
    audit = json.loads((pipeline_repo / "metrics/label_audit.json").read_text())
    assert audit["mode"] == "block" and audit["suspects"] > 0
    # the stage's own message (not DVC's "failed to reproduce"), and where to read more
    assert state.message == (
        f"the label audit failed: {audit['suspects']} of {audit['rows']} train and val labels "
        f"({100 * audit['suspect_share']:.1f}%) look wrong, above label_audit.max_suspect_share "
        "(0%); see the 'retrain-label-audit' artifact and reports/label_audit.html")
    arts = artifacts(prefect_api, state)
    assert "retrain-failure" not in arts
    report = (pipeline_repo / "reports/label_audit.md").read_text()
    assert "# Retraining stopped at `label_audit`" in arts["retrain-label-audit"].data
    assert report.splitlines()[2] in arts["retrain-label-audit"].data  # the audit's verdict
    runs = task_runs(prefect_api, state)
    assert runs["dvc repro label_audit"].run_count == 1      # deterministic: never retried
    assert "dvc repro train" not in runs
    assert git(pipeline_repo, "branch", "--list", "retrain/*") == ""


@pytest.mark.slow
def test_success_promotes_on_a_run_branch_with_artifacts(prefect_api: Any, repo: Path) -> None:
    set_params(repo, {"validate": {"min_rows": 50}, "gate": {**PASSING_GATE,
                                                             "min_macro_f1": 0.999}})
    start = git(repo, "rev-parse", "HEAD")
    # the override (written to params.yaml on the run branch) is what lets the gate pass
    state = run_flow(repo_dir=str(repo), promote=True, until="gate",
                     overrides={"gate.min_macro_f1": 0.0})
    assert state.is_completed(), state.message
    result = state.result()
    branch = result["branch"]
    assert branch.startswith(f"retrain/{datetime.now(UTC):%Y-%m-%d}-")
    assert git(repo, "branch", "--show-current") == branch
    assert git(repo, "rev-parse", "main") == start  # main is never committed to
    changed = set(git(repo, "diff", "--name-only", f"main..{branch}").splitlines())
    assert {"dvc.lock", "params.yaml", "metrics/eval.json", "metrics/gate.json",
            "models/champion.dvc", "models/champion.json"} <= changed
    pointer = json.loads(git(repo, "show", f"{branch}:models/champion.json"))["champion"]
    assert pointer["path"] == "models/champion" and pointer["forced"] is False
    assert yaml.safe_load(git(repo, "show", f"{branch}:params.yaml"))["gate"]["min_macro_f1"] == 0
    arts = artifacts(prefect_api, state)
    assert {"retrain-metrics", "retrain-vs-champion", "retrain-stages",
            "retrain-promotion"} <= set(arts)
    table = json.loads(arts["retrain-metrics"].data)
    eval_json = json.loads((repo / "metrics/eval.json").read_text())
    assert {r["metric"]: r["candidate"] for r in table}["macro_f1"] == \
        eval_json["candidate"]["macro_f1"]
    assert "No champion yet" in arts["retrain-vs-champion"].data
    # the label audit's headline and confused pairs, from the audit this run made
    from stages.label_audit_report import verdict

    audit = json.loads((repo / "metrics/label_audit.json").read_text())
    art = arts["retrain-label-audit"]
    assert art.description == verdict(audit) and f"**{verdict(audit)}.**" in art.data
    for pair in audit["confused_pairs"]:
        assert f"| `{pair['given']}` | `{pair['suggested']}` | {pair['rows']} |" in art.data

    # the same data, params and code again: the champion is never promoted a second time, and
    # the run says so in one line (evaluate and gate re-run once: the champion they compare with
    # changed; the run after that has nothing to run at all)
    promoted = git(repo, "rev-parse", "HEAD")
    for _ in range(2):
        again = run_flow(repo_dir=str(repo), promote=True, until="gate")
        assert again.is_completed(), again.message
        assert again.message.startswith("nothing changed since the champion was trained")
        assert git(repo, "rev-parse", "HEAD") == promoted
    assert {s["status"] for s in again.result()["stages"]} == {"skipped (unchanged)"}
    assert "reports/label_audit.html" in art.data
    assert {s["stage"]: s["status"] for s in result["stages"]}["gate"] == "ran"
    limit = prefect_api.read_global_concurrency_limit_by_name("retrainer-retrain")
    assert limit.limit == 1


@pytest.mark.slow
def test_push_sends_the_run_to_the_team_remote(prefect_api: Any, repo: Path,
                                                webdav_remote: Any) -> None:
    """The flow's push step against a real WebDAV server: afterwards cache and remote agree."""
    from tests.conftest import dvc, use_remote

    set_params(repo, {"gate": PASSING_GATE})
    use_remote(repo, webdav_remote)
    state = run_flow(repo_dir=str(repo), until="gate", push=True)
    assert state.is_completed(), state.message
    assert state.result()["pushed"] == ["dvc push"]
    assert any(p.is_file() for p in (webdav_remote.root / "dvc-store").rglob("*"))
    cloud = dvc(repo, "status", "--cloud", "--with-deps", "gate")
    assert "Cache and remote 'team' are in sync." in cloud.stdout, cloud.stdout


# --- transient failures and the DVC lock ---------------------------------------------------------


@pytest.mark.slow
def test_a_flaky_step_is_retried(prefect_api: Any, pipeline_repo: Path) -> None:
    """The ingest command fails once (a source that is briefly unreachable), then succeeds."""
    marker = pipeline_repo.parent / "failed-once"
    script = pipeline_repo.parent / "flaky.py"
    script.write_text("import pathlib, sys\n"
                      f"m = pathlib.Path({str(marker)!r})\n"
                      "if not m.exists():\n"
                      "    m.touch(); print('ERROR: source unreachable'); sys.exit(1)\n")
    dvc_yaml = yaml.safe_load((pipeline_repo / "dvc.yaml").read_text())
    dvc_yaml["stages"]["ingest"]["cmd"] = f"python {script} && python -m stages.ingest"
    (pipeline_repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    set_params(pipeline_repo, {"flow": {"retries": {"ingest": 2}, "retry_delay_s": [0]}})
    state = run_flow(repo_dir=str(pipeline_repo), until="ingest")
    assert state.is_completed(), state.message
    assert marker.exists()
    assert task_runs(prefect_api, state)["dvc repro ingest"].run_count == 2
    assert (pipeline_repo / "data/raw/texts.parquet").is_file()


@pytest.mark.slow
def test_a_held_dvc_lock_fails_with_a_clear_message(prefect_api: Any, pipeline_repo: Path) -> None:
    import zc.lockfile

    (pipeline_repo / ".dvc/tmp").mkdir(parents=True, exist_ok=True)
    lock = zc.lockfile.LockFile(str(pipeline_repo / ".dvc/tmp/lock"))
    try:
        set_params(pipeline_repo, {"flow": {"retries": {"ingest": 0}}})
        state = run_flow(repo_dir=str(pipeline_repo), until="ingest")
    finally:
        lock.close()
    assert state.is_failed()
    assert "repository lock is held by another process" in state.message
    assert "retrain-failure" in artifacts(prefect_api, state)


@pytest.mark.slow
def test_cli_runs_the_flow_and_reports_the_state(prefect_api: Any, pipeline_repo: Path) -> None:
    """`python -m flows.retrain` exits 1 with the failure message (against the test server)."""
    from prefect.settings import PREFECT_API_URL

    proc = run_module("flows.retrain", pipeline_repo, "--until", "ingest",
                      "-S", "ingest.source.texts=missing.csv", "-S", "flow.retries.ingest=0",
                      env={"PREFECT_API_URL": PREFECT_API_URL.value()}, pythonpath=pipeline_repo,
                      timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "retrain: Failed: ingest failed (exit" in proc.stdout
    assert "missing.csv" in proc.stdout
