"""ONNX Runtime sessions and inference helpers: the one place that creates an InferenceSession.

Shared by export, quantize, benchmark and ``predict``. Imports only onnxruntime, tokenizers, numpy
and pandas (inside functions), never torch, transformers or sklearn. An exported model directory
holds model.onnx, model.int8.onnx, tokenizer/ and labels.json, and for models exported with
out-of-scope detection oos.json + oos.npz (the detector, stages/oos_detector.py).
More: docs/onnx.md, docs/out_of_scope.md.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.artifacts import LABELS_FILE, OOS_JSON, TOKENIZER_DIR
from stages.common import StageError, get_logger, progress

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Encoding, Tokenizer

    from stages.oos_detector import Detector

log = get_logger(__name__)

TOKENIZER_FILE = "tokenizer.json"
EMBEDDING_OUTPUT = "embedding"  # the pooled sentence vector, second output of newer exports
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def gpu_present() -> bool:
    """Whether an NVIDIA GPU is visible, without importing torch.

    onnxruntime-gpu lists the CUDA EP as *available* even on machines without a GPU, so the
    provider list alone cannot decide; the driver's device nodes can.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def pick_providers(device: str = "auto") -> list[str]:
    """Execution providers for ``device`` (auto | cpu | cuda): CUDA EP first when usable."""
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):
        raise StageError(f"unknown device {device!r}", fix="use auto, cpu or cuda")
    cuda_ok = CUDA in ort.get_available_providers() and gpu_present()
    if device == "cuda" and not cuda_ok:
        raise StageError("device 'cuda' requested but the ONNX Runtime CUDA EP is not usable here",
                         fix="install onnxruntime-gpu on a machine with an NVIDIA GPU, "
                         "or use device auto/cpu")
    if device == "cpu" or not cuda_ok:
        return [CPU]
    return [CUDA, CPU]


def create_session(model_path: str | Path, threads: int | None = None,
                   device: str = "auto", spinning: bool = True) -> ort.InferenceSession:
    """An InferenceSession on the best provider, threads pinned, providers logged and checked.

    ``threads`` sets intra-op threads (inter-op is 1: these graphs are sequential); None lets
    ONNX Runtime use every core. ``spinning: False`` lets idle pool threads sleep instead of
    busy-waiting for the next op: a process that shares the cores with other work (the HTTP
    service) then keeps them.
    """
    import onnxruntime as ort

    model_path = Path(model_path)
    if not model_path.is_file():
        raise StageError(f"ONNX model not found: {model_path}",
                         fix="run `dvc repro export` (fp32) or `dvc repro quantize` (int8)")
    wanted = pick_providers(device)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the provider fallback is logged below
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(model_path), options, providers=wanted)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise StageError(f"ONNX Runtime could not load the model: {exc}", where=str(model_path),
                         fix="re-run `dvc repro export quantize`") from None
    got = session.get_providers()
    assert got and got[0] in wanted, f"session providers {got}, asked for {wanted}"
    if got[0] != wanted[0]:
        if device == "cuda":
            raise StageError(f"CUDA EP requested but the session runs on {got}",
                             where=str(model_path), fix="check the CUDA/cuDNN libraries")
        log.warning("%s not usable, falling back to %s", wanted[0], got[0])
    log.info("session %s on %s (intra-op threads: %s)", model_path.name, got[0],
             threads or "all cores")
    return session


def provider(session: ort.InferenceSession) -> str:
    return session.get_providers()[0]


@dataclass
class OnnxModel:
    """An ONNX classifier with its tokenizer and class names, as found next to the model file."""

    session: Any
    tokenizer: Any
    labels: list[str]
    pad_id: int
    pad_type_id: int
    max_length: int | None
    batch_invariant: bool = True  # False: a text's scores depend on the other texts in its call
    oos: Detector | None = None   # the out-of-scope detector; None: exported before detectors

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    def texts_per_call(self, batch_size: int) -> int:
        """``batch_size``, or 1 for a graph whose scores depend on a text's batch mates."""
        return batch_size if self.batch_invariant else 1


# onnxruntime's quantizer stamps the graphs it writes with this. quantize writes dynamic int8,
# whose activation scales are computed per call over the whole input tensor, batch mates and
# padding included: on Banking77, 0.71% of test labels and a probability by up to 0.52 changed
# with the batch a text ran in (benchmarks/RESULTS.md). Alone, a text's scores are its own.
QUANTIZED_BY_ORT = ("onnx.infer", "onnxruntime.quant")


def is_batch_invariant(session: ort.InferenceSession) -> bool:
    """Whether a text's scores are independent of the texts it runs with (False: ORT-quantized)."""
    key, value = QUANTIZED_BY_ORT
    return session.get_modelmeta().custom_metadata_map.get(key) != value


def artifact_paths(model_path: str | Path) -> tuple[Path, Path]:
    """Tokenizer directory and labels file that belong to ``model_path`` (its siblings)."""
    parent = Path(model_path).parent
    return parent / TOKENIZER_DIR, parent / LABELS_FILE


def load_tokenizer(tokenizer_dir: str | Path) -> tuple[Tokenizer, int, int, int | None]:
    """The fast tokenizer with padding switched off (batches are padded to their own longest).

    Returns (tokenizer, pad id, pad type id, truncation max length).
    """
    from tokenizers import Tokenizer

    path = Path(tokenizer_dir) / TOKENIZER_FILE
    if not path.is_file():
        raise StageError(f"tokenizer not found: {path}",
                         fix="keep the tokenizer/ folder written by `dvc repro export` next to "
                         "the model file")
    tokenizer = Tokenizer.from_file(str(path))
    padding = tokenizer.padding or {}
    truncation = tokenizer.truncation or {}
    tokenizer.no_padding()
    return (tokenizer, int(padding.get("pad_id", 0)), int(padding.get("pad_type_id", 0)),
            truncation.get("max_length"))


def load_labels(labels_path: str | Path) -> list[str]:
    labels_path = Path(labels_path)
    if not labels_path.is_file():
        raise StageError(f"label map not found: {labels_path}",
                         fix="keep labels.json written by `dvc repro export` next to the model")
    labels = json.loads(labels_path.read_text(encoding="utf-8"))
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise StageError("labels.json must be a non-empty list of class names",
                         where=str(labels_path))
    return labels


def load_onnx_model(model_path: str | Path, threads: int | None = None, device: str = "auto",
                    artifacts_dir: str | Path | None = None, spinning: bool = True) -> OnnxModel:
    """Session + tokenizer + labels for an exported model file, checked against each other.

    The tokenizer/ and labels.json are looked up next to the model, or in ``artifacts_dir``
    (for a model file still in a staging folder).
    """
    tokenizer_dir, labels_path = artifact_paths(Path(artifacts_dir or Path(model_path).parent)
                                                / "model.onnx")
    session = create_session(model_path, threads=threads, device=device, spinning=spinning)
    tokenizer, pad_id, pad_type_id, max_length = load_tokenizer(tokenizer_dir)
    labels = load_labels(labels_path)
    n_out = session.get_outputs()[0].shape[-1]
    if isinstance(n_out, int) and n_out != len(labels):
        raise StageError(f"model has {n_out} outputs but labels.json lists {len(labels)} classes",
                         where=str(labels_path), fix="re-run `dvc repro export quantize`")
    batch_invariant = is_batch_invariant(session)
    if not batch_invariant:
        log.info("%s quantizes activations per call: each text runs in a call of its own, so its "
                 "scores do not depend on the texts beside it", Path(model_path).name)
    oos = load_detector(session, labels_path.parent)
    return OnnxModel(session, tokenizer, labels, pad_id, pad_type_id, max_length, batch_invariant,
                     oos)


def load_detector(session: ort.InferenceSession, model_dir: Path) -> Detector | None:
    """The out-of-scope detector saved beside the model (None: none there), checked against the
    graph: an embedding-based one needs the ``embedding`` output, of the width it was fitted on."""
    from stages.oos_detector import load

    detector = load(model_dir)
    if detector is None or not detector.needs_embeddings():
        return detector
    where = str(model_dir / OOS_JSON)
    outputs = {o.name: o for o in session.get_outputs()}
    if EMBEDDING_OUTPUT not in outputs:
        raise StageError(f"the out-of-scope detector scores by {detector.method}, which needs the "
                         "pooled embedding, and this model's graph returns logits only",
                         where=where, fix="re-export with `dvc repro export quantize` (the graph then "
                         "returns the embedding), or refit the detector with oos.method msp or "
                         "energy: `dvc repro oos export`")
    width = outputs[EMBEDDING_OUTPUT].shape[-1]
    fitted = detector.arrays["bank"].shape[1]
    if isinstance(width, int) and width != fitted:
        raise StageError(f"the out-of-scope detector was fitted on {fitted}-wide embeddings, the "
                         f"model returns {width}-wide ones", where=where,
                         fix="the detector belongs to another model: `dvc repro oos export`")
    return detector


def encode(model: OnnxModel, texts: Sequence[str]) -> list[Encoding]:
    """Token encodings (truncated, unpadded). ``len(e.overflowing) > 0`` marks a truncated text."""
    return model.tokenizer.encode_batch(list(texts))


def pad(model: OnnxModel, encodings: Sequence[Encoding]) -> dict[str, np.ndarray]:
    """int64 feeds for the graph's inputs, padded to this batch's longest sequence."""
    import numpy as np

    width = max(len(e.ids) for e in encodings)
    fields = {"input_ids": ("ids", model.pad_id), "attention_mask": ("attention_mask", 0),
              "token_type_ids": ("type_ids", model.pad_type_id)}
    feeds = {}
    for name in model.input_names:
        if name not in fields:
            raise StageError(f"model input '{name}' is not one the tokenizer produces",
                             fix="export with input_ids/attention_mask[/token_type_ids]")
        attr, fill = fields[name]
        arr = np.full((len(encodings), width), fill, dtype=np.int64)
        for row, e in enumerate(encodings):
            values = getattr(e, attr)
            arr[row, :len(values)] = values
        feeds[name] = arr
    return feeds


def run_outputs(model: OnnxModel, encodings: Sequence[Encoding], names: Sequence[str],
                batch_size: int = 32, sort_by_length: bool = True,
                show_progress: bool = False) -> list[np.ndarray]:
    """The graph outputs ``names`` for ``encodings``, rows in their order; batches grouped by
    length to keep padding small. Batches hold ``model.texts_per_call(batch_size)`` texts: one
    for dynamic int8, whose scores would otherwise depend on their batch mates."""
    import numpy as np

    batch_size = model.texts_per_call(batch_size)
    n = len(encodings)
    order = (np.argsort([len(e.ids) for e in encodings], kind="stable") if sort_by_length
             else np.arange(n))
    outputs: list[np.ndarray] = []
    for start in progress(range(0, n, batch_size), desc="onnx", disable=not show_progress,
                          leave=False):
        idx = order[start:start + batch_size]
        batch = model.session.run(list(names), pad(model, [encodings[i] for i in idx]))
        if not outputs:
            outputs = [np.empty((n, *b.shape[1:]), dtype=np.float32) for b in batch]
        for out, b in zip(outputs, batch, strict=True):
            out[idx] = b
    return outputs


def run_logits(model: OnnxModel, encodings: Sequence[Encoding], batch_size: int = 32,
               sort_by_length: bool = True, show_progress: bool = False) -> np.ndarray:
    """Logits for ``encodings`` in their order (see :func:`run_outputs`)."""
    import numpy as np

    if not encodings:
        return np.empty((0, len(model.labels)), dtype=np.float32)
    name = model.session.get_outputs()[0].name
    return run_outputs(model, encodings, [name], batch_size, sort_by_length, show_progress)[0]


def has_embedding(model: OnnxModel) -> bool:
    """Whether the graph has the ``embedding`` output (older exports have logits only)."""
    return EMBEDDING_OUTPUT in [o.name for o in model.session.get_outputs()]


def run_logits_and_embeddings(model: OnnxModel, encodings: Sequence[Encoding],
                              batch_size: int = 32, show_progress: bool = False,
                              ) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits and pooled embeddings (None for a logits-only graph), in ``encodings`` order."""
    if not has_embedding(model) or not encodings:
        return run_logits(model, encodings, batch_size, show_progress=show_progress), None
    names = [model.session.get_outputs()[0].name, EMBEDDING_OUTPUT]
    logits, emb = run_outputs(model, encodings, names, batch_size, show_progress=show_progress)
    return logits, emb


def detect_out_of_scope(model: OnnxModel, logits: np.ndarray, embeddings: np.ndarray | None
                        ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(out-of-scope flags, scores) of a batch's rows; (None, None) for a model without detector."""
    import numpy as np

    if model.oos is None:
        return None, None
    if len(logits) == 0:  # nothing ran: no embeddings either, and nothing to decide
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.float64)
    return model.oos.decide(logits, embeddings, model.labels)


def answer_labels(model: OnnxModel, probs: np.ndarray, out_of_scope: np.ndarray | None
                  ) -> list[str | None]:
    """The label each text is answered with: its most probable class, or, out of scope, the
    detector's label (None: the answer's label is null)."""
    import numpy as np

    labels: list[str | None] = [model.labels[i] for i in probs.argmax(axis=1)]
    if out_of_scope is not None and model.oos is not None:
        for row in np.flatnonzero(out_of_scope):
            labels[int(row)] = model.oos.label
    return labels


@dataclass
class ScoredTexts:
    """Class probabilities for a list of texts, with what the tokenizer had to do to them."""

    probs: np.ndarray  # (n, classes), rows in the input order
    truncated: int     # texts longer than the model's max_length
    empty: int         # blank texts (scored, but worth a look)
    out_of_scope: np.ndarray | None = None  # bool per text; None: the model has no detector
    oos_scores: np.ndarray | None = None    # the detector's score per text (higher: further out)


def score_texts(model: OnnxModel, texts: Sequence[str], batch_size: int = 32) -> ScoredTexts:
    """Tokenise, run and softmax ``texts``: the scoring loop predict and batch scoring share.

    With a detector, also the out-of-scope flags and scores (the embeddings are run only for a
    detector that reads them)."""
    from stages.metrics import softmax

    encodings = encode(model, texts)
    if model.oos is not None and model.oos.needs_embeddings():
        logits, emb = run_logits_and_embeddings(model, encodings, batch_size)
    else:
        logits, emb = run_logits(model, encodings, batch_size=batch_size), None
    flags, scores = detect_out_of_scope(model, logits, emb)
    return ScoredTexts(softmax(logits), sum(1 for e in encodings if e.overflowing),
                       sum(1 for t in texts if not t.strip()), flags, scores)
