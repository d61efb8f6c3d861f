"""The service's knobs: params.yaml `serve:`, read with the project's one params loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stages import artifacts
from stages.common import PARAMS_FILE, StageError, load_params

ADMIN_TOKEN_ENV = "RETRAINER_ADMIN_TOKEN"  # guards POST /admin/reload; never in params.yaml


@dataclass
class ServeParams:
    host: str = "127.0.0.1"
    port: int = 8000
    precision: Literal["int8", "fp32", "fp16"] = "int8"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = 1           # ONNX Runtime intra-op threads per call; None: all cores
    ort_spinning: bool = False        # busy-waiting pool threads starve the HTTP loop
    top_k: int = 3
    max_batch: int = 32               # texts per ONNX call; 1 = no micro-batching
    max_wait_ms: float = 0.0
    workers: int = 2                  # ONNX calls at once (inference threads)
    max_pad_share: float = 0.15       # texts join a call only while its padding stays within
    max_texts: int = 64
    max_chars: int = 10000
    max_body_bytes: int = 1_000_000
    parity_rows: int = 64
    parity_atol: float = 0.01
    parity_min_agreement: float = 0.99
    reload_poll_s: float = 5.0        # 0: reload only on SIGHUP or POST /admin/reload
    shutdown_timeout_s: float = 30.0
    log_dir: str = artifacts.PREDICTION_LOG_DIR.as_posix()
    log_text: bool = True
    flush_every: int = 256
    flush_interval_s: float = 60.0

    def check(self, where: str = f"{PARAMS_FILE}:serve") -> None:
        """Refuse values that cannot work, naming the key."""
        positive = {"max_batch": self.max_batch, "max_texts": self.max_texts,
                    "max_chars": self.max_chars, "max_body_bytes": self.max_body_bytes,
                    "top_k": self.top_k, "flush_every": self.flush_every,
                    "parity_rows": self.parity_rows, "flush_interval_s": self.flush_interval_s,
                    "workers": self.workers}
        if self.threads is not None:
            positive["threads"] = self.threads
        for key, value in positive.items():
            if value <= 0:
                raise StageError(f"serve.{key} must be positive, got {value}", where=where)
        for key, value in {"max_wait_ms": self.max_wait_ms, "reload_poll_s": self.reload_poll_s,
                           "shutdown_timeout_s": self.shutdown_timeout_s,
                           "parity_atol": self.parity_atol}.items():
            if value < 0:
                raise StageError(f"serve.{key} must not be negative, got {value}", where=where)
        for key, value in {"parity_min_agreement": self.parity_min_agreement,
                           "max_pad_share": self.max_pad_share}.items():
            if not 0 <= value <= 1:
                raise StageError(f"serve.{key} must be within [0, 1], got {value}", where=where)
        if not 0 <= self.port <= 65535:
            raise StageError(f"serve.port {self.port} is not a TCP port", where=where)

    @property
    def log_path(self) -> Path:
        return Path(self.log_dir)


def load_serve_params(path: Path = PARAMS_FILE) -> ServeParams:
    params = load_params("serve", ServeParams, path)
    params.check(f"{path}:serve")
    return params
