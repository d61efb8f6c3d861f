"""Classification metrics, computed one way for every stage (train's val, evaluate, quantize)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str],
                           labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted F1 and per-class precision/recall/F1/support, over ``labels``."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels = list(labels)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                         zero_division=0)), 6),
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
    stage runs on a GPU box without scikit-learn."""
    import numpy as np

    t, p = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for label in labels:
        tp = np.sum((t == label) & (p == label))
        wrong = np.sum((t == label) != (p == label))  # false positives + false negatives
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + wrong))
    return float(np.mean(scores))
