"""Drift-detector power: false alarms without shift, detection rate per shift and per detector.

    python benchmarks/drift_power.py [--checkpoint models/checkpoint] [--splits data/splits] \
        [--banking77 ../shared/datasets/banking77] \
        [--windows 200] [--window-size 500] [--out benchmarks/results/drift_power.json]

(paths relative to the repository root; the defaults are this checkout's and the shared dataset)

1. The model: the checkpoint is copied into a temp project and exported + quantized with the
   project's own stages (``python -m stages.export``, ``python -m stages.quantize``), so the int8
   graph has the ``embedding`` output. ``--model-dir DIR`` reuses such a project.
2. The reference: ``monitor.reference.build_reference`` on that int8 model (test split =
   reference rows, val split = calibration), exactly as promote builds it.
3. A pool of texts, scored once by the int8 model (scoring costs ~10 ms a text on 2 CPU cores,
   so windows are resampled from scored predictions instead of re-scoring texts): fresh
   in-domain texts from data/sample/generate.py run with another seed (none of them in
   data/sample, so disjoint from the reference and from training), and Banking77 test texts.
4. Windows of ``--window-size`` predictions, ``--windows`` per scenario:
   ``none`` (in-domain, uniform), ``class_mix`` / ``class_mix_small`` (two classes over-sampled
   so the true-label mix moves by a stated JS divergence), ``unseen_domain_20`` (20% Banking77
   texts), ``text_length`` (only in-domain texts longer than the pool's median),
   each run through ``monitor.check.check_window`` with params.yaml's ``monitor:`` section.
5. Cost: a synthetic 10k-prediction log is written in the service's layout and the monitor's
   read + detectors + report is timed (seconds per 10k logged predictions).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import machine  # noqa: E402

SCENARIOS = ("none", "class_mix", "class_mix_small", "unseen_domain_20", "text_length")


def build_model(checkpoint: Path, splits: Path, work: Path) -> Path:
    """A temp project with the checkpoint, exported and quantized by this checkout's stages."""
    (work / "models").mkdir(parents=True)
    shutil.copytree(checkpoint, work / "models/checkpoint")
    shutil.copytree(splits, work / "data/splits")
    shutil.copy(ROOT / "params.yaml", work / "params.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for stage in ("export", "quantize"):
        subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=work, env=env, check=True)
    return work


def fresh_in_domain(seed: int, exclude: set[str]) -> tuple[list[str], list[str]]:
    """Texts of the sample-data generator run with another seed, none of them in data/sample."""
    spec = importlib.util.spec_from_file_location("sample_generate",
                                                  ROOT / "data/sample/generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.SEED = seed
    rows = [r for r in gen.build_rows() if r["text"].strip().lower() not in exclude]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def score_pool(onnx_dir: Path, texts: list[str]) -> dict:
    import numpy as np

    from monitor.reference import score_texts
    from stages.onnx_session import load_onnx_model

    model = load_onnx_model(onnx_dir / "model.int8.onnx", device="cpu")
    s = score_texts(model, texts, str(onnx_dir))
    return {"probs": s.probs, "embedding": s.embeddings, "n_tokens": s.n_tokens,
            "truncated": s.truncated, "chars": np.array([len(t) for t in texts]),
            "text_sha256": np.array([hashlib.sha256(t.encode()).hexdigest() for t in texts])}


def take(pool: dict, rows) -> dict:
    return {k: v[rows] for k, v in pool.items()}


def concat(parts: list[dict]) -> dict:
    import numpy as np

    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def as_window(sample: dict, start: datetime):
    import pandas as pd

    from monitor.log import Window

    n = len(sample["probs"])
    frame = pd.DataFrame({
        "ts": pd.date_range(start, periods=n, freq="s", tz="UTC"),
        "request_id": [f"r{i}" for i in range(n)], "id": None, "text": None,
        "text_sha256": sample["text_sha256"], "confidence": sample["probs"].max(1),
        "probs": list(sample["probs"]), "model_version": "bench", "latency_ms": 5.0,
        "truncated": sample["truncated"], "n_tokens": sample["n_tokens"],
        "embedding": list(sample["embedding"])})
    frame["label"] = sample["probs"].argmax(1).astype(str)
    return Window(start, start + timedelta(hours=1), frame, files=1)


def js(p, q) -> float:
    from stages.drift_stats import js_divergence

    return js_divergence(p, q)


def class_mix_weights(labels, classes: list[str], target_js: float):
    """Row weights that move the true-label mix by ``target_js`` (JS, base 2): a share ``a`` of
    the window comes from two over-sampled classes; ``a`` found by bisection."""
    import numpy as np

    idx = np.array([classes.index(x) for x in labels])
    base = np.bincount(idx, minlength=len(classes)) / len(idx)
    boost = np.zeros(len(classes))
    boost[[0, 1]] = 0.5

    def mix(a: float):
        return (1 - a) * base + a * boost

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if js(mix(mid), base) < target_js else (lo, mid)
    target = mix(lo)
    w = target[idx] / base[idx]
    return w / w.sum(), float(js(target, base)), target


def make_windows(scenario: str, pools: dict, n_windows: int, size: int, rng, mix_w) -> list[dict]:
    import numpy as np

    ind, b77 = pools["in_domain"], pools["banking77"]
    n_in = len(ind["probs"])
    out = []
    for _ in range(n_windows):
        if scenario == "none":
            rows = rng.choice(n_in, size, replace=False)
            out.append(take(ind, rows))
        elif scenario in ("class_mix", "class_mix_small"):
            rows = rng.choice(n_in, size, replace=True, p=mix_w[scenario])
            out.append(take(ind, rows))
        elif scenario == "unseen_domain_20":
            k = size // 5
            a = take(ind, rng.choice(n_in, size - k, replace=False))
            b = take(b77, rng.choice(len(b77["probs"]), k, replace=False))
            out.append(concat([a, b]))
        elif scenario == "text_length":
            long_rows = np.flatnonzero(ind["chars"] > np.median(ind["chars"]))
            out.append(take(ind, rng.choice(long_rows, size, replace=len(long_rows) < size)))
    return out


P_VALUE_DETECTORS = ("label", "confidence", "length", "embedding", "novelty")
ALPHAS = (0.001, 0.002, 0.005, 0.01, 0.05)


def run_scenarios(reference, pools, params, n_windows, size, seed, mix_w) -> dict:
    """Every window through check_window; firing rates at params' thresholds, and at other
    alphas from the same windows' p-values (the sweep behind the default alpha)."""
    import numpy as np

    from monitor.check import check_window
    from stages.common import progress

    rng = np.random.default_rng(seed)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    results = {}
    for scenario in SCENARIOS:
        fired: dict[str, int] = {}
        pvals: dict[str, list[float]] = {name: [] for name in P_VALUE_DETECTORS}
        others = []  # per window: did a detector without a p-value (accuracy, shares) alarm?
        alarms = 0
        t0 = time.perf_counter()
        for sample in progress(make_windows(scenario, pools, n_windows, size, rng, mix_w),
                               desc=scenario):
            report, _ = check_window(reference, as_window(sample, start), params)
            alarms += report["status"] == "drift"
            for d in report["detectors"]:
                fired[d["name"]] = fired.get(d["name"], 0) + int(d["drifted"])
                if d["name"] in pvals:
                    pvals[d["name"]].append(1.0 if d["p_value"] is None else d["p_value"])
            others.append(any(d["drifted"] for d in report["detectors"]
                              if d["name"] not in pvals and d["name"] in params.alarm_on))
        sweep = {}
        for alpha in ALPHAS:
            per = {k: np.array(v) < alpha for k, v in pvals.items()}
            any_fired = np.logical_or.reduce([*per.values(), np.array(others)])
            sweep[str(alpha)] = {"alarm_rate": float(any_fired.mean()),
                                 **{k: float(v.mean()) for k, v in per.items()}}
        results[scenario] = {"windows": n_windows, "alarm_rate": alarms / n_windows,
                             "per_detector": {k: v / n_windows for k, v in fired.items()},
                             "alpha_sweep": sweep,
                             "seconds_per_window": (time.perf_counter() - t0) / n_windows}
        print(f"{scenario:>18}: alarm {alarms / n_windows:.3f}  " + "  ".join(
            f"{k} {v / n_windows:.3f}" for k, v in fired.items()), flush=True)
    return results


def measure_cost(reference, pools, params, n: int, seed: int) -> dict:
    """Seconds to read + check + report a window of ``n`` logged predictions (hash-only log)."""
    import numpy as np

    from monitor.check import check_window
    from monitor.log import read_window, write_log_file
    from monitor.report import write_outputs

    rng = np.random.default_rng(seed)
    sample = take(pools["in_domain"], rng.choice(len(pools["in_domain"]["probs"]), n))
    start = datetime(2026, 12, 1, tzinfo=UTC)
    window = as_window(sample, start)
    frame = window.frame.assign(ts=start + (window.frame["ts"] - start) * 3600 * 10 / n)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = write_log_file(tmp / "log", frame)  # 10 hourly partitions
        end = start + timedelta(hours=10)
        t0 = time.perf_counter()
        win = read_window(tmp / "log", start, end, len(reference.labels))
        t1 = time.perf_counter()
        report, sample_rows = check_window(reference, win, replace(params, labelling_sample=50))
        t2 = time.perf_counter()
        write_outputs(tmp / "repo", report, reference, win, sample_rows)
        t3 = time.perf_counter()
    return {"predictions": n, "log_files": len(files), "read_s": round(t1 - t0, 3),
            "detectors_s": round(t2 - t1, 3), "report_s": round(t3 - t2, 3),
            "total_s": round(t3 - t0, 3),
            "seconds_per_10k": round((t3 - t0) * 10_000 / n, 3)}


def plot(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    detectors = list(next(iter(results.values()))["per_detector"]) + ["ALARM (any)"]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(SCENARIOS)
    x = np.arange(len(detectors))
    for i, s in enumerate(SCENARIOS):
        r = results[s]
        ax.bar(x + i * width, [r["per_detector"].get(d, r["alarm_rate"]) for d in detectors],
               width, label=s)
    ax.axhline(0.05, color="red", ls="--", lw=1, label="5% (false-alarm target)")
    ax.axhline(0.90, color="green", ls="--", lw=1, label="90% (detection target)")
    ax.set_xticks(x + 0.4 - width / 2, detectors)
    ax.set_ylabel("share of windows that fired")
    ax.set_title("drift detectors: firing rate per scenario (none = false alarms)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(png, dpi=90)


def main() -> None:
    import numpy as np
    import pandas as pd

    from monitor.detectors import MonitorParams
    from monitor.reference import build_reference, load_reference
    from stages.common import load_params

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "models/checkpoint")
    ap.add_argument("--splits", type=Path, default=ROOT / "data/splits")
    ap.add_argument("--banking77", type=Path, default=machine.BANKING77)
    ap.add_argument("--model-dir", type=Path, help="a project already exported + quantized")
    ap.add_argument("--windows", type=int, default=200)
    ap.add_argument("--window-size", type=int, default=500)
    ap.add_argument("--banking77-texts", type=int, default=1500)
    ap.add_argument("--class-mix-js", type=float, default=0.02)
    ap.add_argument("--class-mix-small-js", type=float, default=0.005)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/drift_power.json")
    args = ap.parse_args()
    if args.model_dir:
        machine.require(args.model_dir / "models/onnx/model.int8.onnx", "the --model-dir project",
                        "pass a project directory that `dvc repro quantize` ran in")
    else:
        machine.require(args.checkpoint / "config.json", "the checkpoint",
                        "run `dvc repro train` in this checkout, or pass --checkpoint DIR")
        machine.require(args.splits / "test.parquet", "the splits",
                        "run `dvc repro split` in this checkout, or pass --splits DIR")
    machine.require(args.banking77 / "test.csv", "the Banking77 dataset",
                    "pass --banking77 DIR (a folder with test.csv; default ../shared/datasets/banking77)")
    facts = machine.machine_facts()
    print(machine.machine_line(facts), flush=True)

    params = load_params("monitor", MonitorParams, ROOT / "params.yaml")
    params = replace(params, labelling_sample=0)
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="drift-power-"))
    try:
        project = args.model_dir or build_model(args.checkpoint, args.splits, work / "project")
        onnx_dir = project / "models/onnx"
        t0 = time.perf_counter()
        build_reference(onnx_dir, work / "reference", project / "data/splits/test.parquet",
                        project / "data/splits/val.parquet")
        reference = load_reference(work / "reference")
        seen = set(pd.read_csv(ROOT / "data/sample/texts.csv")["text"].str.strip().str.lower())
        texts, labels = fresh_in_domain(seed=12345, exclude=seen)
        b77 = pd.read_csv(args.banking77 / "test.csv")["text"].astype(str)
        b77 = b77.sample(args.banking77_texts, random_state=args.seed).tolist()
        print(f"pool: {len(texts)} fresh in-domain texts, {len(b77)} Banking77 texts", flush=True)
        t1 = time.perf_counter()
        scored = score_pool(onnx_dir, texts + b77)
        scoring_s = time.perf_counter() - t1
        pools = {"in_domain": take(scored, slice(0, len(texts))),
                 "banking77": take(scored, slice(len(texts), None))}
        pools["in_domain"]["label_true"] = np.array(labels)
        classes = reference.labels
        mix_w, mix_js = {}, {}
        for name, target in (("class_mix", args.class_mix_js),
                             ("class_mix_small", args.class_mix_small_js)):
            mix_w[name], mix_js[name], _ = class_mix_weights(labels, classes, target)
        pools["in_domain"].pop("label_true")
        pred_in = pools["in_domain"]["probs"].argmax(1)
        acc_in = float((np.array([classes[i] for i in pred_in]) == np.array(labels)).mean())
        results = run_scenarios(reference, pools, params, args.windows, args.window_size,
                                args.seed, mix_w)
        cost = measure_cost(reference, pools, params, 10_000, args.seed)
        print(f"cost: {cost}", flush=True)
        chars = pools["in_domain"]["chars"]
        long_chars = chars[chars > np.median(chars)]
        toks = pools["in_domain"]["n_tokens"]
        out = {
            "command": machine.shown_command(), "windows_per_scenario": args.windows,
            "window_size": args.window_size, "params": {k: v for k, v in vars(params).items()},
            "reference": {k: reference.meta[k] for k in ("rows", "accuracy", "estimated_accuracy")}
            | {"calibration_rows": reference.meta["calibration"]["rows"]},
            "pool": {"in_domain_texts": len(texts), "in_domain_accuracy": round(acc_in, 4),
                     "banking77_texts": len(b77), "scoring_s": round(scoring_s, 1),
                     "texts_per_s": round((len(texts) + len(b77)) / scoring_s, 1)},
            "shifts": {"class_mix_js": round(mix_js["class_mix"], 5),
                       "class_mix_small_js": round(mix_js["class_mix_small"], 5),
                       "unseen_domain_share": 0.2,
                       "text_length_mean_chars": [round(float(chars.mean()), 1),
                                                  round(float(long_chars.mean()), 1)],
                       "text_length_mean_tokens": [
                           round(float(toks.mean()), 1),
                           round(float(toks[chars > np.median(chars)].mean()), 1)]},
            "results": results, "cost": cost,
            "machine": {**facts, "load_average_before": [round(x, 2) for x in load_before],
                        "load_average_after": [round(x, 2) for x in os.getloadavg()]},
            "wall_s": round(time.perf_counter() - t_start, 1),
            "reference_and_scoring_s": round(time.perf_counter() - t0, 1),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        plot(results, args.out.with_suffix(".png"))
        print(json.dumps({k: out[k] for k in ("reference", "pool", "shifts", "machine")},
                         indent=1))
        print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    machine.run_benchmark(main)
