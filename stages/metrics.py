"""Classification metrics, computed one way for every stage (train's val, evaluate, gate, quantize).

One macro-F1 (:func:`macro_f1`, numpy: the gate's bootstrap computes the same formula over many
resamples in stages.stats) and one softmax, for the PyTorch and the ONNX Runtime side alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str],
                           labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted F1 and per-class precision/recall/F1/support, over ``labels``."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels = list(labels)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
        "macro_f1": round(macro_f1(y_true, y_pred, labels), 6),
        "weighted_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="weighted",
                                            zero_division=0)), 6),
        "n": len(y_true),
        "per_class": {
            label: {"precision": round(float(p[i]), 6), "recall": round(float(r[i]), 6),
                    "f1": round(float(f[i]), 6), "support": int(s[i])}
            for i, label in enumerate(labels)
        },
    }


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> float:
    """Macro-F1 over ``labels`` (as sklearn's, zero_division=0) in numpy alone, so that the train
    stage runs on a GPU box without scikit-learn; a prediction outside ``labels`` is a miss."""
    from stages import stats

    labels = list(labels)
    f1, _ = stats.scores(stats.encode(list(y_true), labels)[None, :],
                         stats.encode(list(y_pred), labels)[None, :], len(labels))
    return float(f1[0])


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits, row by row (shifted by the row max: no overflow)."""
    import numpy as np

    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
