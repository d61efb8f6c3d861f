"""Ctrl-C and SIGTERM during `python -m flows.retrain` (its temporary Prefect server): the running
stage is stopped, the run is recorded as Crashed, and the command exits in seconds with one line.

A real run: a git + DVC checkout whose only stage sleeps, the CLI without PREFECT_API_URL (so it
starts its own temporary server, PREFECT_HOME in a temp dir), a real signal, and the server's own
database read afterwards for the recorded states.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers import assert_no_traceback, git, wait_until

# the stage writes out.txt at once while a file `fast` exists (the first, completed run), and
# otherwise sleeps (the run that is interrupted)
STAGE = ("import os, pathlib, sys, time; p = pathlib.Path; "
         "p('fast').exists() and (p('out.txt').write_text('v1'), sys.exit(0)); "
         "p('stage.pid').write_text(str(os.getpid())); "
         "print('stage started', flush=True); time.sleep(600)")


def sleeping_pipeline(root: Path) -> Path:
    """A checkout whose one stage completed once (out.txt in dvc.lock and the cache) and whose
    input changed since, so the flow runs it again and it sleeps."""
    repo = root / "repo"
    repo.mkdir()
    dvc_exe = str(Path(sys.executable).with_name("dvc"))
    (repo / "dvc.yaml").write_text(f'stages:\n  ingest:\n    cmd: python -c "{STAGE}"\n'
                                   "    deps:\n      - input.txt\n    outs:\n      - out.txt\n")
    (repo / "params.yaml").write_text("flow:\n  retries: {}\n")
    (repo / "input.txt").write_text("v1\n")
    git(repo, "init", "-q", "-b", "main")
    subprocess.run([dvc_exe, "init", "-q"], cwd=repo, check=True)
    (repo / "fast").touch()
    subprocess.run([dvc_exe, "repro", "-q"], cwd=repo, check=True)
    (repo / "fast").unlink()
    (repo / "input.txt").write_text("v2\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def alive(pid: int, grace_s: float = 5.0) -> bool:
    """Whether ``pid`` still runs after ``grace_s`` (a zombie waiting to be reaped has stopped)."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)


# `python -m flows.retrain`, with SIGUSR1 dumping every thread's stack (a hang's diagnosis)
RETRAIN_WITH_STACK_DUMPS = (
    "import faulthandler, runpy, signal, sys; "
    "faulthandler.register(signal.SIGUSR1, all_threads=True); sys.argv = ['flows.retrain']; "
    "runpy.run_module('flows.retrain', run_name='__main__', alter_sys=True)")


@pytest.mark.slow
@pytest.mark.parametrize("sig, to_group", [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["SIGTERM", "ctrl-c"])
def test_a_signal_stops_the_stage_and_records_the_run(tmp_path: Path, sig: signal.Signals,
                                                      to_group: bool) -> None:
    repo = sleeping_pipeline(tmp_path)
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PYTHONPATH=str(REPO_ROOT), PREFECT_HOME=str(home), DO_NOT_TRACK="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DVC_NO_ANALYTICS="1")
    log = (tmp_path / "run.log").open("w+")
    # its own session, as a shell gives a foreground job: Ctrl-C is SIGINT to the whole group.
    # Started with SIGINT ignored, as a shell without job control starts a background job (and
    # as this test ran in such a CI shell, where Ctrl-C used to do nothing): it must still stop.
    proc = subprocess.Popen([sys.executable, "-c", RETRAIN_WITH_STACK_DUMPS], cwd=repo, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        def stage_started() -> bool:
            assert proc.poll() is None, log_text(log)
            return (repo / "stage.pid").is_file() and "stage started" in log_text(log)

        wait_until(stage_started, 240, "the stage to start", interval_s=0.5,
                   details=lambda: log_text(log))
        stage_pid = int((repo / "stage.pid").read_text())
        sent = time.monotonic()
        if to_group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired as exc:  # where it hangs: every thread's stack, to the log
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(2)
            raise subprocess.TimeoutExpired(exc.cmd, exc.timeout, output=log_text(log)) from None
        seconds = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = log_text(log)
    assert seconds < 30, f"exited {seconds:.0f} s after {sig.name}:\n{out}"
    assert code == 128 + sig.value, out
    assert (f"retrain: interrupted by {sig.name} during `ingest`: its processes were stopped; "
            "the run is recorded as Crashed") in out
    assert_no_traceback(out)
    assert "connection attempts failed" not in out, out
    assert not alive(stage_pid), "the stage kept running"
    # DVC removed the stage's output when the stage started: the last line says so, and how to
    # get the last completed run's back
    assert not (repo / "out.txt").exists()
    assert out.rstrip().splitlines()[-1] == (
        "retrain: missing outputs (DVC removes a stage's outputs when it starts): out.txt; "
        "restore the last completed run's from the cache: dvc checkout out.txt"), out
    subprocess.run([str(Path(sys.executable).with_name("dvc")), "checkout", "out.txt"], cwd=repo,
                   check=True, capture_output=True)
    assert (repo / "out.txt").read_text() == "v1"
    with sqlite3.connect(home / "prefect.db") as db:
        flows = db.execute("select state_type from flow_run").fetchall()
        tasks = db.execute("select name, state_type from task_run").fetchall()
    assert flows == [("CRASHED",)]
    assert tasks == [("dvc repro ingest", "CRASHED")]


def log_text(log: object) -> str:
    log.flush()
    return Path(log.name).read_text()
