"""How long the gate takes on a 10,000-row test set with 1,000 bootstrap resamples (target: < 5 s).

Writes a synthetic evaluate output (metrics/eval.json + data/predictions/test.parquet: 8 classes,
a candidate ~90% right, a champion ~88% right, 3 length buckets, 3 sources) to a temporary
directory, then measures, in this order:

1. the gate as DVC runs it: `python -m stages.gate` in a fresh subprocess (imports included);
2. the gate in-process (`run_gate`: reading inputs, the overall bootstrap, one bootstrap per
   slice, McNemar, writing gate.json and gate.md);
3. `paired_bootstrap` alone (the vectorised bootstrap of the macro-F1 difference);
4. the naive way in the same process: per resample, two sklearn `f1_score` calls (on integer
   class codes, sklearn's fast path), and prints how many times slower it is than 3.

    python benchmarks/gate_speed.py [--rows 10000] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import json
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

CLASSES = ["refund_request", "delivery_status", "login_problem", "payment_failed",
           "cancel_subscription", "product_defect", "change_address", "account_deletion"]


def synthetic_predictions(n: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    y = rng.integers(0, k, n)
    cand = np.where(rng.random(n) < 0.90, y, rng.integers(0, k, n))
    champ = np.where(rng.random(n) < 0.88, y, rng.integers(0, k, n))
    tfidf = np.where(rng.random(n) < 0.80, y, rng.integers(0, k, n))
    names = np.array(CLASSES)
    return pd.DataFrame({
        "id": [f"t{i:07d}" for i in range(n)], "text": "synthetic", "label": names[y],
        "length_bucket": rng.choice(["short", "medium", "long"], n),
        "source": rng.choice(["email", "chat", "app_review"], n, p=[0.5, 0.4, 0.1]),
        "candidate_pred": names[cand], "candidate_confidence": 0.9,
        "champion_pred": names[champ], "tfidf_pred": names[tfidf], "majority_pred": names[0],
    })


def eval_json(df) -> dict:
    """eval.json as stages.evaluate writes it (same metric function)."""
    from stages.metrics import classification_metrics

    def slices(column: str) -> dict:
        out = {}
        for value, part in df.groupby(column, sort=True):
            out[str(value)] = {}
            for who in ("candidate", "champion"):
                m = classification_metrics(part["label"], part[f"{who}_pred"], CLASSES)
                out[str(value)][who] = {k: m[k] for k in ("accuracy", "macro_f1", "n")}
        return out

    return {
        "test_rows": len(df), "labels": CLASSES,
        "candidate": classification_metrics(df["label"], df["candidate_pred"], CLASSES),
        "champion": classification_metrics(df["label"], df["champion_pred"], CLASSES),
        "baselines": {name: classification_metrics(df["label"], df[f"{col}_pred"], CLASSES)
                      for name, col in (("majority", "majority"), ("tfidf_logreg", "tfidf"))},
        "slices": {"length_bucket": slices("length_bucket"), "source": slices("source")},
    }


def naive_bootstrap(y, a, b, n_resamples: int, seed: int) -> list[float]:
    """The textbook loop: one resample, two sklearn f1_score calls, repeat."""
    import numpy as np
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    labels = list(range(len(CLASSES)))
    diffs = []
    for _ in range(n_resamples):
        idx = rng.integers(0, len(y), len(y))
        diffs.append(f1_score(y[idx], a[idx], labels=labels, average="macro", zero_division=0)
                     - f1_score(y[idx], b[idx], labels=labels, average="macro", zero_division=0))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return [float(lo), float(hi)]


def main() -> None:
    from stages.artifacts import GATE_METRICS as GATE_JSON
    from stages.gate import load_gate_params, run_gate
    from stages.stats import encode, paired_bootstrap

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    print(machine.machine_line(), flush=True)

    df = synthetic_predictions(args.rows)
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        work = Path(tmp)
        shutil.copy(ROOT / "params.yaml", work / "params.yaml")
        text = (work / "params.yaml").read_text()
        text = text.replace("bootstrap_resamples: 1000", f"bootstrap_resamples: {args.resamples}")
        (work / "params.yaml").write_text(text)
        (work / "metrics").mkdir()
        (work / "metrics/eval.json").write_text(json.dumps(eval_json(df)))
        (work / "data/predictions").mkdir(parents=True)
        df.to_parquet(work / "data/predictions/test.parquet", index=False)

        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "stages.gate"], cwd=work, env=env,
                              capture_output=True, text=True)
        t_cli = time.perf_counter() - start
        if not (work / GATE_JSON).is_file():
            sys.exit(f"gate did not run:\n{proc.stderr}")

        cwd = Path.cwd()
        os.chdir(work)
        try:
            params = load_gate_params()
            start = time.perf_counter()
            result = run_gate(params)
            t_gate = time.perf_counter() - start
        finally:
            os.chdir(cwd)

    start = time.perf_counter()
    boot = paired_bootstrap(df["label"], df["candidate_pred"], df["champion_pred"], CLASSES,
                            args.resamples, seed=42)
    t_boot = time.perf_counter() - start

    y, a, b = (encode(df[c], CLASSES) for c in ("label", "candidate_pred", "champion_pred"))
    start = time.perf_counter()
    naive_ci = naive_bootstrap(y, a, b, args.resamples, seed=42)
    t_naive = time.perf_counter() - start

    ci = boot["macro_f1"]["ci95"]
    print(f"test rows: {args.rows:,}  bootstrap resamples: {args.resamples:,}  "
          f"classes: {len(CLASSES)}  cores: {os.cpu_count()}")
    print(f"gate verdict: {'PASSED' if result['passed'] else 'FAILED'} "
          f"({len(result['checks'])} checks, {1 + 6} bootstraps: overall + 6 slices)")
    print(f"gate, `python -m stages.gate` subprocess (imports included): {t_cli:6.2f} s")
    print(f"gate, in-process run_gate (all checks, reports written):     {t_gate:6.2f} s")
    print(f"paired_bootstrap alone (vectorised numpy):                   {t_boot:6.2f} s")
    print(f"naive loop, 2 x sklearn f1_score per resample:               {t_naive:6.2f} s")
    print(f"naive / vectorised bootstrap: {t_naive / t_boot:.0f}x faster")
    print(f"95% CI of macro-F1 difference: vectorised [{ci[0]:+.4f}, {ci[1]:+.4f}], "
          f"naive [{naive_ci[0]:+.4f}, {naive_ci[1]:+.4f}] (diff {boot['macro_f1']['diff']:+.4f})")
    print(f"target < 5 s for the gate: {'met' if t_cli < 5 else 'MISSED'}")


if __name__ == "__main__":
    machine.run_benchmark(main)
