"""File helpers shared by the stages: atomic writes, JSON and pipeline Parquet reading, hashing.

Tables from users (CSV, JSONL, Parquet; paths or URLs) are read by :mod:`stages.tables`.

Every output is written to a temporary sibling and renamed into place, so a killed or failed
stage never leaves a half-written file that DVC or the next stage could mistake for a result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.common import StageError

if TYPE_CHECKING:
    import pandas as pd

# a temp dir older than this process belongs to an earlier run that was killed (DVC's repo lock
# keeps two runs of a stage from overlapping), so it is safe to remove
PROCESS_START = time.time()
_MKDTEMP_NAME = "[a-z0-9_]{8}"  # the random part tempfile.mkdtemp puts between prefix and suffix


def remove_stale_temp_dirs(parent: str | Path, prefix: str, suffix: str = "") -> list[Path]:
    """Remove ``parent/<prefix>XXXXXXXX<suffix>`` temp dirs left by a killed earlier run.

    Only directories whose name is exactly what ``mkdtemp(prefix, suffix)`` makes, and only those
    last modified before this process started, so a running stage's own staging is never touched.
    Logs each removal (a killed export leaves ~90 MB behind with MiniLM).
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    pattern = re.compile(re.escape(prefix) + _MKDTEMP_NAME + re.escape(suffix))
    removed = []
    for entry in parent.iterdir():
        if not pattern.fullmatch(entry.name) or not entry.is_dir() or entry.is_symlink():
            continue
        try:
            if entry.stat().st_mtime >= PROCESS_START:
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    if removed:
        from stages.common import get_logger

        get_logger("io").info("removed %d stale temp dir(s) left by an interrupted run: %s",
                              len(removed), ", ".join(str(p) for p in removed))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and for directories (the block creates whichever it needs).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(path.parent, f".{path.name}.", ".tmp")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_csv(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise StageError(f"file not found: {path}", fix="run the stage that produces it (dvc repro)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = f", line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise StageError(f"{path.name} is not valid JSON (truncated or damaged): {exc}",
                         where=f"{path}{line}",
                         fix=f"restore it (`git checkout -- {path}` or `dvc checkout`), or re-run "
                         "the stage that writes it") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: str | Path) -> str:
    """One hash for a file or a whole directory (relative names and contents)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def read_parquet(path: str | Path, what: str, fix: str = "run `dvc repro` (the stage that "
                 "writes it)") -> pd.DataFrame:
    """A Parquet file the pipeline wrote (ingested data, splits, predictions), read one way.

    Missing or damaged, it is a StageError naming ``what`` and ``path``; ``fix`` says which stage
    to re-run. (Tables from outside the pipeline, in any format, go through
    :func:`stages.tables.read_table`.)
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise StageError(f"{what} file not found", where=str(path), fix=fix)
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise StageError(f"{what} file could not be read as Parquet: {exc}", where=str(path),
                         fix=f"{fix}; never edit Parquet by hand") from None
