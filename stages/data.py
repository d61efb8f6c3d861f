"""Dataset helpers shared by the stages that read the splits (the paths are in stages.artifacts).

One normaliser decides when two texts are "the same message" (duplicates, leakage, the split
key, the champion's training-data fingerprint), so those four can never disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from stages.artifacts import split_path
from stages.io import read_parquet

if TYPE_CHECKING:
    import pandas as pd

FINGERPRINT_SCHEME = "sha256(normalise_text(text))[:16]"


def load_split(name: str) -> pd.DataFrame:
    """One of the splits (``data/splits/<name>.parquet``); missing: run the split stage."""
    return read_parquet(split_path(name), f"split '{name}'", fix="run `dvc repro split` first")


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
