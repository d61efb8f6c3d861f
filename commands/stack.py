"""stack: the whole local loop up and down with one command (the "day in the life" walkthrough).

    python -m commands.stack up [--dir tmp/stack] [--no-label-studio]
    python -m commands.stack status
    python -m commands.stack down

``up`` starts, on 127.0.0.1, each in its own process group and with its log in <dir>/logs/:

1. a Prefect server (its own database in <dir>/prefect), the work pool and every deployment of
   prefect.yaml (`prefect deploy --all`);
2. Label Studio from its own venv (labelling/studio_server.py; data in <dir>/label-studio);
3. a Prefect worker with the environment the flows need (the checkout, the service's URL and
   admin token, Label Studio's URL and token);
4. the service (`python -m serve`), answering with the champion once there is one.

It records what it started in <dir>/stack.json and prints the URLs and the ``export`` lines for
your shell. ``down`` stops exactly those processes (a recorded pid whose command line is no longer
ours is left alone) and keeps the data, so the next ``up`` finds the same runs, projects and
token. More: docs/labelling.md, "A day in the life".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stages.common import StageError, get_logger, run_cli

log = get_logger(__name__)

STATE = "stack.json"
POOL = "retrainer-pool"
PORTS = {"prefect": 4200, "serve": 8000, "label_studio": 8080}


def bin_path(name: str) -> str:
    """An executable of this venv (prefect, dvc): the worker and the flows use the same Python."""
    return str(Path(sys.executable).with_name(name))


def launch(name: str, cmd: list[str], env: dict[str, str], logs: Path, cwd: Path
           ) -> tuple[dict[str, Any], subprocess.Popen]:
    """Start ``cmd`` in its own process group, output to <logs>/<name>.log; its state record."""
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return {"name": name, "pid": proc.pid, "cmd": cmd, "log": str(logs / f"{name}.log")}, proc


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None


def is_ours(proc: dict[str, Any]) -> bool:
    """The recorded pid still runs the recorded command (not a recycled pid)."""
    now = cmdline(proc["pid"])
    return bool(now) and now[-len(proc["cmd"][1:]):] == proc["cmd"][1:]


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except ProcessLookupError:
        return False
    except OSError:  # no /proc (not Linux): kill(0) said it exists
        return True


def end(proc: dict[str, Any], grace_s: float = 20.0, started_here: bool = False) -> str:
    """SIGTERM to the process group, SIGKILL after ``grace_s``; only a process that is ours
    (``started_here``: this process just launched it, it may not have exec'd its command yet)."""
    if not started_here and not is_ours(proc):
        return "not running"
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc["pid"], sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc["pid"], os.WNOHANG)
            if not running(proc["pid"]) or not (started_here or is_ours(proc)):
                return "stopped"
            time.sleep(0.2)
    return "did not stop"


def wait_healthy(url: str, what: str, launched: tuple[dict[str, Any], subprocess.Popen],
                 timeout_s: float) -> None:
    import httpx

    proc, popen = launched
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise StageError(f"{what} exited while starting (exit code {popen.returncode})",
                             where=proc["log"], fix=f"read the end of {proc['log']}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise StageError(f"{what} did not answer {url} within {timeout_s:.0f} s", where=proc["log"],
                     fix=f"read the end of {proc['log']}")


def prefect_env(state_dir: Path, port: int) -> dict[str, str]:
    return {**os.environ, "PREFECT_HOME": str(state_dir / "prefect"),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def prefect_cli(env: dict[str, str], repo: Path, *args: str) -> None:
    proc = subprocess.run([bin_path("prefect"), *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0 and "already exists" not in proc.stdout + proc.stderr:
        raise StageError(f"`prefect {' '.join(args)}` failed: {(proc.stdout + proc.stderr)[-800:]}",
                         fix="read the message; `python -m commands.stack down` stops what started")


def up(repo: Path, state_dir: Path, ports: dict[str, int], label_studio: bool) -> dict[str, Any]:
    """Start everything; on a failure, stop what this call started and re-raise."""
    from labelling.studio_server import port_taken

    taken = [f"{name} {port}" for name, port in ports.items()
             if (label_studio or name != "label_studio") and port_taken(port)]
    if taken:
        raise StageError(f"port(s) in use on 127.0.0.1: {', '.join(taken)}",
                         fix="stop what listens there, or choose others (--prefect-port, "
                             "--serve-port, --label-studio-port)")
    logs = state_dir / "logs"
    state: dict[str, Any] = {"repo": str(repo), "processes": [], "started_at": time.time()}
    env = prefect_env(state_dir, ports["prefect"])
    try:
        server = launch("prefect-server", [bin_path("prefect"), "server", "start", "--host",
                                           "127.0.0.1", "--port", str(ports["prefect"])],
                        env, logs, repo)
        state["processes"].append(server[0])
        wait_healthy(f"{env['PREFECT_API_URL']}/health", "the Prefect server", server, 180)
        prefect_cli(env, repo, "work-pool", "create", POOL, "--type", "process")
        prefect_cli(env, repo, "--no-prompt", "deploy", "--all")
        worker_env = {**env, "RETRAINER_REPO": str(repo),
                      "RETRAINER_SERVE_URL": f"http://127.0.0.1:{ports['serve']}",
                      "RETRAINER_ADMIN_TOKEN": secrets.token_urlsafe(24)}
        if label_studio:
            from labelling import studio_server

            ls_dir = state_dir / "label-studio"
            old = studio_server.read_state(ls_dir)
            studio = studio_server.start(ls_dir / "data", port=ports["label_studio"],
                                         password=old.password if old else None,
                                         token=old.token if old else None)
            studio_server.write_state(ls_dir, studio)
            state["processes"].append({"name": "label-studio", "pid": studio.pid,
                                       "cmd": cmdline(studio.pid) or [], "log": studio.log_path})
            worker_env |= {"LABEL_STUDIO_URL": studio.url, "LABEL_STUDIO_API_KEY": studio.token}
        state["processes"].append(launch("prefect-worker", [bin_path("prefect"), "worker",
                                                            "start", "--pool", POOL],
                                         worker_env, logs, repo)[0])
        service = launch("serve", [sys.executable, "-m", "serve", "--host", "127.0.0.1",
                                   "--port", str(ports["serve"])], worker_env, logs, repo)
        state["processes"].append(service[0])
        wait_healthy(f"{worker_env['RETRAINER_SERVE_URL']}/healthz", "the service", service, 120)
    except BaseException:
        for proc in reversed(state["processes"]):
            end(proc, started_here=True)
        raise
    state["env"] = {k: worker_env[k] for k in ("PREFECT_API_URL", "RETRAINER_SERVE_URL",
                                              "RETRAINER_ADMIN_TOKEN", "LABEL_STUDIO_URL",
                                              "LABEL_STUDIO_API_KEY") if k in worker_env}
    from stages.io import write_json

    write_json(state_dir / STATE, state)
    os.chmod(state_dir / STATE, 0o600)  # it holds the tokens
    return state


def read_state(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / STATE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def down(state_dir: Path) -> dict[str, str]:
    state = read_state(state_dir)
    if state is None:
        return {}
    stopped = {proc["name"]: end(proc) for proc in reversed(state["processes"])}
    (state_dir / STATE).unlink()
    return stopped


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m commands.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=Path("tmp/stack"),
                        help="state, logs and data (default: tmp/stack, git-ignored)")
    parser.add_argument("--no-label-studio", action="store_true", help="leave Label Studio out")
    for name, port in PORTS.items():
        parser.add_argument(f"--{name.replace('_', '-')}-port", type=int, default=port)
    args = parser.parse_args()
    state_dir = args.dir.resolve()
    state = read_state(state_dir)
    if args.action == "down":
        for name, result in down(state_dir).items():
            print(f"{name}: {result}")
        print("stack: down" if state else "stack: nothing was started from here")
        return
    if args.action == "status":
        if state is None:
            print("stack: not running")
            sys.exit(3)
        for proc in state["processes"]:
            print(f"{proc['name']}: {'running' if is_ours(proc) else 'NOT running'} "
                  f"(pid {proc['pid']}, log {proc['log']})")
        return
    if state is not None and any(is_ours(p) for p in state["processes"]):
        raise StageError("the stack is already up", where=str(state_dir / STATE),
                         fix="python -m commands.stack status, or down first")
    ports = {name: getattr(args, f"{name}_port") for name in PORTS}
    state = up(Path.cwd(), state_dir, ports, not args.no_label_studio)
    for proc in state["processes"]:
        print(f"{proc['name']}: pid {proc['pid']}, log {proc['log']}")
    print(f"Prefect UI: {state['env']['PREFECT_API_URL'].removesuffix('/api')}")
    print(f"service:    {state['env']['RETRAINER_SERVE_URL']}")
    if "LABEL_STUDIO_URL" in state["env"]:
        print(f"Label Studio: {state['env']['LABEL_STUDIO_URL']} (user and password: "
              f"{state_dir / 'label-studio' / 'server.json'})")
    print("# for your shell:")
    for key, value in state["env"].items():
        print(f"export {key}={value}")


if __name__ == "__main__":
    run_cli(main)
