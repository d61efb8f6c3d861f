"""How long the validate stage takes on 100,000 labelled texts, GX import and Data Docs included.

Generates texts + labels Parquet files in a temporary directory, then runs
`python -m stages.validate` there in a fresh subprocess (so the ~6 s Great Expectations import
is counted, as `dvc repro` would pay it) and prints the wall time. Target: under 30 s on 2 cores.

    python benchmarks/validate_speed.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import machine  # noqa: E402

WORDS = ("order refund card payment account delivery parcel address login password cancel plan "
         "subscription charged twice declined broken replace tracking email please help").split()
CLASSES = ["refund_request", "delivery_status", "login_problem", "payment_failed",
           "cancel_subscription", "product_defect", "change_address", "account_deletion"]


def generate(n: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        words = rng.choices(WORDS, k=rng.randint(4, 40))
        texts.append({"id": f"t{i:07d}", "text": f"{' '.join(words)} #{i}", "source": "email"})
        labels.append({"id": f"t{i:07d}", "label": CLASSES[rng.randrange(len(CLASSES))]})
    return texts, labels


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    print(machine.machine_line(), flush=True)
    texts, labels = generate(args.rows)
    with tempfile.TemporaryDirectory(prefix="validate-bench-") as tmp:
        work = Path(tmp)
        shutil.copy(ROOT / "params.yaml", work / "params.yaml")
        (work / "data/raw").mkdir(parents=True)
        (work / "data/labels").mkdir(parents=True)
        (work / "models").mkdir()
        (work / "models/champion.json").write_text('{"champion": null}\n')
        pd.DataFrame(texts).astype("string").to_parquet(work / "data/raw/texts.parquet")
        pd.DataFrame(labels).astype("string").to_parquet(work / "data/labels/labels.parquet")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "stages.validate"], cwd=work, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            sys.exit(f"validate failed with exit code {proc.returncode}")
        metrics = json.loads((work / "metrics/data.json").read_text())
    print(f"validate: {args.rows} rows, {metrics['checks']['expectations']} expectations, "
          f"{os.cpu_count()} CPUs: {wall:.1f} s wall (target < 30 s)")


if __name__ == "__main__":
    machine.run_benchmark(main)
