"""Export the checkpoint to ONNX and gate it: the fp32 graph must match PyTorch on the test split.

Writes models/onnx/model.onnx (outputs ``logits`` and ``embedding``), models/onnx/tokenizer/,
models/onnx/labels.json and metrics/parity.json. Uses the TorchScript exporter with eager attention
by default (``export.exporter``), the path whose graph onnxruntime fuses.
More: docs/onnx.md.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from stages import artifacts
from stages.common import (
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    StageError,
    get_logger,
    load_params,
    params_section,
    progress,
)
from stages.io import atomic_path, remove_stale_temp_dirs, write_json
from stages.model import class_names, load_classifier, trained_max_length

if TYPE_CHECKING:
    import numpy as np

log = get_logger(__name__)

INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("logits", "embedding")  # logits first: readers of outputs[0] get the logits
DEFAULT_MAX_LENGTH = 128


@params_section("export")
@dataclass
class ExportParams:
    opset: Annotated[int, Range(ge=7)] = 17
    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    # tokens; None = the max_length the checkpoint was trained with (its manifest.json)
    max_length: PositiveInt | None = None
    parity_atol: PositiveFloat = 1.0e-4          # max |logit difference| vs PyTorch
    parity_batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    parity_batch1_rows: PositiveInt = 64         # batch-1 checks: this many shortest + longest texts
    parity_long_rows: NonNegativeInt = 8            # extra texts that fill max_length (the long case)


def checkpoint_max_length(checkpoint: Path, params: ExportParams) -> int:
    """The truncation length: explicit param, else what train used, else 128."""
    if params.max_length:
        return params.max_length
    value = trained_max_length(checkpoint)
    if value is None:
        log.warning("no max_length in %s; using %d", checkpoint / artifacts.MANIFEST_FILE, DEFAULT_MAX_LENGTH)
        return DEFAULT_MAX_LENGTH
    return value


def input_names(tokenizer: Any) -> list[str]:
    """The graph's inputs: what the tokenizer feeds the model, in a fixed order."""
    names = [n for n in INPUT_ORDER if n in tokenizer.model_input_names]
    if "input_ids" not in names or "attention_mask" not in names:
        raise StageError(f"tokenizer inputs {tokenizer.model_input_names} lack input_ids or "
                         "attention_mask", fix="use a standard Hugging Face encoder checkpoint")
    return names


def export_onnx(model: Any, tokenizer: Any, out: Path, params: ExportParams) -> list[str]:
    """torch.onnx.export with symbolic batch and sequence axes; returns the input names."""
    import torch

    names = input_names(tokenizer)

    class Logits(torch.nn.Module):
        """Positional inputs in ``names`` order -> (logits, pooled embedding): OUTPUT_NAMES.

        Logits come first: consumers that read only ``outputs[0]`` keep working.
        """

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # the same computation as TextClassifier.forward, with the pooled vector kept
            pooled = self.model.embed(**dict(zip(names, inputs, strict=True)))
            return self.model.head(self.model.dropout(pooled)), pooled

    # batch 2, padded to the longer text: traces padding and gives batch, sequence >= 2
    sample = tokenizer(["a short example", "a somewhat longer example sentence for tracing"],
                       padding=True, return_tensors="pt")
    args = tuple(sample[n] for n in names)
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        if params.exporter == "dynamo":
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
            torch.onnx.export(Logits().eval(), args, str(out), input_names=names,
                              output_names=list(OUTPUT_NAMES), opset_version=params.opset,
                              dynamo=True,
                              dynamic_shapes={"inputs": tuple({0: batch, 1: seq} for _ in names)},
                              external_data=False, report=False)
        else:
            axes = ({n: {0: "batch", 1: "sequence"} for n in names}
                    | {output: {0: "batch"} for output in OUTPUT_NAMES})
            torch.onnx.export(Logits().eval(), args, str(out), input_names=names,
                              output_names=list(OUTPUT_NAMES), opset_version=params.opset,
                              dynamo=False, dynamic_axes=axes, do_constant_folding=True)
    except Exception as exc:  # the exporters raise many types; all mean "this did not export"
        raise StageError(f"torch.onnx.export ({params.exporter}) failed: {exc}",
                         fix="try the other exporter: export.exporter: dynamo|torchscript") from exc
    finally:
        if previous:
            model.set_attn_implementation(previous)
    return names


def check_symbolic_dims(path: Path) -> dict[str, list[str]]:
    """Every graph input must have named (symbolic) batch and sequence dims, no fixed sizes."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dims = {}
    for inp in graph.input:
        shape = inp.type.tensor_type.shape.dim
        dims[inp.name] = [d.dim_param or str(d.dim_value) for d in shape]
        if len(shape) != 2 or not all(d.dim_param for d in shape):
            raise StageError(f"input '{inp.name}' has fixed dims {dims[inp.name]}",
                             where=str(path), fix="export with dynamic batch and sequence axes")
    return dims


def add_metadata(path: Path, model: Any, max_length: int, params: ExportParams) -> None:
    """Record what quantize's optimizer needs (model type, heads, width) inside the ONNX file."""
    import onnx

    proto = onnx.load(str(path))
    config = model.config
    meta = {"model_type": config.model_type, "num_attention_heads": config.num_attention_heads,
            "hidden_size": config.hidden_size, "max_length": max_length,
            "exporter": params.exporter, "labels": json.dumps(class_names(model))}
    onnx.helper.set_model_props(proto, {k: str(v) for k, v in meta.items()})
    onnx.save(proto, str(path))


def export_tokenizer(checkpoint: Path, out_dir: Path, tokenizer: Any, max_length: int) -> None:
    """tokenizer.json with truncation at ``max_length`` and pad-to-longest, plus the HF files."""
    from tokenizers import Tokenizer

    source = checkpoint / "tokenizer.json"
    if not source.is_file():
        raise StageError("the checkpoint has no fast tokenizer (tokenizer.json)",
                         where=str(checkpoint),
                         fix="save the tokenizer with a fast (Rust) tokenizer class")
    out_dir.mkdir(parents=True)
    fast = Tokenizer.from_file(str(source))
    fast.enable_truncation(max_length=max_length)
    fast.enable_padding(pad_id=tokenizer.pad_token_id or 0, pad_token=tokenizer.pad_token or "[PAD]",
                        pad_type_id=getattr(tokenizer, "pad_token_type_id", 0) or 0)
    fast.save(str(out_dir / "tokenizer.json"))
    for name in ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, out_dir / name)


def parity_cases(lengths: list[int], n_test: int, params: ExportParams) -> dict[str, Any]:
    """Row selections and batch sizes for the gate: {case name: (row indices, batch size)}.

    Rows >= n_test are the synthetic max-length texts. Batch 1 runs on the shortest and longest
    rows; larger batch sizes run on every row in file order, so short texts sit beside long ones
    and padding is exercised.
    """
    import numpy as np

    order = np.argsort(lengths, kind="stable")
    k = params.parity_batch1_rows // 2
    cases = {}
    for bs in params.parity_batch_sizes:
        if bs == 1:
            cases["batch1_short"] = (order[:k], 1)
            cases["batch1_long"] = (order[-k:], 1)
        else:
            cases[f"batch{bs}_mixed"] = (np.arange(len(lengths)), bs)
            cases[f"batch{bs}_long"] = (np.arange(n_test, len(lengths)), bs)
    return {name: rows for name, rows in cases.items() if len(rows[0])}


def torch_logits(model: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        inputs = {k: torch.from_numpy(v) for k, v in feeds.items()}
        return model(**inputs).logits.float().numpy()


def check_parity(onnx_path: Path, model: Any, texts: list[str], params: ExportParams,
                 n_test: int | None = None) -> dict[str, Any]:
    """Compare ONNX with PyTorch logits case by case; the report says passed and the worst row.

    Both runtimes get identical padded token ids (from the exported tokenizer), so any
    difference is the graph's. :func:`require_parity` turns a failed report into the error.
    """
    import numpy as np

    from stages.onnx_session import encode, load_onnx_model, pad

    onnx_model = load_onnx_model(onnx_path, device="cpu")
    encodings = encode(onnx_model, texts)
    lengths = [len(e.ids) for e in encodings]
    n_test = len(texts) if n_test is None else n_test
    report: dict[str, Any] = {"atol": params.parity_atol, "cases": {}}
    worst: dict[str, Any] = {"key": (False, -1.0)}
    for name, (rows, bs) in parity_cases(lengths, n_test, params).items():
        max_diff, agree = 0.0, 0
        for start in progress(range(0, len(rows), bs), desc=f"parity {name}", leave=False):
            idx = rows[start:start + bs]
            feeds = pad(onnx_model, [encodings[i] for i in idx])
            got = onnx_model.session.run(None, feeds)[0]
            ref = torch_logits(model, feeds)
            diff = np.abs(got - ref).max(axis=1)
            agree += int((got.argmax(1) == ref.argmax(1)).sum())
            max_diff = max(max_diff, float(diff.max()))
            flips = got.argmax(1) != ref.argmax(1)
            j = int(np.where(flips, diff, -1.0).argmax() if flips.any() else diff.argmax())
            key = (bool(flips[j]), float(diff[j]))
            if key > worst["key"]:
                worst = {"key": key, "flipped": key[0], "diff": key[1], "case": name,
                         "row": int(idx[j]), "tokens": lengths[idx[j]],
                         "text": texts[idx[j]][:200], "torch": ref[j].round(5).tolist(),
                         "onnx": got[j].round(5).tolist()}
        report["cases"][name] = {
            "rows": len(rows), "batch_size": bs, "max_abs_diff": max_diff,
            "argmax_agreement": agree / len(rows),
            "seq_len_min": int(min(lengths[i] for i in rows)),
            "seq_len_max": int(max(lengths[i] for i in rows)),
        }
        log.info("parity %-14s rows=%4d max|diff|=%.2e agreement=%.4f", name, len(rows),
                 max_diff, agree / len(rows))
    report["max_abs_diff"] = max(c["max_abs_diff"] for c in report["cases"].values())
    report["argmax_agreement"] = min(c["argmax_agreement"] for c in report["cases"].values())
    report["passed"] = (report["max_abs_diff"] <= params.parity_atol
                        and report["argmax_agreement"] == 1.0)
    report["worst"] = {k: v for k, v in worst.items() if k != "key"}
    return report


def require_parity(report: dict[str, Any], where: str) -> None:
    """The gate: StageError with the worst example unless the report passed."""
    if report["passed"]:
        return
    w = report["worst"]
    raise StageError(
        f"ONNX parity gate failed: max |logit diff| {report['max_abs_diff']:.3g} "
        f"(allowed {report['atol']:.0e}), argmax agreement {report['argmax_agreement']:.4f} "
        f"(required 1.0)\n  worst: case {w['case']}, text #{w['row']} ({w['tokens']} tokens)"
        f"{', prediction flips' if w['flipped'] else ''}: {w['text']!r}\n"
        f"    torch {w['torch']}\n    onnx  {w['onnx']}",
        where=where,
        fix="try the other exporter (export.exporter) or opset (export.opset); loosen "
        "export.parity_atol only if the difference is understood")


def long_texts(texts: list[str], n: int) -> list[str]:
    """Texts long enough to be truncated at max_length: test texts repeated a few times."""
    pool = sorted(texts, key=len, reverse=True)[:n]
    return [" ".join([t] * (1 + 2048 // max(len(t), 1))) for t in pool]


def main() -> None:
    from stages.data import load_split

    params = load_params("export", ExportParams)
    if not (artifacts.CHECKPOINT_DIR / "config.json").is_file():
        raise StageError(f"no checkpoint at {artifacts.CHECKPOINT_DIR}", fix="run `dvc repro train` first")
    test = load_split("test")
    texts = test["text"].astype(str).tolist()
    if not texts:
        raise StageError("the test split is empty", where=str(artifacts.split_path("test")))
    model, tokenizer = load_classifier(artifacts.CHECKPOINT_DIR, "cpu")
    labels = class_names(model)
    max_length = checkpoint_max_length(artifacts.CHECKPOINT_DIR, params)
    log.info("checkpoint %s: %s, %d classes, max_length %d", artifacts.CHECKPOINT_DIR,
             model.config.model_type, len(labels), max_length)

    artifacts.ONNX_DIR.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(artifacts.ONNX_DIR, ".export.")
    staging = Path(tempfile.mkdtemp(prefix=".export.", dir=artifacts.ONNX_DIR))
    try:
        onnx_path = staging / artifacts.ONNX_FP32
        names = export_onnx(model, tokenizer, onnx_path, params)
        add_metadata(onnx_path, model, max_length, params)
        dims = check_symbolic_dims(onnx_path)
        log.info("exported (%s, opset %d): %.1f MB, inputs %s", params.exporter, params.opset,
                 onnx_path.stat().st_size / 1e6, dims)
        export_tokenizer(artifacts.CHECKPOINT_DIR, staging / artifacts.TOKENIZER_DIR, tokenizer, max_length)
        write_json(staging / artifacts.LABELS_FILE, labels)
        copy_detector(artifacts.OOS_DIR, staging, labels)
        check_tokenizer(tokenizer, staging / artifacts.TOKENIZER_DIR, texts[:256], max_length)

        report = check_parity(onnx_path, model, texts + long_texts(texts, params.parity_long_rows),
                              params, n_test=len(texts))
        report.update({"exporter": params.exporter, "opset": params.opset, "inputs": names,
                       "input_dims": dims, "max_length": max_length, "test_rows": len(texts),
                       "params": asdict(params)})
        write_json(artifacts.PARITY_METRICS, report)
        require_parity(report, str(onnx_path))
        for name in (artifacts.ONNX_FP32, artifacts.TOKENIZER_DIR, artifacts.LABELS_FILE,
                     artifacts.OOS_JSON, artifacts.OOS_ARRAYS):
            with atomic_path(artifacts.ONNX_DIR / name) as tmp:
                os.replace(staging / name, tmp)
        log.info("parity passed (max |diff| %.2e); wrote %s", report["max_abs_diff"], artifacts.ONNX_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def copy_detector(oos_dir: Path, staging: Path, labels: list[str]) -> None:
    """The out-of-scope detector ships beside the model it was fitted on (same classes)."""
    from stages import oos_detector

    detector = oos_detector.load(oos_dir)
    if detector is None:
        raise StageError(f"no out-of-scope detector in {oos_dir}", where=str(oos_dir),
                         fix="run `dvc repro oos`")
    if len(detector.arrays["white_means"]) > len(labels):
        raise StageError(f"the out-of-scope detector was fitted for {len(detector.arrays['white_means'])}"
                         f" classes, the checkpoint has {len(labels)}", where=str(oos_dir),
                         fix="run `dvc repro oos`")
    for name in (artifacts.OOS_JSON, artifacts.OOS_ARRAYS):
        shutil.copyfile(oos_dir / name, staging / name)
    log.info("out-of-scope detector: %s, threshold %.4g", detector.method, detector.threshold)


def check_tokenizer(tokenizer: Any, tokenizer_dir: Path, texts: list[str], max_length: int) -> None:
    """The exported tokenizer.json must give the same ids as the checkpoint's tokenizer."""
    from stages.onnx_session import load_tokenizer

    fast, *_ = load_tokenizer(tokenizer_dir)
    ours = [e.ids for e in fast.encode_batch(texts)]
    theirs = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    bad = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
    if bad:
        raise StageError(f"exported tokenizer differs from the checkpoint's on {len(bad)} of "
                         f"{len(texts)} texts, e.g. {texts[bad[0]][:80]!r}",
                         where=str(tokenizer_dir), fix="re-save the checkpoint's fast tokenizer")
    log.info("tokenizer ids match the checkpoint's on %d texts", len(texts))


if __name__ == "__main__":
    from stages.stage_cli import run_stage

    run_stage(main, "stages.export", __doc__)
