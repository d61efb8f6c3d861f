"""Dataset helpers shared by the stages that read the splits (the paths are in stages.artifacts).

One normaliser decides when two texts are "the same message" (duplicates, leakage, the split
key, the champion's training-data fingerprint), so those four can never disagree.
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from stages.artifacts import split_path
from stages.io import read_parquet

if TYPE_CHECKING:
    import pandas as pd

# v2: the Unicode-aware normaliser; a v1 record (older champions) reads as "unknown", never as a
# wrong match
FINGERPRINT_SCHEME = "sha256(normalise_text_v2(text))[:16]"


def load_split(name: str) -> pd.DataFrame:
    """One of the splits (``data/splits/<name>.parquet``); missing: run the split stage."""
    return read_parquet(split_path(name), f"split '{name}'", fix="run `dvc repro split` first")


@functools.cache
def _patterns() -> tuple[Any, Any, Any]:
    import regex  # Unicode property classes (\p{Cf}); a dependency of transformers anyway

    return (
        # format (zero-width spaces and joiners, direction marks, BOM) and control characters,
        # except the whitespace controls, which become spaces below
        regex.compile(r"[\p{Cf}\p{Cc}--\s]", regex.V1),
        regex.compile(r"\p{Pd}"),  # every dash (non-breaking hyphen, en/em dash) is "-"
        # a run of punctuation (with spaces inside it) counts as its first mark: "?!!" -> "?"
        regex.compile(r"(\p{P})(?:\s*\p{P})+"),
    )


def normalise_text(text: str) -> str:
    """The key under which two texts count as the same message (duplicates, leakage, the split
    key, the training-data fingerprint): Unicode NFKC, zero-width/format/control characters
    removed, dashes unified, punctuation and whitespace runs collapsed, punctuation at either end
    dropped, case-folded. A text that is blank under this key carries no content at all.
    """
    drop, dash, punct_run = _patterns()
    text = unicodedata.normalize("NFKC", str(text))
    text = dash.sub("-", drop.sub("", text))
    text = punct_run.sub(r"\1", " ".join(text.casefold().split()))
    return _strip_punct(text)


def _strip_punct(text: str) -> str:
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or unicodedata.category(text[start])[0] == "P"):
        start += 1
    while end > start and (text[end - 1].isspace() or unicodedata.category(text[end - 1])[0] == "P"):
        end -= 1
    return text[start:end]


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
