"""The served model: the champion's ONNX export, loaded, warmed and checked before it serves.

A champion is accepted only if its session loads, its labels match the model's outputs, its
out-of-scope detector (``onnx/oos.json``, when it has one) fits its graph and runs, and it
reproduces the test predictions promote recorded with it (``onnx/reference_predictions.parquet``)
within ``serve.parity_atol``. Anything else is a :class:`StageError`: the service keeps serving
what it had. A champion exported before out-of-scope detection is served, with a warning, and
answers ``out_of_scope``/``oos_score`` null.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serve.params import ServeParams
from stages import artifacts
from stages.common import StageError, get_logger
from stages.io import sha256_file
from stages.metrics import softmax
from stages.onnx_session import (
    OnnxModel,
    answer_labels,
    detect_out_of_scope,
    encode,
    load_onnx_model,
    pad,
    provider,
)

if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Encoding

log = get_logger(__name__)

EMBEDDING_OUTPUT = "embedding"  # an optional second graph output: the pooled sentence vector
WARM_TEXT = "warm up " * 512    # truncated to max_length: the longest shape the model will see


class NoChampion(StageError):
    """The pointer names no champion yet: a normal state, the service waits for one."""


@dataclass
class BatchResult:
    """One ONNX call's answer, row for row with its texts."""

    probs: np.ndarray
    n_tokens: list[int]
    truncated: list[bool]
    embedding: np.ndarray | None
    out_of_scope: np.ndarray | None = None  # bool per text; None: the model has no detector
    oos_score: np.ndarray | None = None     # the detector's score per text

    @classmethod
    def of(cls, encodings: Sequence[Encoding], probs: np.ndarray, embedding: np.ndarray | None,
           out_of_scope: np.ndarray | None = None, oos_score: np.ndarray | None = None
           ) -> BatchResult:
        return cls(probs, [len(e.ids) for e in encodings],
                   [bool(e.overflowing) for e in encodings], embedding, out_of_scope, oos_score)


@dataclass
class ServedModel:
    onnx: OnnxModel
    version: str
    precision: str
    path: Path
    record: dict[str, Any]
    metrics: dict[str, Any] | None
    output_names: list[str]
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def labels(self) -> list[str]:
        return self.onnx.labels

    @property
    def has_embedding(self) -> bool:
        return EMBEDDING_OUTPUT in self.output_names

    def encode(self, texts: Sequence[str]) -> list[Encoding]:
        return encode(self.onnx, texts)

    def predict(self, texts: Sequence[str]) -> BatchResult:
        """One ONNX call for ``texts``, padded to the longest of them."""
        return self.run(self.encode(texts))

    def run(self, encodings: Sequence[Encoding]) -> BatchResult:
        """One ONNX call for tokenised texts, padded to the longest of them, and the out-of-scope
        decision of each (row by row: it does not depend on the call's other texts)."""
        outputs = self.onnx.session.run(self.output_names, pad(self.onnx, encodings))
        embedding = outputs[1].astype("float32") if self.has_embedding else None
        flags, scores = detect_out_of_scope(self.onnx, outputs[0], embedding)
        return BatchResult.of(encodings, softmax(outputs[0]).astype("float32"), embedding,
                              flags, scores)

    def answer_labels(self, result: BatchResult) -> list[str | None]:
        """Each text's answered label: its class, or the detector's label when out of scope."""
        return answer_labels(self.onnx, result.probs, result.out_of_scope)

    def describe_detector(self) -> dict[str, Any] | None:
        detector = self.onnx.oos
        if detector is None:
            return None
        return {"method": detector.method, "threshold": detector.threshold,
                "label": detector.label, "keep_in_scope": detector.keep_in_scope}

    def describe(self) -> dict[str, Any]:
        """What GET /v1/model answers."""
        return {"version": self.version, "precision": self.precision,
                "file": self.path.as_posix(), "provider": provider(self.onnx.session),
                "labels": self.labels, "max_length": self.onnx.max_length,
                "embedding": self.has_embedding, "batch_invariant": self.onnx.batch_invariant,
                "out_of_scope": self.describe_detector(),
                "promoted_at": self.record.get("promoted_at"),
                "commit": self.record.get("commit"), "forced": self.record.get("forced"),
                "loaded_at": self.loaded_at, "metrics": self.metrics}


def champion_files(precision: str, pointer: Path = artifacts.CHAMPION_POINTER
                   ) -> tuple[dict[str, Any], Path, str]:
    """(pointer record, model file, version) of the champion as the workspace has it now.

    The version is the pointer's commit and a short hash of the file served: it changes when
    either does, so two different files never answer under one version.
    """
    record = artifacts.read_champion_pointer(pointer)
    if record is None:
        raise NoChampion(f"no champion yet: {pointer} names none", where=str(pointer),
                         fix="promote a model: python -m commands.promote")
    onnx_dir = artifacts.champion_onnx_dir(pointer)
    assert onnx_dir is not None  # a record was read above
    path = onnx_dir / artifacts.ONNX_PRECISIONS[precision]
    if not path.is_file():
        raise StageError(f"the champion has no {precision} model: {path} is missing",
                         where=str(onnx_dir), fix="set serve.precision to a file the champion has, "
                         "or re-promote after `dvc repro quantize` (quantize.fp16 for fp16)")
    commit = (record.get("commit") or "uncommitted")[:12]
    return record, path, f"{commit}-{sha256_file(path)[:12]}"


def load_champion(params: ServeParams, pointer: Path = artifacts.CHAMPION_POINTER) -> ServedModel:
    """Load, warm and parity-check the champion; StageError (nothing served) on any failure."""
    start = time.perf_counter()
    record, path, version = champion_files(params.precision, pointer)
    onnx = load_onnx_model(path, threads=params.threads, device=params.device,
                           spinning=params.ort_spinning)
    names = [o.name for o in onnx.session.get_outputs()]
    output_names = names[:1] + ([EMBEDDING_OUTPUT] if EMBEDDING_OUTPUT in names[1:] else [])
    metrics_path = path.parent.parent / artifacts.CHAMPION_METRICS
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else None
    model = ServedModel(onnx, version, params.precision, path, record, metrics, output_names)
    try:
        for batch in ([WARM_TEXT], [WARM_TEXT] * onnx.texts_per_call(params.max_batch)):
            model.predict(batch)
    except Exception as exc:  # onnxruntime's own exception types: the graph cannot run
        raise StageError(f"the champion's model failed its warm-up run: {exc}", where=str(path),
                         fix="re-export and re-promote it") from None
    check_parity(model, params)
    if onnx.oos is None:
        log.warning("champion %s was exported before out-of-scope detection (no %s beside %s): "
                    "its answers carry out_of_scope and oos_score null; re-export with `dvc repro "
                    "export quantize` and promote again", version, artifacts.OOS_JSON, path.name)
    log.info("loaded champion %s (%s, %s) in %.1fs", version, path, provider(onnx.session),
             time.perf_counter() - start)
    return model


def check_parity(model: ServedModel, params: ServeParams) -> dict[str, Any]:
    """The model must reproduce its own recorded test predictions (promote wrote them)."""
    import numpy as np
    import pyarrow.parquet as pq

    ref_path = model.path.parent / artifacts.CHAMPION_REFERENCE
    if not ref_path.is_file():
        raise StageError("the champion has no recorded test predictions to check the model "
                         "against", where=str(ref_path),
                         fix="promote it again with this version (python -m commands.promote)")
    # fp16 is only producible on a GPU: promote records fp32, which fp16 must stay close to
    column = f"probs_{'fp32' if model.precision == 'fp16' else model.precision}"
    table = pq.read_table(ref_path)
    if column not in table.column_names:
        raise StageError(f"the recorded test predictions have no {column}", where=str(ref_path),
                         fix="promote it again with this version")
    table = table.slice(0, params.parity_rows)
    texts = table.column("text").to_pylist()
    expected = np.asarray(table.column(column).to_pylist(), dtype=np.float32)
    if expected.ndim != 2 or expected.shape[1] != len(model.labels):
        raise StageError(f"the recorded predictions have {expected.shape[-1]} classes, the model "
                         f"{len(model.labels)}", where=str(ref_path), fix="promote it again")
    # one text per call, as promote recorded them (fp32 too: no float-noise from batching)
    got = np.concatenate([model.predict([text]).probs for text in texts]) if texts else expected
    max_diff = float(np.abs(got - expected).max()) if len(texts) else 0.0
    agreement = float((got.argmax(1) == expected.argmax(1)).mean()) if len(texts) else 1.0
    result = {"rows": len(texts), "max_abs_diff": max_diff, "agreement": agreement}
    if max_diff > params.parity_atol or agreement < params.parity_min_agreement:
        raise StageError(f"the champion's model does not reproduce its recorded test predictions: "
                         f"max |prob diff| {max_diff:.4g} (allowed {params.parity_atol}), label "
                         f"agreement {agreement:.3f} (required {params.parity_min_agreement}) "
                         f"on {len(texts)} texts", where=str(model.path),
                         fix="the files were changed after promotion or are damaged: "
                             "`dvc checkout models/champion.dvc`, or promote again")
    log.info("parity with recorded predictions: %s", result)
    return result
