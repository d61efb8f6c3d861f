"""Scoring a table of texts with the exported ONNX model: what goes in, what comes out.

Shared by ``commands.predict`` (one file, streamed in chunks) and ``scale.score`` (one shard per
worker), so both read the same input and write the same scores. In: a table with a ``text``
column and an optional ``id``. Out: ``id`` (else ``text``), ``label`` and one ``prob_<class>``
column per class (6 decimals), in the input's row order. The scoring loop itself is
:func:`stages.onnx_session.score_texts`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stages.common import StageError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from stages.onnx_session import OnnxModel


def text_table(df: pd.DataFrame, what: str, where: str) -> pd.DataFrame:
    """``df`` with its ``text`` column as strings (missing texts are empty); StageError without one.

    ``what`` names the table in the message ("input", "shard"), ``where`` its file.
    """
    if "text" not in df.columns:
        raise StageError(f"{what} has no 'text' column (columns: {list(df.columns)})", where=where,
                         fix="name the column holding the texts 'text'")
    df["text"] = df["text"].fillna("").astype(str)
    return df


def scores_frame(df: pd.DataFrame, labels: list[str], probs: np.ndarray) -> pd.DataFrame:
    """The output rows for ``df`` scored ``probs``: its id (else text), label, prob_<class>..."""
    import numpy as np
    import pandas as pd

    keep = "id" if "id" in df.columns else "text"
    out = pd.DataFrame({keep: df[keep].to_numpy()})
    out["label"] = np.asarray(labels, dtype=object)[probs.argmax(axis=1)]
    for j, name in enumerate(labels):
        out[f"prob_{name}"] = probs[:, j].round(6)
    return out


def score_table(model: OnnxModel, df: pd.DataFrame, batch_size: int,
                chunk_rows: int | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """``df`` (a :func:`text_table`) scored: the output rows and the counts (rows, truncated,
    empty_texts). ``chunk_rows`` bounds the texts tokenised at a time (None: all at once)."""
    import numpy as np

    from stages.onnx_session import score_texts

    texts = df["text"].tolist()
    step = chunk_rows or max(len(texts), 1)
    probs = np.empty((len(texts), len(model.labels)), dtype=np.float32)
    truncated = empty = 0
    for lo in range(0, len(texts), step):
        scored = score_texts(model, texts[lo:lo + step], batch_size)
        probs[lo:lo + len(scored.probs)] = scored.probs
        truncated, empty = truncated + scored.truncated, empty + scored.empty
    counts = {"rows": len(texts), "truncated": truncated, "empty_texts": empty}
    return scores_frame(df, model.labels, probs), counts
