"""Print what the last `dvc repro` produced: headline metrics and where the artifacts are.

Not a DVC stage: `make run` calls it after the pipeline so a person sees the result at once.
"""

from __future__ import annotations

import json
from pathlib import Path

ARTIFACTS = [
    ("checkpoint (safetensors + tokenizer + manifest)", "models/checkpoint"),
    ("ONNX model, fp32", "models/onnx/model.onnx"),
    ("ONNX model, int8 (ships)", "models/onnx/model.int8.onnx"),
    ("test predictions", "data/predictions/test.parquet"),
    ("gate report", "reports/gate.md"),
    ("validation report (report.html)", "reports/validation/raw"),
    ("confusion matrix", "plots/confusion.png"),
    ("latency comparison", "plots/latency.png"),
]


def _load(path: str) -> dict:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else {}


def main() -> None:
    ev = _load("metrics/eval.json")
    rows = []
    if ev:
        rows.append(("candidate (fine-tuned)", ev["candidate"]))
        if ev.get("champion"):
            rows.append(("champion", ev["champion"]))
        rows += [(f"baseline: {k}", v) for k, v in ev["baselines"].items()]
        print(f"\nTest split: {ev['test_rows']} rows, {len(ev['labels'])} classes\n")
        print(f"{'model':<28} {'accuracy':>9} {'macro-F1':>9} {'weighted-F1':>12}")
        for name, m in rows:
            print(f"{name:<28} {m['accuracy']:>9.4f} {m['macro_f1']:>9.4f} {m['weighted_f1']:>12.4f}")
    gate = _load("metrics/gate.json")
    if gate:
        print(f"\nGate: {'PASSED' if gate.get('passed') else 'FAILED'} (reports/gate.md)")
    train = _load("metrics/train.json")
    if train:
        print(f"Training: {train['wall_time_s']} s on {train['device']}, "
              f"{train['samples_per_s']} samples/s, best epoch {train['best_epoch']} of "
              f"{train.get('epochs_run', '?')} run"
              f"{' (early stop)' if train.get('stopped_early') else ''}")
    print("\nArtifacts:")
    for what, path in ARTIFACTS:
        if Path(path).exists():
            print(f"  {what:<48} {path}")
    print("\nMore: dvc metrics show | dvc plots show | dvc dag")


if __name__ == "__main__":
    main()
