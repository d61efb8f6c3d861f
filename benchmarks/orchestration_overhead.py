"""What the Prefect flow costs on top of DVC: the same pipeline, plain `dvc repro` vs `retrain`.

Builds two identical throw-away checkouts of the project (tiny random BERT, 120 labelled texts,
gate floors at 0 so the gate passes), then in each, twice: a cold run (every stage runs) and a
warm run (nothing changed, every stage skipped):

- A: `dvc repro <until>` in a subprocess;
- B: the `retrain` flow (until=<until>) in this process, against an ephemeral Prefect server that
  is started once beforehand by a no-op flow and timed on its own line: server start-up is paid
  once per process (or never, with a running server), not per run or per task.

    python benchmarks/orchestration_overhead.py [--until gate] [--keep DIR]

The warm difference is the real per-run overhead: each task is its own `dvc repro --single-item`
process (DVC start-up, ~1-2 s each) plus Prefect task/artifact bookkeeping.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import machine  # noqa: E402

PASSING_GATE = {"min_macro_f1": 0.0, "min_accuracy": 0.0, "min_class_recall": 0.0,
                "tfidf_margin": None}


def make_checkout(dest: Path, tiny_model: Path) -> Path:
    """A git + DVC checkout of the project set up like tests/conftest.py's pipeline_repo."""
    from tests.conftest import TINY_TRAIN, git_files, make_rows, set_params, write_csv

    for rel in git_files():
        if not rel.startswith(("data/sample/", "docs/", "benchmarks/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    texts, labels = make_rows(20)
    write_csv(dest / "data/sample/texts.csv", texts)
    write_csv(dest / "data/sample/labels.csv", labels)
    set_params(dest, {"train": {"base_model": str(tiny_model), **TINY_TRAIN},
                      "gate": PASSING_GATE})
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                [*git, "commit", "-q", "-m", "init"]):
        subprocess.run(cmd, cwd=dest, check=True)
    return dest


def dvc_repro(repo: Path, until: str | None) -> float:
    from stages.vcs import dvc_command
    from stages.vcs import dvc_env as subprocess_env

    start = time.perf_counter()
    proc = subprocess.run([*dvc_command(), "repro", *([until] if until else [])], cwd=repo,
                          env=subprocess_env(repo), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"dvc repro failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def flow_run(repo: Path, until: str | None) -> float:
    from flows.retrain import retrain

    start = time.perf_counter()
    state = retrain(repo_dir=str(repo), until=until, return_state=True)
    if not state.is_completed():
        sys.exit(f"the flow run failed: {state.message}")
    return time.perf_counter() - start


def compare_locks(a: Path, b: Path) -> tuple[bool, str]:
    """Same stages, params and inputs (code, source data)? In how many stages are outs identical?

    Inputs that another stage wrote are left out: some outputs carry run times or timestamps
    (checkpoint manifest, validation results), so they differ between any two runs.
    """
    import yaml

    la, lb = (yaml.safe_load(p.read_text())["stages"] for p in (a, b))
    produced = {o["path"] for st in la.values() for o in st.get("outs", [])}

    def inputs(stage: dict) -> list:
        return [d for d in stage.get("deps", []) if d["path"] not in produced]

    same = la.keys() == lb.keys() and all(
        la[s].get("params") == lb[s].get("params") and inputs(la[s]) == inputs(lb[s]) for s in la)
    outs = sum(la[s].get("outs") == lb[s].get("outs") for s in la if s in lb)
    return same, f"{outs}/{len(la)} stages"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--until", default="gate",
                        help="last stage (default gate); 'all' for the whole dvc.yaml")
    parser.add_argument("--keep", help="build the checkouts here and keep them")
    args = parser.parse_args()
    print(machine.machine_line(), flush=True)
    until = None if args.until == "all" else args.until
    work = Path(args.keep or tempfile.mkdtemp(prefix="orchestration-"))
    os.environ.update({"PREFECT_HOME": str(work / "prefect-home"), "DO_NOT_TRACK": "1",
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1",
                       "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                       "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"})
    os.environ.pop("PREFECT_API_URL", None)  # an ephemeral server of its own
    from tests.tiny_model import build_tiny_bert

    tiny = build_tiny_bert(work / "tiny-bert")
    plain = make_checkout(work / "plain", tiny)
    flowed = make_checkout(work / "flow", tiny)
    print(f"checkouts in {work}; pipeline up to: {until or 'the end'}", flush=True)

    from prefect import flow

    @flow(name="noop")
    def noop() -> None:
        return None

    start = time.perf_counter()
    noop()
    server = time.perf_counter() - start
    rows = [("cold (every stage runs)", dvc_repro(plain, until), flow_run(flowed, until)),
            ("warm (nothing changed)", dvc_repro(plain, until), flow_run(flowed, until))]
    same, outs = compare_locks(plain / "dvc.lock", flowed / "dvc.lock")
    print(f"\nephemeral Prefect server start-up (once per process): {server:6.1f} s")
    print(f"{'run':<26}{'dvc repro':>12}{'retrain flow':>14}{'difference':>12}")
    for name, dvc_s, flow_s in rows:
        print(f"{name:<26}{dvc_s:>10.1f} s{flow_s:>12.1f} s{flow_s - dvc_s:>+10.1f} s")
    print(f"dvc.lock: same stages, params and inputs in both checkouts: {same}; outputs identical "
          f"in {outs} (the others record run times or timestamps)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    machine.run_benchmark(main)
