"""Dataset paths and helpers shared by the stages that read the splits.

One normaliser decides when two texts are "the same message" (duplicates, leakage, the split
key, the champion's training-data fingerprint), so those four can never disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from stages.common import StageError

if TYPE_CHECKING:
    import pandas as pd

SPLITS_DIR = Path("data/splits")
SPLIT_NAMES = ("train", "val", "test")
# the file inside a checkpoint (and so inside the champion) naming the rows it learned from
TRAINING_DATA_FILE = "training_data.json"
FINGERPRINT_SCHEME = "sha256(normalise_text(text))[:16]"


def split_path(name: str) -> Path:
    return SPLITS_DIR / f"{name}.parquet"


def load_split(name: str) -> pd.DataFrame:
    import pandas as pd

    path = split_path(name)
    if not path.is_file():
        raise StageError(f"split '{name}' not found", where=str(path),
                         fix="run `dvc repro split` first")
    return pd.read_parquet(path)


def normalise_text(text: str) -> str:
    """The key under which two texts count as duplicates: case-folded, whitespace collapsed."""
    return " ".join(str(text).casefold().split())


def text_fingerprint(text: str) -> str:
    """A short, one-way hash of a text's normalised form (no customer text in the artifact)."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()[:16]


def training_data_record(splits: dict[str, Iterable[str]]) -> dict:
    """What a checkpoint stores about the texts it learned from (train) and was selected on (val).

    Both count as "seen": val picked the best epoch. Sorted, deduplicated hashes only.
    """
    keys: set[str] = set()
    rows = {}
    for name, texts in splits.items():
        texts = list(texts)
        rows[name] = len(texts)
        keys.update(text_fingerprint(t) for t in texts)
    return {"scheme": FINGERPRINT_SCHEME, "rows": rows, "fingerprints": sorted(keys)}


def seen_fingerprints(record: dict | None) -> set[str] | None:
    """The set of text fingerprints in a training-data record; None when it is unknown."""
    if not record or record.get("scheme") != FINGERPRINT_SCHEME:
        return None
    return set(record.get("fingerprints") or [])
