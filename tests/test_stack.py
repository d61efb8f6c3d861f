"""`python -m commands.stack up|status|down`: the whole local loop with one command, stopped
exactly (real Prefect server, worker and deployments, Label Studio, the service)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from labelling import studio_server
from tests.helpers import run_module
from tests.serving import free_port

pytestmark = pytest.mark.slow  # servers: Prefect, Label Studio (its venv on first use), the service


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_stack_up_starts_the_loop_and_down_stops_exactly_what_it_started(
        pipeline_repo: Path, tmp_path: Path) -> None:
    repo = pipeline_repo
    ports = {"prefect": free_port(), "serve": free_port(), "label-studio": free_port()}
    args = [f"--{name}-port={port}" for name, port in ports.items()]
    state_dir = tmp_path / "stack"
    # something else on the machine, in its own process group: down must leave it alone
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                 start_new_session=True)
    try:
        # the checkout's Label Studio venv, not a second 1 GB install in the copy
        venv = {"RETRAINER_LABEL_STUDIO_VENV": str(studio_server.ensure_venv())}
        up = run_module("commands.stack", repo, "up", "--dir", state_dir, *args, env=venv,
                        timeout=900)
        assert up.returncode == 0, up.stdout + up.stderr
        exports = dict(line.removeprefix("export ").split("=", 1)
                       for line in up.stdout.splitlines() if line.startswith("export "))
        state = json.loads((state_dir / "stack.json").read_text())
        names = [p["name"] for p in state["processes"]]
        assert names == ["prefect-server", "label-studio", "prefect-worker", "serve"]
        assert oct((state_dir / "stack.json").stat().st_mode)[-3:] == "600"  # it holds tokens

        api = exports["PREFECT_API_URL"]
        assert api == f"http://127.0.0.1:{ports['prefect']}/api"
        assert httpx.get(f"{api}/health", timeout=10).status_code == 200
        deployed = {d["name"] for d in httpx.post(f"{api}/deployments/filter", json={}).json()}
        assert {"weekly", "on-data-arrived", "label-on-drift", "import-labels", "hourly"} <= deployed
        assert httpx.get(f"{exports['RETRAINER_SERVE_URL']}/healthz", timeout=10).status_code == 200
        me = httpx.get(f"{exports['LABEL_STUDIO_URL']}/api/current-user/whoami", timeout=10,
                       headers={"Authorization": f"Token {exports['LABEL_STUDIO_API_KEY']}"})
        assert me.status_code == 200, me.text
        workers = httpx.post(f"{api}/work_pools/retrainer-pool/workers/filter", json={}).json()
        deadline = time.monotonic() + 60
        while not workers and time.monotonic() < deadline:  # the worker's first heartbeat
            time.sleep(1)
            workers = httpx.post(f"{api}/work_pools/retrainer-pool/workers/filter",
                                 json={}).json()
        assert workers, (state_dir / "logs/prefect-worker.log").read_text()[-2000:]
        for proc in state["processes"]:
            assert Path(proc["log"]).is_file()

        status = run_module("commands.stack", repo, "status", "--dir", state_dir)
        assert status.returncode == 0 and status.stdout.count(": running") == 4, status.stdout
        again = run_module("commands.stack", repo, "up", "--dir", state_dir, *args)
        assert again.returncode == 1 and "the stack is already up" in again.stderr

        down = run_module("commands.stack", repo, "down", "--dir", state_dir, timeout=300)
        assert down.returncode == 0, down.stderr
        assert all(f"{name}: stopped" in down.stdout for name in names), down.stdout
        for proc in state["processes"]:
            assert not alive(proc["pid"]), proc
        assert alive(bystander.pid)
        gone = run_module("commands.stack", repo, "status", "--dir", state_dir)
        assert gone.returncode == 3 and "not running" in gone.stdout
    finally:
        run_module("commands.stack", repo, "down", "--dir", state_dir, timeout=300)
        os.killpg(bystander.pid, signal.SIGKILL)
        bystander.wait()
