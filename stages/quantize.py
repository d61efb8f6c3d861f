"""Optimize the fp32 ONNX model, quantize it to int8, and gate the int8 model's accuracy.

Fuses the BERT graph, then ``quantize_dynamic`` (no calibration data). The int8 model replaces
models/onnx/model.int8.onnx only within ``quantize.max_f1_drop`` and ``quantize.min_agreement``
of fp32 on the test split; metrics/quantize.json is written either way. Optional fp16 for GPUs.
More: docs/onnx.md.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from stages import artifacts
from stages.common import (
    NonNegativeFloat,
    PositiveInt,
    Share,
    StageError,
    get_logger,
    load_params,
    params_section,
)
from stages.io import atomic_path, remove_stale_temp_dirs, write_json

log = get_logger(__name__)



@params_section("quantize")
@dataclass
class QuantizeParams:
    optimizer_model_type: str = "bert"    # onnxruntime.transformers model type (bert covers
    #                                       BERT, MiniLM, RoBERTa, DistilBERT-style encoders)
    weight_type: Literal["qint8", "quint8"] = "qint8"
    per_channel: bool = False
    reduce_range: bool = False            # 7-bit weights: for CPUs without VNNI if accuracy drops
    max_f1_drop: NonNegativeFloat = 1.0              # macro-F1 points (x100) int8 may lose vs fp32 ONNX
    min_agreement: Share = 0.98           # share of test predictions int8 and fp32 must share
    min_oos_agreement: Share = 0.95       # share of test texts int8 and fp32 both call in or out
    #                                       of scope (when the export has a detector)
    batch_size: PositiveInt = 32
    threads: PositiveInt | None = None            # intra-op threads for the gate's sessions; None: all
    fp16: bool = False                    # also write model.fp16.onnx for GPU serving


def graph_shape(model_path: Path, params: QuantizeParams) -> tuple[int, int]:
    """num_heads and hidden_size, from the metadata export wrote into the ONNX file."""
    import onnx

    proto = onnx.load(str(model_path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    try:
        return int(meta["num_attention_heads"]), int(meta["hidden_size"])
    except (KeyError, ValueError):
        log.warning("no num_attention_heads/hidden_size metadata in %s: letting the optimizer "
                    "detect them", model_path)
        return 0, 0


def optimize(model_path: Path, out: Path, params: QuantizeParams) -> tuple[Any, dict[str, int]]:
    """Run the transformer optimizer; returns the optimized model and its fused operator counts."""
    from onnxruntime.transformers import optimizer

    num_heads, hidden_size = graph_shape(model_path, params)
    opt = optimizer.optimize_model(str(model_path), model_type=params.optimizer_model_type,
                                   num_heads=num_heads, hidden_size=hidden_size)
    fused = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
    opt.save_model_to_file(str(out))
    if not fused.get("Attention") and not fused.get("MultiHeadAttention"):
        log.warning("attention was not fused: int8 will gain little speed. Export with "
                    "export.exporter: torchscript (eager attention) to get a fusable graph")
    log.info("optimized (%s, heads %d, hidden %d): fused %s", params.optimizer_model_type,
             num_heads, hidden_size, fused)
    return opt, fused


def quantize(optimized: Path, out: Path, params: QuantizeParams) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight_type = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[params.weight_type]
    # contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference; their
    # outputs are float32, which is what DefaultTensorType says
    quantize_dynamic(str(optimized), str(out), weight_type=weight_type,
                     per_channel=params.per_channel, reduce_range=params.reduce_range,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    log.info("quantized (%s, per_channel=%s): %.1f MB", params.weight_type, params.per_channel,
             out.stat().st_size / 1e6)


@dataclass
class Scored:
    """An ONNX model's logits on the test texts, and its out-of-scope decisions (None: no
    detector beside the model)."""

    logits: Any
    labels: list[str]
    out_of_scope: Any = None


def score(model_path: Path, texts: list[str], params: QuantizeParams, device: str = "cpu") -> Scored:
    """Logits of an ONNX model on ``texts`` (tokenizer, labels and detector from models/onnx)."""
    from stages.onnx_session import (
        detect_out_of_scope,
        encode,
        load_onnx_model,
        run_logits_and_embeddings,
    )

    model = load_onnx_model(model_path, threads=params.threads, device=device,
                            artifacts_dir=artifacts.ONNX_DIR)
    logits, emb = run_logits_and_embeddings(model, encode(model, texts), params.batch_size,
                                            show_progress=True)
    return Scored(logits, model.labels, detect_out_of_scope(model, logits, emb)[0])


def oos_agreement(ref: Scored, scored: Scored, params: QuantizeParams) -> dict[str, Any] | None:
    """How often the quantized model makes fp32's out-of-scope decision (the detector was fitted
    on PyTorch embeddings; int8's differ a little)."""
    if ref.out_of_scope is None or scored.out_of_scope is None:
        return None
    agreement = float((ref.out_of_scope == scored.out_of_scope).mean())
    return {"fp32_flagged": round(float(ref.out_of_scope.mean()), 6),
            "flagged": round(float(scored.out_of_scope.mean()), 6),
            "agreement": round(agreement, 6), "min_agreement": params.min_oos_agreement,
            "passed": agreement >= params.min_oos_agreement}


def accuracy_gate(ref: Scored, scored: Scored, y_true: list[str],
                  params: QuantizeParams) -> dict[str, Any]:
    """Macro-F1 of both models against the truth, their drop in points, their agreement, and
    their agreement on which texts are out of scope."""
    from stages.metrics import macro_f1

    labels = ref.labels
    # macro-F1 over the model's classes: out-of-scope examples (labelled oos.label) have no class
    known = [i for i, y in enumerate(y_true) if y in set(labels)]
    truth = [y_true[i] for i in known]
    ref_pred = [labels[i] for i in ref.logits[known].argmax(1)]
    pred = [labels[i] for i in scored.logits[known].argmax(1)]
    f1_ref, f1 = macro_f1(truth, ref_pred, labels), macro_f1(truth, pred, labels)
    agreement = float((ref.logits.argmax(1) == scored.logits.argmax(1)).mean())
    drop = (f1_ref - f1) * 100
    oos = oos_agreement(ref, scored, params)
    return {"fp32_macro_f1": round(f1_ref, 6), "macro_f1": round(f1, 6),
            "f1_drop_points": round(drop, 4), "max_f1_drop": params.max_f1_drop,
            "agreement": round(agreement, 6), "min_agreement": params.min_agreement,
            "oos": oos,
            "passed": (drop <= params.max_f1_drop and agreement >= params.min_agreement
                       and (oos is None or oos["passed"]))}


def gate_error(name: str, result: dict[str, Any], where: str) -> StageError:
    return StageError(
        f"{name} accuracy gate failed: macro-F1 {result['macro_f1']:.4f} vs fp32 "
        f"{result['fp32_macro_f1']:.4f} (drop {result['f1_drop_points']:.2f} points, allowed "
        f"{result['max_f1_drop']}), agreement with fp32 {result['agreement']:.4f} (required "
        f">= {result['min_agreement']})" + (
            f", out-of-scope decisions shared with fp32 {result['oos']['agreement']:.4f} "
            f"(required >= {result['oos']['min_agreement']})" if result["oos"] else ""),
        where=where,
        fix="try quantize.per_channel: true or quantize.reduce_range: true; loosen "
        "quantize.max_f1_drop / min_agreement / min_oos_agreement only if the loss is acceptable")


def size_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 3)


def main() -> None:
    from stages.data import load_split
    from stages.onnx_session import gpu_present

    params = load_params("quantize", QuantizeParams)
    if not artifacts.ONNX_FP32_PATH.is_file():
        raise StageError(f"fp32 ONNX model not found: {artifacts.ONNX_FP32_PATH}",
                         fix="run `dvc repro export`")
    test = load_split("test")
    texts, y_true = test["text"].astype(str).tolist(), test["label"].astype(str).tolist()
    if not texts:
        raise StageError("the test split is empty", where=str(artifacts.split_path("test")))

    remove_stale_temp_dirs(artifacts.ONNX_DIR, ".quantize.")
    staging = Path(tempfile.mkdtemp(prefix=".quantize.", dir=artifacts.ONNX_DIR))
    try:
        optimized = staging / "model.opt.onnx"
        opt, fused = optimize(artifacts.ONNX_FP32_PATH, optimized, params)
        ref = score(artifacts.ONNX_FP32_PATH, texts, params)
        report: dict[str, Any] = {"fused_operators": fused, "test_rows": len(texts),
                                  "size_mb": {"fp32": size_mb(artifacts.ONNX_FP32_PATH),
                                              "fp32_optimized": size_mb(optimized)},
                                  "params": asdict(params)}
        with atomic_path(artifacts.ONNX_INT8_PATH) as tmp:
            quantize(optimized, tmp, params)
            result = accuracy_gate(ref, score(tmp, texts, params), y_true, params)
            report["size_mb"]["int8"] = size_mb(tmp)
            report["size_ratio_fp32_over_int8"] = round(size_mb(artifacts.ONNX_FP32_PATH) / size_mb(tmp), 3)
            report["int8"] = result
            report["passed"] = result["passed"]
            log.info("int8 gate: macro-F1 %.4f vs fp32 %.4f (drop %.2f pt), agreement %.4f%s: %s",
                     result["macro_f1"], result["fp32_macro_f1"], result["f1_drop_points"],
                     result["agreement"], f", out-of-scope agreement {result['oos']['agreement']:.4f}"
                     if result["oos"] else "", "passed" if result["passed"] else "FAILED")
            if params.fp16:
                report["fp16"] = write_fp16(opt, texts, y_true, ref, params, gpu_present())
                report["size_mb"]["fp16"] = size_mb(artifacts.ONNX_FP16_PATH)
            write_json(artifacts.QUANTIZE_METRICS, report)
            if not result["passed"]:
                raise gate_error("int8", result, str(artifacts.ONNX_INT8_PATH))
        log.info("wrote %s (%.1f MB, %.2fx smaller than fp32)", artifacts.ONNX_INT8_PATH,
                 report["size_mb"]["int8"], report["size_ratio_fp32_over_int8"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_fp16(opt: Any, texts: list[str], y_true: list[str], ref: Scored,
               params: QuantizeParams, on_gpu: bool) -> dict[str, Any]:
    """The float16 variant for GPU serving; gated like int8 when a GPU can run it here."""
    opt.convert_float_to_float16(keep_io_types=True)
    with atomic_path(artifacts.ONNX_FP16_PATH) as tmp:
        opt.save_model_to_file(str(tmp))
        if not on_gpu:
            log.warning("fp16 model written but not gated: no GPU here (CPU lacks fp16 kernels)")
            return {"gated": False, "reason": "no GPU on the machine that ran quantize"}
        result = accuracy_gate(ref, score(tmp, texts, params, device="cuda"), y_true, params)
        if not result["passed"]:
            raise gate_error("fp16", result, str(artifacts.ONNX_FP16_PATH))
    log.info("fp16 gate passed: macro-F1 %.4f, agreement %.4f", result["macro_f1"],
             result["agreement"])
    return {"gated": True, **result}


if __name__ == "__main__":
    from stages.stage_cli import run_stage

    run_stage(main, "stages.quantize", __doc__)
