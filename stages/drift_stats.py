"""Two-sample statistics that compare data with a reference: Jensen-Shannon divergence, the
Kolmogorov-Smirnov test and pairwise distances.

The validate stage (class mix and text lengths against the last accepted data profile) and the
drift monitor (a window of logged predictions against the champion's reference) both measure
through these, so a number means the same in metrics/data.json and in a drift report. Numpy at
the top; scipy only inside :func:`ks_test`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def aligned_counts(a: Mapping[str, float], b: Mapping[str, float],
                   order: Callable[[str], Any] = str) -> tuple[np.ndarray, np.ndarray]:
    """Two histograms ``{bin: count}`` as two arrays over their union of bins, sorted by
    ``order`` (a bin missing from one side counts 0 there)."""
    bins = sorted(set(a) | set(b), key=order)
    return (np.array([a.get(k, 0) for k in bins], dtype=float),
            np.array([b.get(k, 0) for k in bins], dtype=float))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence, base 2 (0 = same mix, 1 = disjoint), of two count or share
    vectors over the same classes; an empty side (all zeros) has no share anywhere."""
    p, q = p / (p.sum() or 1.0), q / (q.sum() or 1.0)
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / b[nz])).sum())

    return (kl(p, m) + kl(q, m)) / 2


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (the largest gap between the two CDFs) of two
    histograms over the same sorted bins; exact, and equal to :func:`ks_test`'s on the samples
    behind them. 0 when either side is empty."""
    if not a.sum() or not b.sum():
        return 0.0
    return float(np.abs(np.cumsum(a) / a.sum() - np.cumsum(b) / b.sum()).max())


def ks_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test of two samples: the statistic and its two-sided p-value
    (scipy's ``ks_2samp``: the exact distribution for small samples, asymptotic beyond)."""
    from scipy.stats import ks_2samp

    test = ks_2samp(a, b)
    return float(test.statistic), float(test.pvalue)


def squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``x`` and the rows of ``y`` (pass the same
    array twice for all pairs within one set), in their dtype; cancellation's tiny negatives
    clipped to 0.

    One matrix product (|x|^2 + |y|^2 - 2 x.y), not a loop over pairs: the MMD's kernel, the
    median-distance bandwidth and the nearest-neighbour novelty all need every pair.
    """
    sq_x = (x * x).sum(1)
    sq_y = sq_x if y is x else (y * y).sum(1)
    return np.maximum(sq_x[:, None] + sq_y[None, :] - 2 * (x @ y.T), 0)
