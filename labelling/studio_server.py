"""A Label Studio server for the project: its own virtual env, its own data dir, started and stopped.

Label Studio's pins conflict with requirements.txt (httpx, its Django stack), so it lives in its own
virtual env (``.venv-label-studio``, from requirements-label-studio.txt) and the project only talks
to it over HTTP (labelling/studio.py). Every server gets a data dir we pass
(LABEL_STUDIO_BASE_DATA_DIR): a user's ~/.local/share/label-studio is never read or written.

The first user is created non-interactively at start (LABEL_STUDIO_USERNAME / _PASSWORD), with a
legacy API token we choose (LABEL_STUDIO_USER_TOKEN; legacy tokens are off by default in 1.2x, so
LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true). Measured on 2 shared cores: the venv install takes
1.5-2.2 min (about 1 GB), a first start 45-80 s (most of it creating the database), a restart on
the same data dir about 8 s. POSIX only (process groups).

    python -m labelling.studio_server up --dir tmp/label-studio [--port 8080]
    python -m labelling.studio_server status --dir tmp/label-studio
    python -m labelling.studio_server down --dir tmp/label-studio

``up`` writes <dir>/server.json (url, token, password, pid; readable by you only) and prints the
LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY lines labelling.studio reads; the data lives in <dir>/data.
``down`` keeps both, so the next ``up`` serves the same projects with the same token.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from stages.common import StageError

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO_ROOT / "requirements-label-studio.txt"
DEFAULT_VENV = REPO_ROOT / ".venv-label-studio"
# another place for the venv (one ~1 GB install shared by several checkouts, or by test copies)
VENV_ENV = "RETRAINER_LABEL_STUDIO_VENV"
MARKER = ".installed"  # holds the sha256 of the requirements file the venv was installed from
STATE_FILE = "server.json"
DEFAULT_USERNAME = "admin@retrainer.local"
START_TIMEOUT_S = 240.0  # a first start migrates a fresh sqlite database: 45-80 s on 2 busy cores
_CHILDREN: dict[int, subprocess.Popen] = {}  # servers this process started, so stop() can reap them


@dataclass
class StudioServer:
    """A running server that ``start`` launched: what a client needs, and what ``stop`` ends."""

    url: str
    token: str
    username: str
    password: str
    pid: int
    port: int
    data_dir: str
    log_path: str


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def venv_bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def default_venv() -> Path:
    """$RETRAINER_LABEL_STUDIO_VENV, else .venv-label-studio in the checkout."""
    return Path(os.environ.get(VENV_ENV) or DEFAULT_VENV)


def ensure_venv(venv: Path | None = None, requirements: Path = REQUIREMENTS) -> Path:
    """The Label Studio virtual env (default :func:`default_venv`), created with this Python's
    ``-m venv`` and pip-installed from ``requirements`` when missing or when the requirements
    file changed since; returns ``venv``."""
    import fcntl

    venv, requirements = Path(venv or default_venv()), Path(requirements)
    if not requirements.is_file():
        raise StageError(f"{requirements.name} is missing", where=str(requirements),
                         fix="restore it from git: it pins the Label Studio server")
    wanted = _sha256(requirements)
    marker = venv / MARKER
    if marker.is_file() and marker.read_text().strip() == wanted:
        return venv
    venv.mkdir(parents=True, exist_ok=True)  # -m venv fills an existing folder
    # two test workers or two shells may ask at once: one installs, the other waits for it
    with open(venv / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().strip() == wanted:
            return venv
        log = venv / "install.log"
        with open(log, "w") as out:
            steps = [[sys.executable, "-m", "venv", str(venv)],
                     [str(venv_bin(venv, "python")), "-m", "pip", "install", "--quiet", "-r",
                      str(requirements)]]
            for step in steps:
                if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                    raise StageError(
                        f"installing Label Studio failed: {' '.join(step[:4])} ...\n{_tail(log)}",
                        where=str(log),
                        fix=f"read the log; pip needs a package index; delete {venv} to start over")
        marker.write_text(wanted + "\n")
    return venv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def server_env(data_dir: Path, url: str, port: int, username: str, password: str,
               token: str) -> dict[str, str]:
    """The server's environment: ours minus any LABEL_STUDIO_* / HEARTEX_* settings of the user's,
    plus everything that pins it to ``data_dir`` and 127.0.0.1, and no telemetry."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LABEL_STUDIO_", "HEARTEX_", "DJANGO_"))}
    # Label Studio reads LABEL_STUDIO_<NAME> first, then the bare <NAME> (HOST, PORT, USERNAME,
    # DATABASE_NAME...): setting the prefixed names keeps a stray bare one from taking effect
    settings = {
        "BASE_DATA_DIR": str(data_dir), "DATABASE_NAME": str(data_dir / "label_studio.sqlite3"),
        "DJANGO_DB": "sqlite", "HOST": url, "PORT": str(port),
        "USERNAME": username, "PASSWORD": password, "USER_TOKEN": token,
        "ENABLE_LEGACY_API_TOKEN": "true",
        "COLLECT_ANALYTICS": "false", "LATEST_VERSION_CHECK": "false",
        "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
    }
    env.update({f"LABEL_STUDIO_{k}": v for k, v in settings.items()})
    return env


def start(data_dir: Path, port: int | None = None, username: str = DEFAULT_USERNAME,
          password: str | None = None, token: str | None = None, venv: Path | None = None,
          timeout: float = START_TIMEOUT_S) -> StudioServer:
    """Start ``label-studio start`` on 127.0.0.1:``port`` (a free one if None) with its data in
    ``data_dir`` and its output in ``data_dir``/server.log; return once it answers our token.

    The first user (``username``/``password``, a random password if None) gets ``token`` (a random
    40-hex legacy token if None); a second start on the same data dir keeps the first token.
    """
    venv = Path(venv) if venv is not None else ensure_venv()
    exe = venv_bin(venv, "label-studio")
    if not exe.exists():
        raise StageError("label-studio is not installed in the venv", where=str(exe),
                         fix=f"delete {venv} and run `python -m labelling.studio_server up` again")
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if port_taken(port):
        # label-studio would quietly move to the next free port: refuse instead
        raise StageError(f"port {port} on 127.0.0.1 is in use", where=f"127.0.0.1:{port}",
                         fix="choose another --port, or stop what listens there")
    password = password or secrets.token_urlsafe(16)
    token = token or secrets.token_hex(20)
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "server.log"
    cmd = [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
           "--host", url, "--data-dir", str(data_dir)]
    with open(log_path, "ab") as log:
        # its own session: stop() ends this process group and nothing else
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=server_env(data_dir, url, port, username, password, token),
                                cwd=data_dir, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    server = StudioServer(url=url, token=token, username=username, password=password, pid=proc.pid,
                          port=port, data_dir=str(data_dir), log_path=str(log_path))
    try:
        server.token = _wait_healthy(proc, server, timeout)
    except BaseException:
        stop(server)
        raise
    return server


def _whoami(url: str, token: str) -> dict | None:
    import requests

    try:
        r = requests.get(f"{url}/api/current-user/whoami",
                         headers={"Authorization": f"Token {token}"}, timeout=10)
    except requests.RequestException:
        return None
    return r.json() if r.status_code == 200 else None


def _wait_healthy(proc: subprocess.Popen, server: StudioServer, timeout: float) -> str:
    """Wait until /health answers and the token is accepted as our user; return the token."""
    import requests

    log_path = Path(server.log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StageError(f"Label Studio exited with code {proc.returncode} while starting:\n"
                             f"{_tail(log_path)}", where=str(log_path),
                             fix="read the log above (a port in use, a broken venv, a data dir "
                                 "from a newer version)")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{server.url}/health", timeout=5).status_code == 200:
                me = _whoami(server.url, server.token)
                if me and me.get("email") == server.username:
                    return server.token
                raise StageError(
                    f"Label Studio is up but does not accept the API token as {server.username}",
                    where=server.data_dir,
                    fix="this data dir was created with another user or token: pass them, "
                        "or use a new data dir")
        time.sleep(1.0)
    raise StageError(f"Label Studio did not answer within {timeout:.0f} s:\n{_tail(log_path)}",
                     where=server.log_path, fix="read the log above; on a slow machine raise the timeout")


def _is_our_server(pid: int, data_dir: str) -> bool:
    """Is ``pid`` still the label-studio we started (not a recycled pid)?"""
    if not Path("/proc").is_dir():  # no procfs (macOS): alive is the best we can tell
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"start" in cmdline and data_dir.encode() in cmdline


def stop(server: StudioServer, timeout: float = 20.0) -> None:
    """End the server's process group (the processes ``start`` launched), politely then firmly."""
    proc = _CHILDREN.pop(server.pid, None)
    if proc is None and not _is_our_server(server.pid, server.data_dir):
        return  # already gone, or the pid now belongs to someone else: touch nothing
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return
        if proc is None and (not _is_our_server(server.pid, server.data_dir) or _zombie(server.pid)):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


# --------------------------------------------------------------------------- command line

def _state_path(state_dir: Path) -> Path:
    return Path(state_dir) / STATE_FILE


def read_state(state_dir: Path) -> StudioServer | None:
    path = _state_path(state_dir)
    if not path.is_file():
        return None
    return StudioServer(**json.loads(path.read_text()))


def write_state(state_dir: Path, server: StudioServer) -> None:
    path = _state_path(state_dir)
    # it holds the admin token and password: readable by the owner only
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(server), f, indent=2)


def _env_lines(server: StudioServer) -> str:
    return (f"export LABEL_STUDIO_URL={server.url}\n"
            f"export LABEL_STUDIO_API_KEY={server.token}\n"
            f"# log in at {server.url} as {server.username} (password in {STATE_FILE})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelling.studio_server",
                                     description="A local Label Studio in its own venv and data dir.")
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=REPO_ROOT / "tmp" / "label-studio",
                        help="state file and data dir (default: tmp/label-studio)")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    args = parser.parse_args(argv)
    state_dir = args.dir.resolve()
    server = read_state(state_dir)
    running = server is not None and _is_our_server(server.pid, server.data_dir)
    try:
        if args.action == "status":
            print(f"running at {server.url} (pid {server.pid})" if running else "not running")
            return 0 if running else 3
        if args.action == "down":
            if running:
                stop(server)
            # server.json stays: the data dir's user and token, for the next `up`
            print("stopped" if running else "was not running")
            return 0
        if running:
            print(f"already running at {server.url} (pid {server.pid})\n{_env_lines(server)}")
            return 0
        state_dir.mkdir(parents=True, exist_ok=True)
        # a restart on the same data dir keeps its first user, password and token
        old = server
        server = start(state_dir / "data", port=args.port,
                       username=old.username if old else args.username,
                       password=old.password if old else None, token=old.token if old else None)
        write_state(state_dir, server)
        print(_env_lines(server))
        return 0
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
