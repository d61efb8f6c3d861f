"""The service's prediction-log writer: buffers every served prediction, writes Parquet by hour.

Rows are buffered and written as a new file (temp file, then rename: a reader never sees half a
file) when ``flush_every`` rows are waiting, when the oldest waiting row is ``flush_interval_s``
old, and on shutdown (the service writes on a thread of its own). A crash loses at most the
rows still buffered (< ``flush_every``) and those of a write under way; SIGTERM
loses none. The schema and the partition layout are stages.prediction_log's (the monitor reads
the log through the same module): docs/serving.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from serve.metrics import ServeMetrics
from stages.common import get_logger
from stages.prediction_log import log_schema, partition_dir, text_sha256, write_part

log = get_logger(__name__)

MAX_BUFFERED = 100_000  # rows kept while writes fail (disk full); older ones are dropped


class PredictionLog:
    def __init__(self, root: Path, log_text: bool, flush_every: int, flush_interval_s: float,
                 metrics: ServeMetrics) -> None:
        self.root, self.log_text = Path(root), log_text
        self.flush_every, self.flush_interval_s = flush_every, flush_interval_s
        self.metrics = metrics
        self._rows: list[dict[str, Any]] = []
        self._oldest = 0.0
        self._lock = threading.Lock()  # append (event loop) vs flush (a worker thread)

    def append(self, ts: datetime, request_id: str, ids: Sequence[str | None],
               texts: Sequence[str], labels: Sequence[str | None], probs: Any,
               model_version: str, latency_ms: float, truncated: Sequence[bool],
               n_tokens: Sequence[int], embedding: Any | None, out_of_scope: Any | None = None,
               oos_score: Any | None = None) -> None:
        """Buffer one request's rows; ``out_of_scope``/``oos_score`` None: the model has no
        detector (logged as nulls)."""
        rows = [{"ts": ts, "request_id": request_id, "id": ids[i],
                 "text": texts[i] if self.log_text else None, "text_sha256": text_sha256(texts[i]),
                 "label": labels[i], "confidence": float(probs[i].max()),
                 "probs": probs[i].tolist(), "model_version": model_version,
                 "latency_ms": latency_ms, "truncated": truncated[i], "n_tokens": n_tokens[i],
                 "embedding": None if embedding is None else embedding[i].tolist(),
                 "out_of_scope": None if out_of_scope is None else bool(out_of_scope[i]),
                 "oos_score": None if oos_score is None else float(oos_score[i])}
                for i in range(len(texts))]
        with self._lock:
            if not self._rows:
                self._oldest = time.monotonic()
            self._rows.extend(rows)
            self.metrics.log_buffered.set(len(self._rows))

    def warm(self) -> None:
        """Convert one row now: pyarrow's first timestamp conversion imports pandas (~0.2 s
        holding the GIL), which must not happen in the middle of serving."""
        pa.array([datetime.now(UTC)], log_schema().field("ts").type)

    def due(self) -> bool:
        """Whether a flush should run now (enough rows, or the oldest has waited long enough)."""
        with self._lock:
            return bool(self._rows) and (len(self._rows) >= self.flush_every or
                                         time.monotonic() - self._oldest >= self.flush_interval_s)

    def flush(self) -> int:
        """Write every buffered row: one new file per hour partition. Returns rows written."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        written = 0
        try:
            for partition, part in partitions(self.root, rows).items():
                write_part(partition, pa.Table.from_pylist(part, schema=log_schema()))
                written += len(part)
        except (OSError, pa.ArrowException) as exc:  # disk full, permissions: keep the rows
            self.metrics.log_errors.inc()
            log.error("prediction log write failed (%s): keeping %d rows to retry", exc,
                      len(rows) - written)
            with self._lock:
                self._rows = (rows[written:] + self._rows)[-MAX_BUFFERED:]
        self.metrics.log_rows.inc(written)
        with self._lock:
            self.metrics.log_buffered.set(len(self._rows))
            if self._rows:
                self._oldest = time.monotonic()
        return written


def partitions(root: Path, rows: list[dict[str, Any]]) -> dict[Path, list[dict[str, Any]]]:
    """``rows`` grouped by the hour partition of their ``ts``."""
    out: dict[Path, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(partition_dir(root, row["ts"]), []).append(row)
    return out
