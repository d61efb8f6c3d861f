"""The monitor's reader of the prediction log: a time window, skipping corrupt files.

The layout and listing are stages.prediction_log's, shared with the service's writer. Only the
partitions a window overlaps are read, one file at a time, so a corrupt file costs that file,
never the window. :func:`write_log_file` writes the same layout (for tests and benchmarks).
More: docs/monitoring.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.common import get_logger
from stages.prediction_log import (
    COLUMNS,
    EMPTY_TEXT_SHA256,
    log_schema,
    partition_dir,
    partition_files,
    write_part,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = get_logger(__name__)

# what the detectors need; text, id and request_id are read too, for the labelling sample
REQUIRED_COLUMNS = ("ts", "label", "confidence", "probs", "truncated", "n_tokens", "text_sha256")
OPTIONAL_COLUMNS = tuple(c for c in COLUMNS if c not in REQUIRED_COLUMNS)
SPECIAL_TOKENS = 2  # [CLS] + [SEP]: a text with no more tokens than this had no content


def write_log_file(log_dir: Path, rows: pd.DataFrame) -> list[Path]:
    """Append ``rows`` (log columns; ``ts`` tz-aware) as one new file per hour partition."""
    import pyarrow as pa

    written = []
    rows = rows.assign(ts=rows["ts"].dt.floor("ms"))  # the schema stores milliseconds
    # a column the rows do not have is null (out_of_scope and oos_score of a model without detector)
    rows = rows.assign(**{c: None for c in COLUMNS if c not in rows.columns})
    hours = rows["ts"].dt.floor("h")
    for hour, part in rows.groupby(hours, sort=True):
        table = pa.Table.from_pandas(part.reset_index(drop=True), schema=log_schema(),
                                     preserve_index=False)
        written.append(write_part(partition_dir(log_dir, hour.to_pydatetime()), table))
    return written


@dataclass
class Window:
    """The log rows of one time window, as arrays the detectors use."""

    start: datetime
    end: datetime
    frame: pd.DataFrame                       # one row per prediction, log columns
    files: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "error"}

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def name(self) -> str:
        return f"{self.start:%Y%m%dT%H%MZ}_{self.end:%Y%m%dT%H%MZ}"

    def probs(self) -> np.ndarray:
        import numpy as np

        return np.stack(self.frame["probs"].to_numpy()).astype(np.float32)

    def embeddings(self) -> np.ndarray | None:
        """Rows that logged an embedding; None when none did (an older, logits-only model)."""
        import numpy as np

        col = self.frame.get("embedding")
        if col is None:
            return None
        present = [e for e in col if e is not None and len(e)]
        return np.stack(present).astype(np.float32) if present else None

    def out_of_scope(self) -> np.ndarray | None:
        """The out-of-scope flags of the rows that logged one; None when none did (a champion
        without a detector, or a log written before out-of-scope detection)."""
        import pandas as pd

        col = self.frame.get("out_of_scope")
        if col is None:
            return None
        flags = col[pd.notna(col)]
        return flags.astype(bool).to_numpy() if len(flags) else None

    def empty_mask(self) -> np.ndarray:
        """Empty texts, known from hashes and token counts alone (no raw text needed)."""
        return ((self.frame["text_sha256"] == EMPTY_TEXT_SHA256).to_numpy()
                | (self.frame["n_tokens"].to_numpy() <= SPECIAL_TOKENS))


def hour_partitions(log_dir: Path, start: datetime, end: datetime) -> list[Path]:
    """Existing hour partitions that overlap [start, end)."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    found = []
    while hour < end:
        part = partition_dir(log_dir, hour)
        if part.is_dir():
            found.append(part)
        hour += timedelta(hours=1)
    return found


def read_file(path: Path, n_labels: int | None) -> pd.DataFrame:
    """One log file as a DataFrame; raises ValueError for a file that is not a usable log."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)  # a single file: no hive partition columns are added
    names = set(pf.schema_arrow.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"missing column(s) {missing}")
    table = pf.read(columns=[c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in names])
    frame = table.to_pandas()
    if n_labels is not None and len(frame):
        widths = frame["probs"].map(lambda p: -1 if p is None else len(p))
        if (widths != n_labels).any():
            raise ValueError(f"probs of width {sorted(set(widths))} where the reference has "
                             f"{n_labels} classes (a model with another label set?)")
    return frame


def read_window(log_dir: Path, start: datetime, end: datetime,
                n_labels: int | None = None) -> Window:
    """Predictions logged in [start, end); unreadable files are skipped with a warning."""
    import pandas as pd

    frames, skipped, files = [], [], 0
    for part in hour_partitions(log_dir, start, end):
        for path in partition_files(part):
            files += 1
            try:
                frames.append(read_file(path, n_labels))
            except Exception as exc:  # pyarrow raises many types for a damaged file
                log.warning("skipping unreadable log file %s: %s", path, exc)
                skipped.append({"path": str(path), "error": str(exc)[:300]})
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=list(REQUIRED_COLUMNS))
    if len(frame):
        ts = pd.to_datetime(frame["ts"], utc=True)
        frame = frame[(ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))].reset_index(drop=True)
        frame = frame[frame["probs"].notna()].reset_index(drop=True)
    log.info("window %s..%s: %d predictions from %d file(s), %d skipped", f"{start:%Y-%m-%d %H:%M}",
             f"{end:%Y-%m-%d %H:%M}", len(frame), files, len(skipped))
    return Window(start, end, frame, files, skipped)


def as_utc(value: Any) -> datetime:
    """A datetime (naive means UTC) or ISO string, in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
