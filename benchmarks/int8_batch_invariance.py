"""Dynamic int8: how much a text's scores depend on the texts it runs with, and what scoring each
text in a call of its own costs. One process, the project's own export and quantize stages.

    python benchmarks/int8_batch_invariance.py --checkpoint tmp/banking77-checkpoint \\
        [--test ../shared/datasets/banking77/test.csv] \\
        [--out benchmarks/results/int8_batch_invariance_banking77.json] [--repeats 3]

The checkpoint is a fine-tuned model as train lays it out (``benchmarks/real_data.py
--save-checkpoint DIR`` writes one for Banking77; ``models/checkpoint`` is the sample one). Paths
are relative to the repository root (``tmp/`` there is git-ignored scratch).

1. A temporary project: params.yaml, the test file as data/splits/test.parquet, the checkpoint as
   models/checkpoint; ``python -m stages.export`` then ``python -m stages.quantize`` run there as
   DVC runs them (quantize's int8 gate scores as the project now does: one text per call).
2. fp32 and int8 scored three ways: alone (one text per call: what ``run_logits`` and the service
   now do for dynamic int8), in batches of 32 sorted by length (what ``run_logits`` did), and in
   batches of 32 in file order (like a service call gathering concurrent requests).
3. For each: accuracy and macro-F1 against the labels, the share of labels that differ from
   alone, the largest and the mean change of a probability.
4. int8 throughput, alone vs sorted batches of 32, with the session on all cores and on one
   thread; the two ways interleaved ``--repeats`` times, the median kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import machine  # noqa: E402

BATCH = 32


def read_test(path: Path):
    import pandas as pd

    df = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    df = df.rename(columns={"category": "label"})  # Banking77's name for it
    return df.assign(id=[f"t{i:05d}" for i in range(len(df))])[["id", "text", "label"]]


def build_project(root: Path, checkpoint: Path, test) -> Path:
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    (root / "data/splits").mkdir(parents=True)
    test.to_parquet(root / "data/splits/test.parquet", index=False)
    (root / "models").mkdir()
    shutil.copytree(checkpoint, root / "models/checkpoint")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for stage in ("export", "quantize"):
        began = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=root, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"stages.{stage} failed:\n{proc.stderr[-3000:]}")
        print(f"stages.{stage}: {time.perf_counter() - began:.0f} s", flush=True)
    return root / "models/onnx"


def score(model, encodings, way: str):
    """Logits for ``encodings`` in their order, run ``way``: alone | sorted | file order."""
    from stages.onnx_session import run_logits

    if way == "alone":
        return run_logits(model, encodings, batch_size=1)
    batched = replace(model, batch_invariant=True)  # what run_logits did before the rule
    return run_logits(batched, encodings, batch_size=BATCH, sort_by_length=way == "sorted")


def compare(model, encodings, y_true: list[str]) -> dict[str, dict[str, float]]:
    from stages.metrics import classification_metrics, softmax

    logits = {way: score(model, encodings, way) for way in ("alone", "sorted", "file order")}
    probs = {way: softmax(x) for way, x in logits.items()}
    out = {}
    for way, p in probs.items():
        metrics = classification_metrics(y_true, [model.labels[i] for i in p.argmax(1)],
                                         model.labels)
        diff = abs(p - probs["alone"])
        out[way] = {"accuracy": round(metrics["accuracy"], 4),
                    "macro_f1": round(metrics["macro_f1"], 4),
                    "labels_changed_vs_alone": round(float(
                        (p.argmax(1) != probs["alone"].argmax(1)).mean()), 4),
                    "max_prob_change": round(float(diff.max()), 4),
                    "mean_prob_change": float(f"{diff.mean():.2g}")}
    return out


def throughput(path: Path, texts: list[str], threads: int | None, repeats: int) -> dict[str, float]:
    from stages.onnx_session import encode, load_onnx_model

    model = load_onnx_model(path, threads=threads, device="cpu")
    encodings = encode(model, texts)
    score(model, encodings[:BATCH], "alone")  # warm both shapes
    score(model, encodings[:BATCH], "sorted")
    seconds: dict[str, list[float]] = {"alone": [], "sorted": []}
    for _ in range(repeats):
        for way in seconds:
            began = time.perf_counter()
            score(model, encodings, way)
            seconds[way].append(time.perf_counter() - began)
    rates = {way: round(len(texts) / statistics.median(s), 1) for way, s in seconds.items()}
    return {"alone_texts_per_s": rates["alone"], "sorted_batches_texts_per_s": rates["sorted"],
            "alone_over_batches": round(rates["alone"] / rates["sorted"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a fine-tuned checkpoint (benchmarks/real_data.py --save-checkpoint)")
    parser.add_argument("--test", type=Path, default=machine.BANKING77 / "test.csv",
                        help="CSV or Parquet: text, label (default ../shared/datasets/banking77/test.csv)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    machine.require(args.checkpoint / "config.json", "the checkpoint",
                    "pass --checkpoint DIR: a checkpoint as train writes it (real_data.py --save-checkpoint)")
    machine.require(args.test, "the test file", "pass --test FILE (CSV or Parquet with text, label)")
    facts = machine.machine_facts()
    print(machine.machine_line(facts), flush=True)

    from stages.onnx_session import encode, load_onnx_model

    test = read_test(args.test)
    texts, y_true = test["text"].astype(str).tolist(), test["label"].astype(str).tolist()
    with tempfile.TemporaryDirectory(prefix="int8-batch-") as tmp:
        onnx_dir = build_project(Path(tmp), args.checkpoint.resolve(), test)
        gate = json.loads((Path(tmp) / "metrics/quantize.json").read_text())["int8"]
        scores, speed = {}, {}
        for name in ("model.onnx", "model.int8.onnx"):
            model = load_onnx_model(onnx_dir / name, device="cpu")
            scores[name] = compare(model, encode(model, texts), y_true)
        for threads in (None, 1):
            speed["all cores" if threads is None else "1 thread"] = throughput(
                onnx_dir / "model.int8.onnx", texts, threads, args.repeats)

    print(f"\n{len(texts)} test texts, {test['label'].nunique()} classes; batches of {BATCH}")
    print(f"{'model':<16}{'scored':<12}{'accuracy':>9}{'macro-F1':>9}{'labels changed':>16}"
          f"{'max dprob':>10}{'mean dprob':>11}")
    for name, ways in scores.items():
        for way, r in ways.items():
            print(f"{name:<16}{way:<12}{r['accuracy']:>9.4f}{r['macro_f1']:>9.4f}"
                  f"{r['labels_changed_vs_alone']:>16.2%}{r['max_prob_change']:>10.4f}"
                  f"{r['mean_prob_change']:>11.2g}")
    print(f"\n{'int8 session':<12}{'alone t/s':>11}{'batched t/s':>13}{'alone/batched':>15}")
    for name, r in speed.items():
        print(f"{name:<12}{r['alone_texts_per_s']:>11.1f}{r['sorted_batches_texts_per_s']:>13.1f}"
              f"{r['alone_over_batches']:>14.2f}x")
    print(f"quantize gate (int8 alone vs fp32 batched): macro-F1 {gate['macro_f1']:.4f} vs "
          f"{gate['fp32_macro_f1']:.4f}, agreement {gate['agreement']:.4f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "test": machine.shown_path(args.test), "texts": len(texts), "batch": BATCH, "scores": scores,
            "throughput_int8": speed, "quantize_gate": gate,
            "command": machine.shown_command(), "machine": facts},
            indent=2) + "\n")


if __name__ == "__main__":
    machine.run_benchmark(main)
