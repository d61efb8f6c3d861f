"""git and dvc as subprocesses: the one place that runs them (promote, the flows, the PR report).

Checked calls (:func:`git`, :func:`dvc`, :func:`run`) raise a :class:`StageError` that quotes the
tool's own message; :func:`git_try` returns the finished process for callers that branch on the
exit code (``git rev-parse --verify``) or need bytes (``git show REV:path``). dvc always runs from
this Python environment (the venv's dvc, so its ``python -m stages.x`` is the venv's Python).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stages.common import StageError

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
