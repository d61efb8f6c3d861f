"""Integration: a real `prefect server start` (127.0.0.1, temp SQLite), a process work pool and
worker, the deployments created from the project's own prefect.yaml by `prefect deploy --all`,
and runs started by `prefect deployment run` and by the data-arrived event (`commands.notify`).

The checkout's dvc.yaml is cut down to `ingest`: the plumbing (deploy, schedule, trigger, worker,
working directory, venv PATH) is under test here; the stages in the flow are tested in
test_flows.py. Everything this test starts, it stops (process groups, in a finally).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import FLOW_GIT_IDENTITY, make_rows, write_csv
from tests.helpers import git, run_module, wait_until

pytestmark = pytest.mark.slow  # a real Prefect server, worker and deployments

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_env(tmp: Path, port: int) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ,
            "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
            "PREFECT_HOME": str(tmp / "prefect-home"),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp / 'prefect.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "PREFECT_WORKER_QUERY_SECONDS": "2",  # the worker polls for new runs every 2 s
            "PREFECT_WORKER_PREFETCH_SECONDS": "2",
            **FLOW_GIT_IDENTITY}


def start(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    out = log.open("w")
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    proc = subprocess.run([str(Path(sys.executable).with_name("prefect")), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def wait_for(what: str, check: Any, timeout: float, logs: list[Path]) -> Any:
    """``check()``'s first truthy value, polled every second; on a timeout, the logs' tails."""
    def tails() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())

    return wait_until(check, timeout, what, interval_s=1, details=tails)


def start_server_and_deploy(env: dict[str, str], repo: Path, tmp_path: Path, port: int,
                            logs: list[Path]) -> subprocess.Popen:
    """A real `prefect server start` on 127.0.0.1:port, healthy, with prefect.yaml deployed."""
    api = env["PREFECT_API_URL"]
    server = start([str(Path(sys.executable).with_name("prefect")), "server", "start",
                    "--host", "127.0.0.1", "--port", str(port), "--no-ui"], tmp_path, env, logs[0])

    def healthy() -> bool:
        try:
            return httpx.get(f"{api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("the server", healthy, 120, logs)
        cli(env, repo, "work-pool", "create", "retrainer-pool", "--type", "process")
        cli(env, repo, "--no-prompt", "deploy", "--all")
    except BaseException:
        stop(server)
        raise
    return server


def test_deployments_run_on_a_real_server_worker_and_event(pipeline_repo: Path,
                                                           tmp_path: Path) -> None:
    repo = pipeline_repo
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    dvc_yaml["stages"] = {"ingest": dvc_yaml["stages"]["ingest"]}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    git(repo, "commit", "-qam", "ingest only")
    port = free_port()
    env = prefect_env(tmp_path, port)
    api = env["PREFECT_API_URL"]
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    logs = [server_log, worker_log]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(start_server_and_deploy(env, repo, tmp_path, port, logs))
        deployments = httpx.post(f"{api}/deployments/filter", json={}).json()
        by_name = {d["name"]: d for d in deployments}
        assert set(by_name) == {"weekly", "on-data-arrived", "label-on-drift", "import-labels",
                                "hourly"}
        assert by_name["weekly"]["schedules"][0]["schedule"]["cron"] == "0 3 * * 1"
        assert by_name["weekly"]["pull_steps"][0][
            "prefect.deployments.steps.set_working_directory"]["directory"] == str(repo)
        procs.append(start([str(Path(sys.executable).with_name("prefect")), "worker", "start",
                            "--pool", "retrainer-pool"], tmp_path, env, worker_log))

        def finished(run_id: str) -> Any:
            run = httpx.get(f"{api}/flow_runs/{run_id}").json()
            return run if run["state_type"] in TERMINAL else None

        # 1. a run started by hand, as `prefect deployment run` does
        out = cli(env, repo, "deployment", "run", "retrain/weekly")
        run_id = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
        run = wait_for("the weekly run", lambda: finished(run_id), 300, logs)
        assert run["state_type"] == "COMPLETED", run["state"]
        lock_1 = (repo / "dvc.lock").read_text()
        assert "ingest:" in lock_1

        # 2. new data lands; `commands.notify` emits retrainer.data.arrived; the trigger runs it
        texts, labels = make_rows(22, seed=1)
        write_csv(repo / "data/sample/texts.csv", texts)
        write_csv(repo / "data/sample/labels.csv", labels)
        notify = run_module("commands.notify", repo, env=env, pythonpath=repo, timeout=120)
        assert notify.returncode == 0, notify.stderr
        deployment_id = by_name["on-data-arrived"]["id"]

        def event_run() -> Any:
            runs = httpx.post(f"{api}/flow_runs/filter", json={
                "deployments": {"id": {"any_": [deployment_id]}}}).json()
            return runs and finished(runs[0]["id"])

        run = wait_for("the event-triggered run", event_run, 300, logs)
        assert run["state_type"] == "COMPLETED", run["state"]
        assert run["parameters"]["reason"].startswith("retrainer.data.arrived: retrainer.dataset.")
        assert run["parameters"]["promote"] is True  # the deployment's defaults still apply
        assert (repo / "dvc.lock").read_text() != lock_1  # DVC re-ran ingest on the new data
        artifacts = httpx.post(f"{api}/artifacts/filter", json={
            "flow_runs": {"id": {"any_": [run["id"]]}}}).json()
        assert "retrain-stages" in {a["key"] for a in artifacts}
        stages = json.loads(next(a for a in artifacts if a["key"] == "retrain-stages")["data"])
        assert stages == [{"stage": "ingest", "status": "ran", "seconds": stages[0]["seconds"]}]
    finally:
        for proc in reversed(procs):
            stop(proc)
