"""What the test files share that is not a fixture: run a project module as DVC or a user would,
assert a clear error (exit 1, no traceback, what / where / fix), git with a fixed identity, wait
for a condition with a deadline, and the import scanner behind the dvc.yaml and layering tests.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
# the project's packages, bottom layer first
PACKAGES = ("stages", "commands", "flows", "serve", "monitor", "scale", "labelling")

T = TypeVar("T")


# --------------------------------------------------------------------------- running modules

def run_module(module: str, cwd: Path, *args: str | Path, env: dict[str, str] | None = None,
               pythonpath: Path = REPO_ROOT, timeout: float | None = None
               ) -> subprocess.CompletedProcess:
    """Run ``python -m <module>`` in ``cwd`` as DVC or a user does, the project (``pythonpath``) on
    PYTHONPATH, ``env`` added to this process's environment; its output captured as text."""
    full_env = {**os.environ, "PYTHONPATH": str(pythonpath), **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def assert_no_traceback(output: str) -> None:
    """A failure a user can act on is a message, never a Python traceback."""
    assert "Traceback" not in output, output[-3000:]


def assert_failed_with(proc: subprocess.CompletedProcess, module: str, *phrases: str) -> str:
    """``python -m <module>`` failed as a user-facing error: exit 1, ``ERROR [<module>]`` on
    stderr, no traceback, and every phrase somewhere in stderr. Returns stderr."""
    err = proc.stderr
    assert proc.returncode == 1, (proc.returncode, err[-3000:])
    assert f"ERROR [{module}]" in err, err[-3000:]
    assert_no_traceback(err)
    for phrase in phrases:
        assert phrase in err, f"{phrase!r} not in:\n{err}"
    return err


def assert_clear_error(proc: subprocess.CompletedProcess, module: str, what: str, where: str,
                       fix: str) -> None:
    """As assert_failed_with, and the message says what went wrong on its first line, where on
    its ``where:`` line and how to fix it after ``fix:``."""
    err = assert_failed_with(proc, module)
    message = err.split(f"ERROR [{module}]:", 1)[1]
    first, *rest = message.strip().splitlines()
    details = "\n".join(rest)
    assert what in first, (what, message)
    assert "where:" in details and where in details.split("where:", 1)[1].split("\n")[0], \
        (where, message)
    assert "fix:" in details and fix in details.split("fix:", 1)[1], (fix, message)


# --------------------------------------------------------------------------- git

# commits in throw-away repositories need an identity; the machine may have none
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


def git_identity_env(name: str = "test", email: str = "test@example.com") -> dict[str, str]:
    """The environment that gives every git commit (ours, or one a flow or command makes) an author
    and a committer."""
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with the test identity; its stdout, stripped (raises on failure)."""
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


# --------------------------------------------------------------------------- waiting

def wait_until(check: Callable[[], T], timeout_s: float = 60.0, what: str = "the condition",
               interval_s: float = 0.05, details: Callable[[], str] = lambda: "") -> T:
    """Call ``check`` until it returns something truthy, and return that; after ``timeout_s``
    fail, naming ``what`` and adding ``details()`` (a log tail). ``check`` may raise to give up."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{details()}")
        time.sleep(interval_s)


# --------------------------------------------------------------------------- imports

def module_file(module: str) -> Path | None:
    """``stages.x`` -> stages/x.py (a project module), else None (stdlib, third party, a package)."""
    if module.split(".")[0] not in PACKAGES:
        return None
    path = REPO_ROOT / (module.replace(".", "/") + ".py")
    return path if path.is_file() else None


def imported_modules(path: Path) -> set[str]:
    """Every project module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # from stages import io
    return {m for m in found if module_file(m) is not None}


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages: {"stages.split": stages/split.py, ...}."""
    return {".".join(p.relative_to(REPO_ROOT).with_suffix("").parts): p
            for package in PACKAGES for p in sorted((REPO_ROOT / package).rglob("*.py"))}


def stage_module(stage: dict) -> str:
    """The module a dvc.yaml stage runs: ``python -m stages.ingest`` -> ``stages.ingest``."""
    match = re.match(r"python -m (stages\.\w+)", stage["cmd"])
    assert match, f"cmd {stage['cmd']!r} is not `python -m stages.<name>`"
    return match[1]


def stage_entry_modules() -> set[str]:
    """The modules dvc.yaml runs as ``python -m stages.<name>``: stages.ingest, stages.train, ..."""
    import yaml

    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    return {stage_module(spec) for spec in stages.values()}
