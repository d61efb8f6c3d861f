"""Dataset paths and helpers shared by the stages that read the splits."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stages.common import StageError

if TYPE_CHECKING:
    import pandas as pd

SPLITS_DIR = Path("data/splits")
SPLIT_NAMES = ("train", "val", "test")


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
