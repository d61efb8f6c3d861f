"""Time the default pipeline stage by stage, with peak memory, then a no-op `dvc repro`.

Runs in a throw-away clone of this repository (committed files only, nothing shared with your
workspace but the pip environment), so it measures what `make run` does on a fresh checkout:

    .venv/bin/python benchmarks/pipeline_timing.py [--stages ingest,validate,...] [--keep DIR]

Each stage runs as `dvc repro --single-item <stage>` in its own process; wall time and the peak
resident memory of that process tree (Linux wait4 rusage) are printed per stage.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import machine  # noqa: E402

BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB (process tree) and exit code of ``cmd``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(proc.stderr.read()[-3000:], file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", help="comma-separated stages (default: all, in DAG order)")
    parser.add_argument("--keep", type=Path, help="clone here and keep it")
    args = parser.parse_args()
    print(machine.machine_line(), flush=True)

    work = args.keep or Path(tempfile.mkdtemp(prefix="retrainer-timing-"))
    subprocess.run(["git", "clone", "-q", str(REPO), str(work)], check=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": str(work), "HF_HUB_OFFLINE": "1"}
    stages = (args.stages.split(",") if args.stages
              else list(yaml.safe_load((work / "dvc.yaml").read_text())["stages"]))
    import torch

    print(f"# {platform.node()} | {os.cpu_count()} CPUs | python {platform.python_version()} | "
          f"torch {torch.__version__} | cuda {torch.cuda.is_available()}")
    print(f"{'stage':<16} {'wall s':>8} {'peak RSS MB':>12}")
    total = 0.0
    for stage in stages:
        wall, rss, code = run([str(BIN / "dvc"), "repro", "--single-item", stage], work, env)
        total += wall
        print(f"{stage:<16} {wall:>8.1f} {rss:>12.0f}{'' if code == 0 else f'  FAILED ({code})'}",
              flush=True)
        if code != 0:
            sys.exit(code)
    print(f"{'total':<16} {total:>8.1f}")
    wall, rss, code = run([str(BIN / "dvc"), "repro"], work, env)
    print(f"{'no-op repro':<16} {wall:>8.1f} {rss:>12.0f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    machine.run_benchmark(main)
