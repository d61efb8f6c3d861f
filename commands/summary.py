"""Print what the last `dvc repro` produced: headline metrics and where the artifacts are.

Not a DVC stage: `make run` calls it after the pipeline so a person sees the result at once.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages import artifacts

ARTIFACTS = [
    ("checkpoint (safetensors + tokenizer + manifest)", artifacts.CHECKPOINT_DIR),
    ("ONNX model, fp32", artifacts.ONNX_FP32_PATH),
    ("ONNX model, int8 (ships)", artifacts.ONNX_INT8_PATH),
    ("test predictions", artifacts.PREDICTIONS),
    ("gate report", artifacts.GATE_REPORT),
    ("validation report (report.html)", artifacts.RAW_VALIDATION_DIR),
    ("label audit (suspect labels to review)", artifacts.LABEL_AUDIT_HTML),
    ("confusion matrix", artifacts.CONFUSION_PNG),
    ("latency comparison", artifacts.LATENCY_PNG),
]


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def oos_line(oos: dict | None) -> str | None:
    """One line on the candidate's out-of-scope detector (eval.json's oos.candidate)."""
    if not oos:
        return None
    line = (f"Out of scope ({oos['method']}, threshold {oos['threshold']:.4g}): in-scope flagged "
            f"{_figure(oos.get('in_scope_flagged'))}, accuracy with abstention "
            f"{_figure(oos.get('accuracy_with_abstention'))}, ")
    if not oos.get("oos_rows"):
        return line + "no out-of-scope test rows (recall not measured)"
    return line + (f"OOS recall {_figure(oos.get('oos_recall'))}, AUROC {_figure(oos.get('auroc'))}"
                   f" on {oos['oos_rows']} out-of-scope rows")


def main() -> None:
    ev = _load(artifacts.EVAL_METRICS)
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
        oos = oos_line((ev.get("oos") or {}).get("candidate"))
        if oos:
            print(f"\n{oos}")
    gate = _load(artifacts.GATE_METRICS)
    if gate:
        print(f"\nGate: {'PASSED' if gate.get('passed') else 'FAILED'} ({artifacts.GATE_REPORT})")
    audit = _load(artifacts.LABEL_AUDIT_METRICS)
    if audit:
        from stages.label_audit_report import verdict

        print(f"Label audit: {verdict(audit)} ({artifacts.LABEL_AUDIT_HTML})")
    train = _load(artifacts.TRAIN_METRICS)
    if train:
        print(f"Training: {train['wall_time_s']} s on {train['device']}, "
              f"{train['samples_per_s']} samples/s, best epoch {train['best_epoch']} of "
              f"{train.get('epochs_run', '?')} run"
              f"{' (early stop)' if train.get('stopped_early') else ''}")
    print("\nArtifacts:")
    for what, path in ARTIFACTS:
        if path.exists():
            print(f"  {what:<48} {path}")
    print("\nMore: dvc metrics show | dvc plots show | dvc dag")


if __name__ == "__main__":
    main()
