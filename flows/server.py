"""What `python -m flows.retrain` needs around a flow run: a temporary Prefect server of its own,
and SIGTERM turned into an exception (Ctrl-C already is one), so an interrupted run ends in seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stages.common import StageError
from stages.vcs import stop_process


class Interrupted(BaseException):
    """SIGTERM arrived; raised in the main thread wherever it is, like Ctrl-C's KeyboardInterrupt
    (while the flow runs, Prefect's own handler raises TerminationSignal instead)."""

    def __init__(self, signum: int) -> None:
        self.signal = signal.Signals(signum).name
        super().__init__(self.signal)


def raise_interrupted(signum: int, _frame: Any) -> None:
    """A signal handler: SIGTERM interrupts the main thread like Ctrl-C."""
    raise Interrupted(signum)


@contextlib.contextmanager
def temporary_server() -> Iterator[None]:
    """Without PREFECT_API_URL, a temporary Prefect server for this run, in its own session.

    Prefect's own temporary server shares the terminal's process group, so Ctrl-C killed it
    before the run could record its end, and the run then spent minutes retrying a refused
    connection. This one only stops when the run is over.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    print(f"retrain: starting a temporary Prefect server on {url} (set PREFECT_API_URL to use "
          "yours)", file=sys.stderr)
    server = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start",
                               "--host", "127.0.0.1", "--port", str(port), "--no-ui",
                               "--no-scheduler", "--no-late-runs", "--analytics-off"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + float(os.environ.get(
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 180))
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise StageError("the temporary Prefect server did not start",
                                 where=f"prefect server start --port {port}",
                                 fix="start one (`prefect server start`) and set PREFECT_API_URL")
            time.sleep(0.5)
        with temporary_settings({PREFECT_API_URL: url}):
            try:
                yield
            finally:
                _deliver_logs_and_events()
    finally:
        stop_process(server)


def _deliver_logs_and_events() -> None:
    """Send the run's queued logs and events while the server is still up (else each is retried
    against a closed port for a minute at exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=10)


