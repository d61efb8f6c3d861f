"""What every benchmark records about its machine, and the paths it shows, relative to the checkout.

int8 speed depends on the CPU's vector instructions: on an AVX2-only CPU int8 is about 1.3x faster
than fp32, with AVX-512 VNNI or AMX it can be 2-3x. A figure is comparable with another only when
both say which instructions they had, so each benchmark prints :func:`machine_line` first and puts
:func:`machine_facts` under ``"machine"`` in its JSON.

Paths in printed lines and in results JSON go through :func:`shown_path` (relative to the repository
root, ``../`` for a sibling such as ``../shared/datasets/banking77``, ``$TMPDIR/`` for scratch), so
results committed from one clone do not carry that clone's absolute paths. :func:`require` and
:func:`run_benchmark` turn a missing input into one what/where/fix message and exit code 1.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BANKING77 = ROOT.parent / "shared/datasets/banking77"  # the shared dataset beside the checkout

# the instructions int8 (and fp32) inference speed depends on, in /proc/cpuinfo's names
VECTOR_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8")
PACKAGES = ("numpy", "onnxruntime-gpu", "onnxruntime", "torch", "transformers")


def cpu_info(cpuinfo: str | None = None) -> tuple[str | None, set[str] | None]:
    """The CPU model and flags of the first processor in /proc/cpuinfo; (None, None) without it."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:  # not Linux
            return None, None
    model, flags = None, None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and flags is None:
            flags = set(value.split())
    return model, flags


def machine_facts(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model, cores, vector instructions and package versions, for a results JSON.

    ``vector_flags`` is None where the flags cannot be read (no /proc/cpuinfo), never a guess.
    """
    model, flags = cpu_info(cpuinfo)
    versions = {}
    for package in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):  # not installed: not recorded
            versions[package] = metadata.version(package)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": model or platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "vector_flags": None if flags is None else [f for f in VECTOR_FLAGS if f in flags],
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "versions": versions,
    }


def machine_line(facts: dict[str, Any] | None = None) -> str:
    """One printed header line: ``# machine: <cpu> | N CPUs | vector: avx2 ... | python ... | ...``."""
    facts = facts or machine_facts()
    flags = facts["vector_flags"]
    vector = "unknown" if flags is None else " ".join(flags) or "none of " + "/".join(VECTOR_FLAGS)
    versions = " | ".join(f"{k} {v}" for k, v in facts["versions"].items())
    return (f"# machine: {facts['cpu_model']} | {facts['cpus_usable']} of {facts['cpus']} CPUs usable "
            f"| vector: {vector} | python {facts['python']} | {versions}")


def shown_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a results file should record it: never the absolute path of one clone."""
    absolute = Path(path).expanduser().resolve()
    relative = Path(os.path.relpath(absolute, ROOT))
    if relative.parts[:2] != ("..", "..") and not relative.is_absolute():
        return relative.as_posix()  # in the checkout, or a sibling of it (../shared/...)
    for base, name in ((Path(tempfile.gettempdir()).resolve(), "$TMPDIR"), (Path.home(), "~")):
        if absolute.is_relative_to(base):
            return f"{name}/{absolute.relative_to(base).as_posix()}"
    return absolute.as_posix()


def shown_command(argv: list[str] | None = None) -> str:
    """The command line that ran, its paths shown as :func:`shown_path` shows them."""
    words = []
    for arg in sys.argv if argv is None else argv:
        option, eq, value = arg.partition("=")
        if eq and option.startswith("--") and value.startswith("/"):
            words.append(f"{option}={shown_path(value)}")
        else:
            words.append(shown_path(arg) if arg.startswith("/") or arg.endswith(".py") else arg)
    return "python " + " ".join(words)


def require(path: Path, what: str, fix: str) -> Path:
    """``path`` if it exists; otherwise a StageError saying what is missing, where, and how to fix."""
    from stages.common import StageError

    if not path.exists():
        raise StageError(f"{what} not found", where=str(path), fix=fix)
    return path


def run_benchmark(main: Callable[[], Any]) -> None:
    """Run a benchmark's ``main``: a StageError is one ``ERROR [benchmarks/x.py]`` message, exit 1."""
    from stages.common import StageError

    try:
        main()
    except StageError as exc:
        script = shown_path(sys.argv[0]) if sys.argv and sys.argv[0] else "benchmark"
        print(f"\nERROR [{script}]: {exc}", file=sys.stderr)
        sys.exit(1)
