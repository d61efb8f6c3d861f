"""Scoring a table of texts with the exported ONNX model: what goes in, what comes out.

Shared by ``commands.predict`` (one file, streamed in chunks) and ``scale.score`` (one shard per
worker), so both read the same input and write the same scores. In: a table with a ``text``
column and an optional ``id``. Out: ``id`` (else ``text``), ``label``, for a model with an
out-of-scope detector ``out_of_scope`` (bool) and ``oos_score``, and one ``prob_<class>`` column
per class (6 decimals), in the input's row order. An out-of-scope row's ``label`` is the
detector's label, or null when the detector's label is null; its probabilities are the model's.
A model exported before out-of-scope detection gets neither column. The scoring loop itself is
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


NO_DETECTOR_WARNING = ("%s was exported before out-of-scope detection: the scores have no "
                       "out_of_scope and oos_score columns (re-export with `dvc repro export "
                       "quantize`)")


def scores_frame(df: pd.DataFrame, labels: list[str], probs: np.ndarray,
                 out_of_scope: np.ndarray | None = None, oos_scores: np.ndarray | None = None,
                 oos_label: str | None = None) -> pd.DataFrame:
    """The output rows for ``df`` scored ``probs``: its id (else text), label, [out_of_scope,
    oos_score,] prob_<class>... With ``out_of_scope`` flags, flagged rows are labelled
    ``oos_label`` (None: null)."""
    import numpy as np
    import pandas as pd

    keep = "id" if "id" in df.columns else "text"
    out = pd.DataFrame({keep: df[keep].to_numpy()})
    answered = np.asarray(labels, dtype=object)[probs.argmax(axis=1)]
    if out_of_scope is not None:
        answered[np.asarray(out_of_scope, dtype=bool)] = oos_label
    # a string column even where every label is null: shards then share one Parquet schema
    out["label"] = pd.array(answered, dtype="string") if out_of_scope is not None else answered
    if out_of_scope is not None:
        out["out_of_scope"] = np.asarray(out_of_scope, dtype=bool)
        out["oos_score"] = np.asarray(oos_scores, dtype=np.float64).round(6)
    for j, name in enumerate(labels):
        out[f"prob_{name}"] = probs[:, j].round(6)
    return out


def score_table(model: OnnxModel, df: pd.DataFrame, batch_size: int,
                chunk_rows: int | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """``df`` (a :func:`text_table`) scored: the output rows and the counts (rows, truncated,
    empty_texts, and out_of_scope for a model with a detector). ``chunk_rows`` bounds the texts
    tokenised at a time (None: all at once)."""
    import numpy as np

    from stages.onnx_session import score_texts

    texts = df["text"].tolist()
    step = chunk_rows or max(len(texts), 1)
    probs = np.empty((len(texts), len(model.labels)), dtype=np.float32)
    detecting = model.oos is not None
    flags = np.zeros(len(texts), dtype=bool) if detecting else None
    scores = np.zeros(len(texts), dtype=np.float64) if detecting else None
    truncated = empty = 0
    for lo in range(0, len(texts), step):
        scored = score_texts(model, texts[lo:lo + step], batch_size)
        hi = lo + len(scored.probs)
        probs[lo:hi] = scored.probs
        if flags is not None and scores is not None:
            flags[lo:hi], scores[lo:hi] = scored.out_of_scope, scored.oos_scores
        truncated, empty = truncated + scored.truncated, empty + scored.empty
    counts = {"rows": len(texts), "truncated": truncated, "empty_texts": empty}
    if flags is not None:
        counts["out_of_scope"] = int(flags.sum())
    oos_label = model.oos.label if model.oos is not None else None
    return scores_frame(df, model.labels, probs, flags, scores, oos_label), counts
