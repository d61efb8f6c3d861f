"""The prediction log's contract: its schema and partition layout, shared by writer and reader.

serve.predlog writes it, monitor.log reads it; hive-style UTC-hour partitions::

    <log dir>/date=YYYY-MM-DD/hour=HH/part-<unix ms>-<8 hex>.parquet

Files are written atomically; list them with :func:`log_files`, never a recursive glob.
More: docs/serving.md.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

# every column, in schema order (readable without importing pyarrow)
COLUMNS = ("ts", "request_id", "id", "text", "text_sha256", "label", "confidence", "probs",
           "model_version", "latency_ms", "truncated", "n_tokens", "embedding", "out_of_scope",
           "oos_score")
PART_FILES = "part-*.parquet"  # a finished file in a partition (temp dirs start with '.')
EMPTY_TEXT_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@functools.cache
def log_schema() -> pa.Schema:
    """The prediction-log schema (nullable only where a row may lack the value)."""
    import pyarrow as pa

    schema = pa.schema([
        pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("id", pa.string()),                       # the client's id, when it sent one
        pa.field("text", pa.string()),                     # null with serve.log_text: false
        pa.field("text_sha256", pa.string(), nullable=False),
        pa.field("label", pa.string()),                    # null: out of scope, detector label null
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("probs", pa.list_(pa.float32()), nullable=False),  # in labels.json order
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("latency_ms", pa.float32(), nullable=False),
        pa.field("truncated", pa.bool_(), nullable=False),
        pa.field("n_tokens", pa.int32(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32())),     # when the model has an embedding output
        pa.field("out_of_scope", pa.bool_()),              # null: the model has no oos detector
        pa.field("oos_score", pa.float32()),               # the detector's score (null: none)
    ])
    assert tuple(schema.names) == COLUMNS
    return schema


def text_sha256(text: str) -> str:
    """What the log keeps of a text when it may not keep the text (hex sha256 of its UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def partition_dir(log_dir: Path, ts: datetime) -> Path:
    """The hour partition a prediction made at ``ts`` belongs to."""
    ts = ts.astimezone(UTC)
    return Path(log_dir) / f"date={ts:%Y-%m-%d}" / f"hour={ts:%H}"


def write_part(partition: Path, table: pa.Table) -> Path:
    """``table`` as a new file in ``partition``, written atomically; returns its path."""
    import pyarrow.parquet as pq

    from stages.io import atomic_path

    path = partition / f"part-{int(time.time() * 1000)}-{secrets.token_hex(4)}.parquet"
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def partition_files(partition: Path) -> list[Path]:
    """The finished log files of one hour partition, in name order."""
    return sorted(Path(partition).glob(PART_FILES))


def log_files(log_dir: Path) -> list[Path]:
    """The finished log files, oldest partition first.

    A write under way sits in a hidden temp dir inside its partition (see ``atomic_path``), so a
    recursive ``*.parquet`` glob would list a half-written file; this one never does.
    """
    return sorted(Path(log_dir).glob(f"date=*/hour=*/{PART_FILES}"))


def read_log(log_dir: Path) -> pa.Table:
    """The whole log as one table (tests, docs examples); partition columns dropped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = log_files(log_dir)
    if not files:
        return log_schema().empty_table()
    return pa.concat_tables([pq.read_table(f, schema=log_schema()) for f in files])
