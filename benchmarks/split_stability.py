"""Split stability: what new data and relabels do to the test split, baseline revision vs ours.

For each code revision (the baseline, e.g. the commit before stable splits, and the working
tree) this runs the project's own commands, `python -m stages.ingest && python -m stages.split`,
in a scratch directory on the sample data and measures:

* new data arrived: split 90% of the rows (a fixed, seeded 90%), then all of them; how many of the
  new test rows were in the old training split (the champion would be scored on them);
* relabel 3 rows: how many rows change split.

    .venv/bin/python benchmarks/split_stability.py [--baseline-rev 1ff04bb]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import machine  # noqa: E402

CODE = ("stages", "params.yaml")


def checkout(rev: str | None, dest: Path) -> Path:
    """The stages/ package and params.yaml of ``rev`` (None: the working tree) in ``dest``."""
    dest.mkdir(parents=True)
    if rev is None:
        for item in CODE:
            src = REPO / item
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / item)
    else:
        archive = subprocess.run(["git", "archive", rev, *CODE], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_split(root: Path, texts: pd.DataFrame, labels: pd.DataFrame) -> dict[str, str]:
    """id -> split name, through the stages' CLIs, as `dvc repro split` runs them."""
    texts.to_csv(root / "texts.csv", index=False)
    labels.to_csv(root / "labels.csv", index=False)
    params = (root / "params.yaml").read_text()
    params = params.replace("data/sample/texts.csv", "texts.csv").replace(
        "data/sample/labels.csv", "labels.csv")
    (root / "params.yaml").write_text(params)
    env = {**os.environ, "PYTHONPATH": str(root)}
    for stage in ("ingest", "split"):
        proc = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=root, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{stage} failed in {root}:\n{proc.stderr[-2000:]}")
    out = {}
    for name in ("train", "val", "test"):
        for i in pd.read_parquet(root / f"data/splits/{name}.parquet")["id"]:
            out[i] = name
    return out


def measure(code: Path, texts: pd.DataFrame, labels: pd.DataFrame) -> dict[str, int]:
    subset = texts.sample(frac=0.9, random_state=0)["id"]
    old = run_split(code, texts[texts["id"].isin(subset)], labels[labels["id"].isin(subset)])
    new = run_split(code, texts, labels)
    new_test = [i for i, s in new.items() if s == "test"]
    relabelled = labels.copy()
    rows = relabelled.index[[10, 500, 1000]]
    classes = sorted(labels["label"].unique())
    relabelled.loc[rows, "label"] = [classes[(classes.index(v) + 1) % len(classes)]
                                     for v in relabelled.loc[rows, "label"]]
    after = run_split(code, texts, relabelled)
    return {"test_rows": len(new_test),
            "new_test_rows_in_old_train": sum(old.get(i) == "train" for i in new_test),
            "old_rows_that_moved": sum(old[i] != new[i] for i in old),
            "rows_moved_by_3_relabels": sum(after[i] != new[i] for i in new)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-rev", default="1ff04bb",
                        help="git revision of the baseline split (default: before stable splits)")
    args = parser.parse_args()
    print(machine.machine_line(), flush=True)
    texts = pd.read_csv(REPO / "data/sample/texts.csv", dtype=str)
    labels = pd.read_csv(REPO / "data/sample/labels.csv", dtype=str)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, rev in ((f"baseline ({args.baseline_rev})", args.baseline_rev), ("ours", None)):
            results[name] = measure(checkout(rev, Path(tmp) / name.split()[0]), texts, labels)
    print(f"sample data: {len(texts)} rows; 90% of them split first, then all")
    keys = list(next(iter(results.values())))
    print(f"{'':<22}" + "".join(f"{k:>30}" for k in keys))
    for name, row in results.items():
        print(f"{name:<22}" + "".join(f"{row[k]:>30}" for k in keys))


if __name__ == "__main__":
    machine.run_benchmark(main)
