"""The prediction log: every served prediction, append-only Parquet, partitioned by hour.

    <serve.log_dir>/date=YYYY-MM-DD/hour=HH/part-<unix ms>-<8 hex>.parquet

Rows are buffered and written as a new file (temp file, then rename: a reader never sees half a
file) when ``flush_every`` rows are waiting, when the oldest waiting row is ``flush_interval_s``
old, and on shutdown (the service writes on a thread of its own). A crash loses at most the
rows still buffered (< ``flush_every``) and those of a write under way; SIGTERM
loses none. The schema (:data:`SCHEMA`) is the monitoring side's contract: docs/serving.md.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from serve.metrics import ServeMetrics
from stages.common import get_logger
from stages.io import atomic_path

log = get_logger(__name__)

SCHEMA = pa.schema([
    pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("id", pa.string()),                       # the client's id, when it sent one
    pa.field("text", pa.string()),                     # null with serve.log_text: false
    pa.field("text_sha256", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("confidence", pa.float32(), nullable=False),
    pa.field("probs", pa.list_(pa.float32()), nullable=False),  # in labels.json order
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("latency_ms", pa.float32(), nullable=False),
    pa.field("truncated", pa.bool_(), nullable=False),
    pa.field("n_tokens", pa.int32(), nullable=False),
    pa.field("embedding", pa.list_(pa.float32())),     # when the model has an embedding output
])
MAX_BUFFERED = 100_000  # rows kept while writes fail (disk full); older ones are dropped


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
               texts: Sequence[str], labels: Sequence[str], probs: Any, model_version: str,
               latency_ms: float, truncated: Sequence[bool], n_tokens: Sequence[int],
               embedding: Any | None) -> None:
        rows = [{"ts": ts, "request_id": request_id, "id": ids[i],
                 "text": texts[i] if self.log_text else None, "text_sha256": text_sha256(texts[i]),
                 "label": labels[i], "confidence": float(probs[i].max()),
                 "probs": probs[i].tolist(), "model_version": model_version,
                 "latency_ms": latency_ms, "truncated": truncated[i], "n_tokens": n_tokens[i],
                 "embedding": None if embedding is None else embedding[i].tolist()}
                for i in range(len(texts))]
        with self._lock:
            if not self._rows:
                self._oldest = time.monotonic()
            self._rows.extend(rows)
            self.metrics.log_buffered.set(len(self._rows))

    def warm(self) -> None:
        """Convert one row now: pyarrow's first timestamp conversion imports pandas (~0.2 s
        holding the GIL), which must not happen in the middle of serving."""
        pa.array([datetime.now(UTC)], SCHEMA.field("ts").type)

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
            for (date, hour), part in partitions(rows).items():
                path = (self.root / f"date={date}" / f"hour={hour}" /
                        f"part-{int(time.time() * 1000)}-{secrets.token_hex(4)}.parquet")
                with atomic_path(path) as tmp:
                    pq.write_table(pa.Table.from_pylist(part, schema=SCHEMA), tmp)
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


def partitions(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        ts = row["ts"].astimezone(UTC)
        out.setdefault((ts.strftime("%Y-%m-%d"), ts.strftime("%H")), []).append(row)
    return out


def log_files(root: Path) -> list[Path]:
    """The finished log files, oldest partition first.

    A write under way sits in a hidden temp dir inside its partition (see ``atomic_path``), so a
    recursive ``*.parquet`` glob would list a half-written file; this one never does.
    """
    return sorted(Path(root).glob("date=*/hour=*/part-*.parquet"))


def read_log(root: Path) -> pa.Table:
    """The whole log as one table (tests, docs examples); partition columns dropped."""
    files = log_files(root)
    if not files:
        return SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(f, schema=SCHEMA) for f in files])
