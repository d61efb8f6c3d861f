"""git and dvc as subprocesses: the one place that runs them (promote, the flows, the PR report,
sweeps).

Checked calls (:func:`git`, :func:`dvc`, :func:`run`) raise a :class:`StageError` that quotes the
tool's own message; :func:`git_try` returns the finished process for callers that branch on the
exit code (``git rev-parse --verify``) or need bytes; :func:`file_at_revision` reads a committed
file as it was at a revision (``git show REV:path``). dvc always runs from this Python
environment (the venv's dvc, so its ``python -m stages.x`` is the venv's Python).
:func:`stream_command` runs a long step (a DVC stage, a push) in its own process group, logging
each line as it comes, with a hard timeout; whatever ends it, nothing it started keeps running.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from stages.common import StageError

# the step an interruption or timeout stopped last (what an interrupted command names)
STOPPED: dict[str, str] = {}
TAIL_LINES = 60
# what dvc prints when another process holds the repository lock / a read-write lock on an output
LOCK_HINTS = ("Unable to acquire lock", "is busy, it is being blocked by")


def dvc_command() -> list[str]:
    """The dvc of this Python environment."""
    exe = Path(sys.executable).parent / "dvc"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "dvc"]


def dvc_env(repo: Path | None = None) -> dict[str, str]:
    """The environment for dvc: the venv's bin first on PATH, ``repo`` on PYTHONPATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if repo is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH")) if p)
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env["PYTHONUNBUFFERED"] = "1"  # stage logs arrive as they are written, not at exit
    return env


def lock_message(repo: Path | str) -> str:
    """What to do when DVC's repository lock is held (see :data:`LOCK_HINTS`)."""
    return (f"DVC's repository lock is held by another process (a `dvc repro`/`dvc exp` in "
            f"{repo}, or a run outside Prefect). Wait for it to finish and re-run; if nothing is "
            "running, the lock is stale: remove .dvc/tmp/lock and .dvc/tmp/rwlock")


def is_lock_error(output: str) -> bool:
    return any(hint in output for hint in LOCK_HINTS)


def run(cmd: list[str], what: str, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; a non-zero exit is a StageError with the command's own last words."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()
        if is_lock_error(proc.stderr + proc.stdout):
            raise StageError(f"{what}: {lock_message(cwd or Path.cwd())}", where=str(cwd or "."))
        raise StageError(f"{what} failed (exit {proc.returncode}): {output[-2000:]}",
                         where=f"{cwd or '.'}: " + " ".join(cmd[:4]) + (" ..." if len(cmd) > 4 else ""))
    return proc


def git(*args: str, cwd: Path | None = None, what: str | None = None) -> str:
    """``git ARGS`` in ``cwd`` (default: the working directory); its stdout, stripped."""
    return run(["git", *args], what or f"git {' '.join(args[:3])}", cwd).stdout.strip()


def git_try(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """``git ARGS`` unchecked, output as bytes: for callers that branch on the exit code."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True)


def file_at_revision(rev: str, path: str, cwd: Path | None = None) -> bytes | None:
    """The bytes of ``path`` as committed at ``rev`` (``git show REV:PATH``), or None where git
    does not have it there (not committed at that revision, or DVC-tracked)."""
    proc = git_try("show", f"{rev}:{path}", "--", cwd=cwd)
    return proc.stdout if proc.returncode == 0 else None


def dvc(*args: str, cwd: Path | None = None, what: str | None = None) -> str:
    """``dvc ARGS`` with this environment's dvc; its stdout (not stripped: JSON or markdown)."""
    return run([*dvc_command(), *args], what or f"dvc {' '.join(args[:3])}", cwd,
               env=dvc_env(cwd)).stdout


def head_commit(cwd: Path | None = None) -> str | None:
    """The checked-out commit, or None in a repository without one."""
    proc = git_try("rev-parse", "HEAD", cwd=cwd)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def git_identity(cwd: Path | None = None) -> str:
    """``Name <email>`` as git will record it (config or GIT_AUTHOR_* environment)."""
    proc = git_try("var", "GIT_AUTHOR_IDENT", cwd=cwd)
    if proc.returncode != 0:
        raise StageError("git has no user identity, so the result cannot be committed",
                         where="git config", fix="git config user.name 'Your Name' && "
                                                 "git config user.email you@example.com")
    return proc.stdout.decode().strip().rsplit(" ", 2)[0]


def has_staged_changes(cwd: Path | None = None) -> bool:
    return git_try("diff", "--cached", "--quiet", cwd=cwd).returncode != 0


class StepFailed(Exception):
    """A subprocess step (a DVC stage, promote, pull, push) exited non-zero or timed out."""

    def __init__(self, step: str, message: str, tail: list[str]) -> None:
        self.step, self.tail = step, tail
        super().__init__(message)


# ---------------------------------------------------------------- a long step, streamed


def _pump(stream: Any, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def stream_command(cmd: list[str], repo: Path, step: str, timeout_s: float | None,
                   logger: Any) -> list[str]:
    """Run ``cmd`` in ``repo``, logging each output line as it arrives; return the last lines.

    The command gets its own process group: on timeout, interruption or any error the whole group
    (dvc and the stage it started) is terminated, so a stopped run never leaves a stage running.
    """
    logger.info("$ %s", " ".join(cmd[-4:] if cmd[0] == sys.executable else cmd))
    proc = subprocess.Popen(cmd, cwd=repo, env=dvc_env(repo), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                            start_new_session=True)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + timeout_s if timeout_s else None
    try:
        while (line := _next_line(lines, deadline)) is not None:
            if line.strip():
                tail.append(line.rstrip())
                logger.info("%s | %s", step, line.rstrip())
        code = proc.wait()
    except TimeoutError:
        STOPPED["step"] = step
        raise StepFailed(step, f"{step} timed out after {timeout_s:.0f} s (flow.timeout_s.{step} "
                               "in params.yaml); its processes were stopped", list(tail)) from None
    except BaseException:  # Ctrl-C, SIGTERM: the caller says which step it stopped
        STOPPED["step"] = step
        raise
    finally:
        stop_process(proc)
    if code != 0:
        if is_lock_error("\n".join(tail)):
            raise StepFailed(step, f"{step}: {lock_message(repo)}", list(tail))
        errors = [line.strip() for line in tail if "ERROR" in line]
        raise StepFailed(step, f"{step} failed (exit {code})"
                         + (f": {errors[-1][:300]}" if errors else ""), list(tail))
    return list(tail)


def _next_line(lines: queue.Queue, deadline: float | None) -> str | None:
    """The next output line (None at the end); TimeoutError past ``deadline``. Waits in 1 s
    slices so that a signal (Ctrl-C, SIGTERM) is handled within a second."""
    while True:
        wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
        if wait <= 0:
            raise TimeoutError
        with contextlib.suppress(queue.Empty):
            return lines.get(timeout=wait)


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate ``proc``'s whole process group: SIGTERM, then SIGKILL after 10 s."""
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
