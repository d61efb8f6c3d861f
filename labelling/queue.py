"""The labelling queue: batches of selected texts waiting for people, one CSV each.

    <labelling.queue>/<UTC time>-<strategy>.csv
        id, text, suggested_label, suggested_score, model_version, strategy, rank, selected_at

Written by ``python -m labelling.select``; read by the next selection (never queue a text twice)
and by ``labelling.imports`` (the text and the model's suggestion of a labelled id). A queued
text's id is ``log-`` + a hash of its normalised text, so the same message gets the same id from
any log row. The directory is git-ignored: queued texts are not data until they are labelled.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from stages.data import normalise_text

if TYPE_CHECKING:
    import pandas as pd

QUEUE_COLUMNS = ("id", "text", "suggested_label", "suggested_score", "model_version", "strategy",
                 "rank", "selected_at")


def text_id(text: str) -> str:
    """The id a logged text gets in the dataset (stable: one id per normalised text)."""
    return "log-" + hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()[:16]


def stamp(now: datetime | None = None) -> str:
    """A sortable, unique file-name prefix: UTC time plus 4 random hex digits."""
    return f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def queued(queue_dir: str | Path) -> pd.DataFrame:
    """Every queued row, oldest batch first (an empty frame when nothing is queued)."""
    import pandas as pd

    from stages.tables import read_table

    files = sorted(Path(queue_dir).glob("*.csv")) if Path(queue_dir).is_dir() else []
    frames = [read_table(str(f), "labelling queue").assign(batch=f.name) for f in files]
    if not frames:
        return pd.DataFrame(columns=[*QUEUE_COLUMNS, "batch"], dtype="string")
    return pd.concat(frames, ignore_index=True).astype({"id": "string", "text": "string"})


def write_batch(queue_dir: str | Path, rows: pd.DataFrame, strategy: str) -> Path:
    """``rows`` (QUEUE_COLUMNS) as a new queue file, written atomically; returns its path."""
    from stages.io import atomic_path

    path = Path(queue_dir) / f"{stamp()}-{strategy}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        rows[list(QUEUE_COLUMNS)].to_csv(tmp, index=False)
    return path
