"""Batch scoring: plain `predict` vs the Dask engine (1 and 2 workers) on the same texts.

Writes ``--rows`` short synthetic texts (5-14 words, support-ticket style) once as one Parquet
file (what plain predict reads) and once as ``--shards`` Parquet shards holding the same rows
(what the engine reads), then runs, each as its own process so they never share a thread pool:

- A1: ``python -m stages.predict`` (or commands.predict) with ``--threads 1``
- B1: ``python -m scale.score`` with 1 local Dask worker (1 ONNX thread)
- A2: predict with ``--threads 2`` (one process, 2 intra-op threads)
- B2: scale.score with 2 local Dask workers (1 thread each)

and prints wall time, texts/s, peak RSS (predict: its process, polled every 0.2 s; engine: each
worker's own ru_maxrss from the manifest), the engine/predict overhead at equal cores and the
2-vs-1-worker scaling ratio, with the load average (`uptime`) before each run. Tokenizer thread
pools are off (TOKENIZERS_PARALLELISM=false) so "1 worker" means one core.

    python benchmarks/scale_scoring.py --rows 1000000 --shards 20     # the tiny random BERT
    python benchmarks/scale_scoring.py --model-dir models/onnx --rows 10000 --shards 4

predict writes CSV and the engine Parquet (their real output formats); both timings include
start-up, reading, tokenising, inference and writing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import machine  # noqa: E402

WORDS = ("my order package refund card payment account password login cancel subscription "
         "delivery address change charged twice declined bank tracking shipped arrived late "
         "please help where is why cant still need want new wrong email code app broken "
         "screen item return money back plan renew stop locked reset today yesterday week").split()


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(5, 14))) + f" {rng.randint(1, 9999)}"
            for _ in range(n)]


def write_inputs(folder: Path, rows: int, shards: int) -> tuple[Path, Path]:
    import pandas as pd

    df = pd.DataFrame({"id": [f"r{i:08d}" for i in range(rows)], "text": make_texts(rows)})
    one = folder / "all.parquet"
    df.to_parquet(one, index=False)
    shard_dir = folder / "shards"
    shard_dir.mkdir()
    size = -(-rows // shards)
    for k in range(shards):
        df.iloc[k * size:(k + 1) * size].to_parquet(shard_dir / f"part-{k:04d}.parquet",
                                                    index=False)
    return one, shard_dir


def tiny_onnx_dir(folder: Path) -> Path:
    """The tiny random BERT (tests/tiny_model.py) exported + quantized like the tests do."""
    from tests.test_export import build_project
    from tests.tiny_model import build_tiny_bert

    base = build_tiny_bert(folder / "base", pooling="mean")
    return build_project(folder / "project", base) / "models" / "onnx"


def predict_module() -> str:
    for name in ("commands.predict", "stages.predict"):
        if (ROOT / (name.replace(".", "/") + ".py")).is_file():
            return name
    raise SystemExit("no predict module found")


def run_polled(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS MB of the process (polled every 0.2 s), and its output."""
    import psutil

    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a chatty child never blocks
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                text=True)
        ps, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, ps.memory_info().rss)
            time.sleep(0.2)
        wall = time.perf_counter() - start
        log.seek(0)
        out = log.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out[-3000:]}")
    return wall, peak / 2**20, out


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def inprocess(model_dir: Path, precision: str, rows: int) -> None:
    """predict's function vs score_shard on the same texts, same process, 1 ORT thread each."""
    import statistics

    import pandas as pd

    from scale.score import Shard, ShardTask, score_shard

    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        from commands.predict import predict
    except ImportError:
        from stages.predict import predict
    model = model_dir / ("model.int8.onnx" if precision == "int8" else "model.onnx")
    with tempfile.TemporaryDirectory(prefix="scale-inproc-") as tmp:
        src = Path(tmp) / "x.parquet"
        pd.DataFrame({"id": [f"r{i}" for i in range(rows)], "text": make_texts(rows)}).to_parquet(src)
        times: dict[str, list[float]] = {"predict()": [], "score_shard()": []}
        for rep in range(4):  # the first round warms caches and is not counted
            t = time.perf_counter()
            predict(model, pd.read_parquet(src), 64, 1, "cpu")
            a = time.perf_counter() - t
            task = ShardTask(Shard("x", str(src), "k"), f"{tmp}/o{rep}.parquet",
                             f"{tmp}/o{rep}.json", str(model), "sha", 1, 64, 20000)
            t = time.perf_counter()
            score_shard(task)
            b = time.perf_counter() - t
            if rep:
                times["predict()"].append(a)
                times["score_shard()"].append(b)
            print(f"round {rep}: predict() {a:.2f}s  score_shard() {b:.2f}s  load {load()}",
                  flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median of 3: predict() {med['predict()']:.2f}s ({rows / med['predict()']:.0f} texts/s),"
          f" score_shard() {med['score_shard()']:.2f}s ({rows / med['score_shard()']:.0f} texts/s);"
          f" ratio {med['score_shard()'] / med['predict()']:.3f}")


def plot(results: list[dict], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["run"] for r in results]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
    ax1.barh(names, [r["texts_per_s"] for r in results], color=["#888", "#1f77b4"] * 2)
    ax1.set_xlabel("texts/s (wall, start-up included)")
    ax2.barh(names, [max(r["peak_rss_mb"]) for r in results], color=["#888", "#1f77b4"] * 2)
    ax2.set_xlabel("peak RSS MB (largest process)")
    ax2.set_yticklabels([])
    for ax in (ax1, ax2):
        ax.invert_yaxis()
    fig.suptitle(f"Batch scoring: predict vs Dask engine ({title})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path,
                        help="an ONNX export folder; default: build the tiny random BERT's")
    parser.add_argument("--precision", choices=["int8", "fp32"], default="int8")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--plot", type=Path, help="a PNG of texts/s and peak RSS per run")
    parser.add_argument("--replot", type=Path, help="only redraw --plot from a --json file")
    parser.add_argument("--inprocess", type=int, default=0, metavar="ROWS",
                        help="only time predict() vs the engine's score_shard() on ROWS texts in "
                        "this process, alternated 3 times (no engine: the per-shard code alone)")
    args = parser.parse_args()
    if args.replot:
        data = json.loads(machine.require(args.replot, "the results JSON (--replot)",
                                          "pass a file an earlier run wrote with --json").read_text())
        plot(data["results"], f"{data['rows']:,} texts, {Path(data['model']).name}", args.plot)
        return
    model_name = "model.int8.onnx" if args.precision == "int8" else "model.onnx"
    if args.model_dir is not None:
        machine.require(args.model_dir / model_name, f"the {args.precision} model in --model-dir",
                        "pass an export folder (`dvc repro quantize` writes models/onnx), or leave "
                        "--model-dir out to use the tiny random BERT")
    facts = machine.machine_facts()
    print(machine.machine_line(facts), flush=True)
    if args.inprocess:
        inprocess(args.model_dir, args.precision, args.inprocess)
        return
    model_file = (args.model_dir or Path(".")) / model_name
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false",
           "RETRAINER_LOG_LEVEL": "WARNING"}
    results = []
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        tmp_path = Path(tmp)
        if args.model_dir is None:
            args.model_dir = tiny_onnx_dir(tmp_path / "tiny")
            model_file = args.model_dir / model_file.name
        one, shard_dir = write_inputs(tmp_path, args.rows, args.shards)
        print(f"{args.rows} texts ({one.stat().st_size / 2**20:.1f} MB parquet), {args.shards} "
              f"shards, model {machine.shown_path(model_file)}", flush=True)
        for cores in (1, 2):
            before = load()
            wall, rss, _ = run_polled([sys.executable, "-m", predict_module(), "--model",
                                       str(model_file), "--input", str(one), "--output",
                                       str(tmp_path / f"predict{cores}.csv"), "--threads",
                                       str(cores), "--batch-size", "64", "--device", "cpu"], env)
            results.append({"run": f"predict --threads {cores}", "cores": cores, "wall_s": wall,
                            "texts_per_s": args.rows / wall, "peak_rss_mb": [round(rss)],
                            "load_before": before, "load_after": load()})
            print(json.dumps(results[-1]), flush=True)
            before = load()
            out = tmp_path / f"scores{cores}"
            wall, _, _ = run_polled([sys.executable, "-m", "scale.score", "--input", str(shard_dir),
                                     "--model-dir", str(args.model_dir), "--output", str(out),
                                     "--workers", str(cores), "--precision", args.precision], env)
            manifest = json.loads((out / "manifest.json").read_text())
            per_worker: dict[str, float] = {}
            for s in manifest["shards"]:
                per_worker[s["worker"]] = max(per_worker.get(s["worker"], 0), s["peak_rss_mb"])
            t = manifest["totals"]
            results.append({"run": f"scale.score --workers {cores}", "cores": cores,
                            "wall_s": wall, "texts_per_s": args.rows / wall,
                            "engine_start_s": t["engine_start_s"], "scoring_s": t["scoring_s"],
                            "scoring_texts_per_s": t["rows_per_s"],
                            "peak_rss_mb": sorted(round(v) for v in per_worker.values()),
                            "load_before": before, "load_after": load()})
            print(json.dumps(results[-1]), flush=True)
    print("\n| run | cores | wall s | texts/s | peak RSS MB (per process) | load before/after |")
    print("|---|---:|---:|---:|---|---|")
    for r in results:
        print(f"| {r['run']} | {r['cores']} | {r['wall_s']:.1f} | {r['texts_per_s']:,.0f} | "
              f"{', '.join(map(str, r['peak_rss_mb']))} | {r['load_before']} / {r['load_after']} |")
    by = {r["run"]: r for r in results}
    for cores in (1, 2):
        p, e = by[f"predict --threads {cores}"], by[f"scale.score --workers {cores}"]
        print(f"engine/predict wall at {cores} core(s): {e['wall_s'] / p['wall_s']:.3f}")
    e1, e2 = by["scale.score --workers 1"], by["scale.score --workers 2"]
    print(f"scaling 2 vs 1 worker (wall): {e1['wall_s'] / e2['wall_s']:.2f}x")
    if args.plot:
        plot(results, f"{args.rows:,} texts, {model_file.name}", args.plot)
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "shards": args.shards,
                                         "model": machine.shown_path(model_file), "results": results,
                                         "command": machine.shown_command(), "machine": facts},
                                        indent=2))


if __name__ == "__main__":
    machine.run_benchmark(main)
