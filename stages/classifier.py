"""The one model definition: a pretrained encoder, the pooling it was trained for, a linear head.

train fine-tunes it, evaluate and benchmark score with it, export traces it to ONNX. Imports torch
at module level: import it only where a model is built (stages.model does so lazily). Pooling
follows the base model (mean for sentence-transformers, else [CLS]).
More: docs/training.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

Pooling = Literal["mean", "cls", "max"]
POOLING_FILE = "pooling.json"
HEAD_FILE = "classifier.safetensors"
ST_POOLING_FLAGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                    "pooling_mode_max_tokens": "max"}


def base_model_pooling(model_dir: Path) -> tuple[Pooling, str]:
    """The pooling a base model was trained with, and where that came from."""
    config = model_dir / "1_Pooling" / "config.json"
    if not config.is_file():
        return "cls", "no sentence-transformers pooling config: first token ([CLS])"
    flags = json.loads(config.read_text(encoding="utf-8"))
    modes = [mode for flag, mode in ST_POOLING_FLAGS.items() if flags.get(flag)]
    if len(modes) != 1:
        on = sorted(k for k, v in flags.items() if k.startswith("pooling_mode") and v)
        raise ValueError(f"{config}: pooling {on} is not one of {sorted(ST_POOLING_FLAGS)}")
    return modes[0], f"sentence-transformers config {config.parent.name}/config.json"


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector per sequence from the last hidden states, ignoring padding."""
    if mode == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "mean":
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    if mode == "max":
        return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    raise ValueError(f"unknown pooling {mode!r}")


class TextClassifier(nn.Module):
    """encoder -> pooling -> dropout -> linear head; ``forward`` returns ``.logits`` like HF."""

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str, dropout: float) -> None:
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused: saves compute, and DDP rejects unused parameters
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    @property
    def config(self) -> Any:
        return self.encoder.config

    def set_attn_implementation(self, name: str) -> None:
        self.encoder.set_attn_implementation(name)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              **extra).last_hidden_state
        return pool(hidden, attention_mask, self.pooling)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> SequenceClassifierOutput:
        pooled = self.embed(input_ids, attention_mask, token_type_ids)
        return SequenceClassifierOutput(logits=self.head(self.dropout(pooled)))

    def save(self, out_dir: Path) -> None:
        """Encoder in Hugging Face format (config carries id2label), head and pooling beside it."""
        from safetensors.torch import save_file

        self.encoder.save_pretrained(out_dir, safe_serialization=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                  str(out_dir / HEAD_FILE))
        (out_dir / POOLING_FILE).write_text(json.dumps({"mode": self.pooling}, indent=2) + "\n",
                                            encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TextClassifier:
        from safetensors.torch import load_file
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        pooling = json.loads((path / POOLING_FILE).read_text(encoding="utf-8"))["mode"]
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the dropped pooler is reported as "newly initialised"
        try:
            encoder = AutoModel.from_pretrained(path, local_files_only=True)
        finally:
            hf_logging.set_verbosity(verbosity)
        model = cls(encoder, encoder.config.num_labels, pooling, dropout=0.0)
        model.head.load_state_dict(load_file(str(path / HEAD_FILE)))
        return model
