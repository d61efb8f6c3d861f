"""The service's knobs: params.yaml `serve:`, read with the project's one params loader."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from stages import artifacts
from stages.common import (
    PARAMS_FILE,
    NonNegativeFloat,
    Port,
    PositiveFloat,
    PositiveInt,
    Share,
    load_params,
    params_section,
)

ADMIN_TOKEN_ENV = "RETRAINER_ADMIN_TOKEN"  # guards POST /admin/reload; never in params.yaml


@params_section("serve")
@dataclass
class ServeParams:
    host: str = "127.0.0.1"
    port: Port = 8000
    precision: Literal["int8", "fp32", "fp16"] = "int8"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: PositiveInt | None = 1   # ONNX Runtime intra-op threads per call; None: all cores
    ort_spinning: bool = False        # busy-waiting pool threads starve the HTTP loop
    top_k: PositiveInt = 3
    max_batch: PositiveInt = 32       # texts per ONNX call; 1 = no micro-batching
    max_wait_ms: NonNegativeFloat = 0.0
    workers: PositiveInt = 2          # ONNX calls at once (inference threads)
    max_pad_share: Share = 0.15       # texts join a call only while its padding stays within
    max_texts: PositiveInt = 64
    max_chars: PositiveInt = 10000
    max_body_bytes: PositiveInt = 1_000_000
    parity_rows: PositiveInt = 64
    parity_atol: NonNegativeFloat = 0.01
    parity_min_agreement: Share = 0.99
    reload_poll_s: NonNegativeFloat = 5.0   # 0: reload only on SIGHUP or POST /admin/reload
    shutdown_timeout_s: NonNegativeFloat = 30.0
    log_dir: str = artifacts.PREDICTION_LOG_DIR.as_posix()
    log_text: bool = True
    flush_every: PositiveInt = 256
    flush_interval_s: PositiveFloat = 60.0

    @property
    def log_path(self) -> Path:
        return Path(self.log_dir)


def load_serve_params(path: Path = PARAMS_FILE, overrides: Mapping[str, Any] | None = None
                      ) -> ServeParams:
    """``serve:`` with ``overrides`` (command-line flags) applied, every bound checked."""
    return load_params("serve", ServeParams, path, overrides)
