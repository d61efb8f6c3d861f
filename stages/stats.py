"""Statistics for the gate: is the candidate really better (or not worse) than the champion?

Paired tests on the same test rows: :func:`paired_bootstrap` (vectorised, one ``bincount`` per
block of resamples) and :func:`mcnemar_exact`. Numpy only, so the gate stays quick to start.
More: docs/gates.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# resamples per block: at most CHUNK, and at most MAX_DRAWS row draws (about 20 bytes each), so
# memory stays flat whatever n_resamples and the test-set size are
CHUNK = 125
MAX_DRAWS = 2_500_000


def encode(values: Sequence[Any], labels: Sequence[str]) -> np.ndarray:
    """Class codes 0..K-1 in ``labels`` order; anything not in ``labels`` becomes K ("other").

    A prediction outside the label set (a champion trained on an older label set) is simply wrong:
    it counts as a miss for the true class and as a prediction of no gated class.
    """
    index = {label: i for i, label in enumerate(labels)}
    other = len(index)
    return np.fromiter((index.get(str(v), other) for v in values), dtype=np.int64,
                       count=len(values))


# bincount bins per block of resamples (B x K x (K+1)): caps memory for many-class problems
MAX_BINS = 1 << 22


def confusions(cells: np.ndarray, k: int) -> np.ndarray:
    """(B, n) confusion-cell codes ``true * (K+1) + pred`` -> (B, K, K+1) confusion matrices.

    One ``bincount`` for the whole block: each resample's cells are shifted into their own range.
    Columns are predicted classes plus "other" (a prediction outside the label set).
    """
    b, size = cells.shape[0], k * (k + 1)
    flat = cells + (np.arange(b, dtype=np.int64) * size)[:, None]
    return np.bincount(flat.ravel(), minlength=b * size).reshape(b, k, k + 1)


def scores_from_confusion(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Macro-F1 and accuracy of each (K, K+1) confusion matrix, as sklearn computes them.

    Macro-F1 is over the K gated classes with ``zero_division=0``:
    F1_c = 2 TP / (2 TP + FP + FN) = 2 TP / (true_c + predicted_c), and a class never seen and
    never predicted scores 0. "other" is no class: it only adds misses.
    """
    k = conf.shape[-2]
    tp = np.diagonal(conf[..., :k], axis1=-2, axis2=-1).astype(np.float64)
    denom = (conf.sum(axis=-1) + conf[..., :k].sum(axis=-2)).astype(np.float64)
    f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(denom), where=denom > 0)
    total = conf.sum(axis=(-2, -1))
    return f1.mean(axis=-1), tp.sum(axis=-1) / np.maximum(total, 1)


def scores(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Macro-F1 and accuracy of each row of (B, n) code arrays (see scores_from_confusion)."""
    return scores_from_confusion(confusions(y_true * (k + 1) + y_pred, k))


def paired_bootstrap(y_true: Sequence[Any], pred_a: Sequence[Any], pred_b: Sequence[Any],
                     labels: Sequence[str], n_resamples: int = 1000, seed: int = 42,
                     confidence: float = 0.95) -> dict[str, Any]:
    """Paired bootstrap of ``metric(a) - metric(b)`` for macro-F1 and accuracy.

    The same resampled rows score both models (that is what makes it paired: row difficulty
    cancels out). Same inputs and seed give the same CI on every machine (numpy's PCG64).
    Returns ``{"macro_f1": {"a", "b", "diff", "ci95": [lo, hi]}, "accuracy": {...},
    "n", "n_resamples", "seed", "confidence"}``; CIs are percentile intervals.
    """
    labels = list(labels)
    k = len(labels)
    t = encode(y_true, labels)
    if (t == k).any():
        unknown = sorted({str(v) for v, c in zip(y_true, t, strict=True) if c == k})
        raise ValueError(f"true labels not in the label set: {unknown[:5]}")
    a, b = encode(pred_a, labels), encode(pred_b, labels)
    n = len(t)
    if n == 0:
        raise ValueError("paired_bootstrap needs at least one row")
    if not len(a) == len(b) == n:
        raise ValueError("y_true, pred_a and pred_b must have the same length")
    rng = np.random.default_rng(seed)
    cells_a, cells_b = t * (k + 1) + a, t * (k + 1) + b
    chunk = max(1, min(CHUNK, MAX_DRAWS // n, MAX_BINS // (k * (k + 1))))
    diffs: dict[str, list[np.ndarray]] = {"macro_f1": [], "accuracy": []}
    done = 0
    while done < n_resamples:
        size = min(chunk, n_resamples - done)
        idx = rng.integers(0, n, size=(size, n), dtype=np.int32)
        f1_a, acc_a = scores_from_confusion(confusions(cells_a[idx], k))
        f1_b, acc_b = scores_from_confusion(confusions(cells_b[idx], k))
        diffs["macro_f1"].append(f1_a - f1_b)
        diffs["accuracy"].append(acc_a - acc_b)
        done += size
    result: dict[str, Any] = {"n": n, "n_resamples": n_resamples, "seed": seed,
                              "confidence": confidence}
    full_a = scores(t[None, :], a[None, :], k)
    full_b = scores(t[None, :], b[None, :], k)
    tail = (1 - confidence) / 2 * 100
    for i, name in enumerate(("macro_f1", "accuracy")):
        va, vb = float(full_a[i][0]), float(full_b[i][0])
        if n_resamples > 0:
            lo, hi = np.percentile(np.concatenate(diffs[name]), [tail, 100 - tail])
            ci = [float(lo), float(hi)]
        else:
            ci = [float("nan"), float("nan")]
        result[name] = {"a": va, "b": vb, "diff": va - vb, "ci95": ci}
    return result


def binomial_two_sided_half(successes: int, trials: int) -> float:
    """Exact two-sided binomial test p-value at p = 0.5: min(1, 2 P(X <= min(k, n - k))).

    Integer arithmetic, so exact for any n; equals ``scipy.stats.binomtest(k, n).pvalue`` (for
    a symmetric null, "as or less likely than observed" is both tails) without the ~1 s scipy.stats
    import on every gate run.
    """
    if trials == 0:
        return 1.0
    m = min(successes, trials - successes)
    term, tail = 1, 1  # C(n, 0)
    for i in range(1, m + 1):
        term = term * (trials - i + 1) // i
        tail += term
    return min(1.0, 2 * tail / 2**trials)


def mcnemar_exact(y_true: Sequence[Any], pred_a: Sequence[Any],
                  pred_b: Sequence[Any]) -> dict[str, Any]:
    """McNemar's exact test: two-sided binomial test of the discordant pairs at p = 0.5.

    ``a_only`` = rows only model a gets right, ``b_only`` = rows only b gets right. With no
    discordant rows at all the models cannot be told apart: p = 1.
    """
    t = np.asarray([str(v) for v in y_true])
    ok_a = t == np.asarray([str(v) for v in pred_a])
    ok_b = t == np.asarray([str(v) for v in pred_b])
    a_only = int((ok_a & ~ok_b).sum())
    b_only = int((~ok_a & ok_b).sum())
    discordant = a_only + b_only
    return {"a_only": a_only, "b_only": b_only, "discordant": discordant,
            "p_value": binomial_two_sided_half(a_only, discordant)}
