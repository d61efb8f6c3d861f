"""Out-of-scope figures of one model on the test split: what evaluate writes under eval.json's ``oos``.

A test row labelled with the detector's ``label`` is an *out-of-scope row* (a text the model should
not answer); every other row is *in scope*. Per model (candidate, champion):

    in_scope_flagged          share of in-scope rows the detector answers "out of scope"
    accuracy_with_abstention  in-scope rows answered right; an abstention counts as wrong
    macro_f1_with_abstention  the same as macro-F1 (an abstention is a miss of the true class)
    selective_accuracy        accuracy on the in-scope rows the detector keeps
    oos_recall, oos_precision out-of-scope rows flagged / flagged rows that are out of scope
    auroc, fpr_at_95_tpr      how well the score separates the two kinds (threshold-free)

The last four need out-of-scope rows in the test split and are left out without them. ``methods``
compares every score the detector has a threshold for on the same rows (stages.oos_detector).
More: docs/gates.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stages.metrics import macro_f1
from stages.oos_detector import auroc, fpr_at_recall, separation

if TYPE_CHECKING:
    import numpy as np

    from stages.oos_detector import Detector

# an abstention as a prediction: no class has this name, so it is a miss for the true class
ABSTAIN = "\0abstain"
EMBEDDING_METHODS = ("mahalanobis", "knn")


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _share(flags: np.ndarray) -> float | None:
    return _round(flags.mean()) if len(flags) else None


def out_of_scope_rows(y_true: Sequence[Any], label: str | None) -> np.ndarray:
    """Which test rows are out-of-scope examples: labelled with the detector's ``label``.

    A detector whose label is null answers out-of-scope texts with no label, so no labelled row
    can be one."""
    import numpy as np

    values = np.asarray([str(v) for v in y_true], dtype=object)
    if label is None:
        return np.zeros(len(values), dtype=bool)
    return values == label


def abstention(y_true: np.ndarray, y_pred: np.ndarray, flags: np.ndarray,
               labels: Sequence[str]) -> dict[str, float | None]:
    """The in-scope figures: what answering "out of scope" costs on rows the model should answer.

    All arrays are the in-scope rows only."""
    import numpy as np

    if not len(y_true):
        return {"in_scope_flagged": None, "accuracy_with_abstention": None,
                "macro_f1_with_abstention": None, "selective_accuracy": None}
    answered = np.where(flags, ABSTAIN, y_pred)
    kept = ~flags
    return {
        "in_scope_flagged": _share(flags),
        "accuracy_with_abstention": _round((answered == y_true).mean()),
        "macro_f1_with_abstention": _round(macro_f1(list(y_true), list(answered), labels)),
        "selective_accuracy": _share(y_pred[kept] == y_true[kept]) if kept.any() else None,
    }


def detection(flags: np.ndarray, scores: np.ndarray, is_oos: np.ndarray) -> dict[str, float | None]:
    """How well the out-of-scope rows are caught (needs at least one of them)."""
    inside, outside = scores[~is_oos], scores[is_oos]
    return {
        "oos_recall": _share(flags[is_oos]),
        "oos_precision": _round((flags & is_oos).sum() / flags.sum()) if flags.any() else None,
        "auroc": _round(auroc(inside, outside)),
        "fpr_at_95_tpr": _round(fpr_at_recall(inside, outside)),
    }


def method_separation(detector: Detector, logits: np.ndarray, embeddings: np.ndarray | None,
                      is_oos: np.ndarray) -> dict[str, dict[str, Any]]:
    """Every score the detector has a threshold for, on the same rows, each at its own threshold.

    Scores that need the pooled embedding are left out when the model returns logits only."""
    out = {}
    for method in sorted(detector.thresholds):
        if method in EMBEDDING_METHODS and embeddings is None:
            continue
        scores = detector.score(logits, embeddings, method)
        out[method] = separation(scores[~is_oos], scores[is_oos], detector.thresholds[method])
    return out


def measure(detector: Detector, logits: np.ndarray, embeddings: np.ndarray | None,
            model_classes: list[str], y_true: Sequence[Any], y_pred: Sequence[str],
            is_oos: np.ndarray, labels: Sequence[str]
            ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(eval.json's figures for one model, its out-of-scope flags, its scores) on the test rows.

    ``model_classes``: the model's classes in logit order (the detector also flags a text the
    model assigns to its ``label`` class); ``labels``: the classes macro-F1 is taken over, as in
    the classification metrics."""
    import numpy as np

    flags, scores = detector.decide(logits, embeddings, model_classes)
    flags, scores = np.asarray(flags, dtype=bool), np.asarray(scores, dtype=np.float64)
    truth = np.asarray([str(v) for v in y_true], dtype=object)
    pred = np.asarray(list(y_pred), dtype=object)
    inside = ~is_oos
    figures: dict[str, Any] = {
        "method": detector.method, "threshold": _round(detector.threshold),
        "label": detector.label, "in_scope_rows": int(inside.sum()), "oos_rows": int(is_oos.sum()),
        **abstention(truth[inside], pred[inside], flags[inside], labels),
    }
    if is_oos.any():
        figures.update(detection(flags, scores, is_oos))
    figures["methods"] = method_separation(detector, logits, embeddings, is_oos)
    return figures, flags, scores
