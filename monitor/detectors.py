"""Drift detectors: a window of logged predictions against the champion's reference.

Each detector is a two-sample comparison on what the service logs, never on raw text, and returns
a :class:`Result` (statistic, p-value where there is one, threshold, fired). Detectors: label,
confidence, length, embedding, novelty, accuracy, truncated, empty, out_of_scope; which may alarm
and at what thresholds is ``monitor:`` in params.yaml. The shared statistics are in stages/drift_stats.py.
More: docs/monitoring.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from stages import artifacts
from stages.common import Fraction, NonNegativeInt, PositiveInt, Share, params_section

if TYPE_CHECKING:
    import numpy as np

ALL_DETECTORS = ("label", "confidence", "length", "embedding", "novelty", "accuracy", "truncated",
                 "empty", "out_of_scope")


@params_section("monitor")
@dataclass
class MonitorParams:
    """``monitor:`` in params.yaml (flows/monitoring.py, docs/monitoring.md)."""

    log_dir: str = str(artifacts.PREDICTION_LOG_DIR)  # the service's log (serve.log_dir)
    reference: str | None = None          # a reference directory; null: the champion's
    window_hours: PositiveInt = 24        # each run looks back this far from the hour it runs at
    min_predictions: PositiveInt = 200    # fewer in a window: "not enough data", no alarm
    alpha: Fraction = 0.01                # p-value threshold of each of the 5 tests (label,
    #                                       confidence, length, embedding, novelty): <= 5% family-wise
    max_accuracy_drop: Share = 0.05       # estimated accuracy below the reference's by more
    max_truncated_increase: Share = 0.10  # share of truncated texts above the reference's by more
    max_empty_share: Share = 0.05         # share of empty texts above this
    max_oos_increase: Share = 0.10        # share answered out of scope above the reference's by more
    permutations: PositiveInt = 1000      # MMD permutation test resamples
    novelty_quantile: Fraction = 0.95     # "far from the reference": beyond this quantile of the
    #                                       reference's nearest-neighbour distances
    max_rows: PositiveInt = 1000          # rows per side in the MMD (random subsample beyond)
    seed: int = 0
    alarm_on: list[str] = field(default_factory=lambda: list(ALL_DETECTORS))
    cooldown_hours: NonNegativeInt = 24   # no second drift event for the same champion sooner
    labelling_sample: NonNegativeInt = 50  # most uncertain + most drifted rows to label; 0: none


@dataclass
class Result:
    name: str
    statistic: float | None
    p_value: float | None
    threshold: float
    drifted: bool
    status: str = "ok"                    # ok | not enough data | unavailable
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def label_drift(ref_pred: np.ndarray, win_pred: np.ndarray, n_labels: int, alpha: float) -> Result:
    """Chi-square test of homogeneity on predicted-class counts (indices 0..n_labels-1)."""
    import numpy as np
    from scipy.stats import chi2_contingency

    from stages.drift_stats import js_divergence

    ref = np.bincount(ref_pred, minlength=n_labels).astype(float)
    win = np.bincount(win_pred, minlength=n_labels).astype(float)
    used = (ref + win) > 0
    if used.sum() < 2:
        p = 1.0
        chi2 = 0.0
    else:
        chi2, p, _, _ = chi2_contingency(np.vstack([ref[used], win[used]]), correction=False)
    js = js_divergence(ref, win)
    return Result("label", _r(js), _r(p, 8), alpha, bool(p < alpha),
                  detail={"chi2": _r(chi2, 4), "js_divergence": _r(js),
                          "reference_share": (ref / ref.sum()).round(4).tolist(),
                          "window_share": (win / win.sum()).round(4).tolist()})


def ks_drift(name: str, ref: np.ndarray, win: np.ndarray, alpha: float) -> Result:
    """Two-sample Kolmogorov-Smirnov test; statistic D is the largest CDF gap."""
    from stages.drift_stats import ks_test

    statistic, p = ks_test(ref, win)
    return Result(name, _r(statistic), _r(p, 8), alpha, bool(p < alpha),
                  detail={"reference_mean": _r(ref.mean(), 4), "window_mean": _r(win.mean(), 4)})


def mmd_test(x: np.ndarray, y: np.ndarray, bandwidth: float, permutations: int,
             rng: np.random.Generator) -> tuple[float, float, np.ndarray]:
    """Biased MMD^2 with a Gaussian kernel and its permutation p-value.

    Every permuted statistic is w' K w for a +1/n, -1/m weight vector, so all permutations are one
    matrix product with the kernel matrix. Also returns, per row of ``y``, how much closer it is
    to the window than to the reference (the MMD witness; high = most drifted).
    """
    import numpy as np

    from stages.drift_stats import squared_distances

    z = np.vstack([x, y]).astype(np.float32)
    n, m = len(x), len(y)
    d2 = squared_distances(z, z)
    kernel = np.exp(-d2 / (2 * bandwidth ** 2)).astype(np.float32)
    weights = np.empty((n + m, permutations + 1), dtype=np.float32)
    weights[:n, 0], weights[n:, 0] = 1 / n, -1 / m
    for j in range(1, permutations + 1):
        perm = rng.permutation(n + m)
        weights[perm[:n], j], weights[perm[n:], j] = 1 / n, -1 / m
    kw = kernel @ weights
    stats = (weights * kw).sum(0)
    p = (1 + int((stats[1:] >= stats[0]).sum())) / (1 + permutations)
    witness = -kw[n:, 0]  # mean k(., window) - mean k(., reference)
    return float(stats[0]), p, witness


def embedding_drift(ref: np.ndarray | None, win: np.ndarray | None, bandwidth: float | None,
                    params: MonitorParams) -> tuple[Result, np.ndarray | None, np.ndarray | None]:
    """MMD permutation test; also the window rows used and their witness scores."""
    import numpy as np

    if ref is None or win is None or len(win) < params.min_predictions:
        status = "unavailable" if ref is None or win is None else "not enough data"
        return (Result("embedding", None, None, params.alpha, False, status,
                       {"rows": 0 if win is None else len(win)}), None, None)
    rng = np.random.default_rng(params.seed)
    ref_rows = rng.permutation(len(ref))[:params.max_rows]
    win_rows = np.sort(rng.permutation(len(win))[:params.max_rows])
    stat, p, witness = mmd_test(ref[ref_rows], win[win_rows], bandwidth, params.permutations, rng)
    return (Result("embedding", _r(stat, 8), _r(p), params.alpha, bool(p < params.alpha),
                   detail={"mmd2": _r(stat, 8), "bandwidth": _r(bandwidth, 4),
                           "permutations": params.permutations,
                           "rows": [len(ref_rows), len(win_rows)]}), win_rows, witness)


def accuracy_drift(ref_estimate: float, win_calibrated: np.ndarray, ref_accuracy: float,
                   max_drop: float) -> Result:
    """CBPE-style: the window's expected accuracy from calibrated confidences, vs the reference."""
    estimate = float(win_calibrated.mean())
    drop = ref_estimate - estimate
    return Result("accuracy", _r(estimate), None, max_drop, bool(drop > max_drop),
                  detail={"estimated_accuracy": _r(estimate), "reference_estimate": _r(ref_estimate),
                          "reference_accuracy": _r(ref_accuracy), "drop": _r(drop)})


def share_drift(name: str, win_mask: np.ndarray, ref_share: float, threshold: float,
                relative: bool) -> Result:
    """A share of rows (truncated, empty) against a threshold (above the reference's if relative)."""
    share = float(win_mask.mean()) if len(win_mask) else 0.0
    excess = share - ref_share if relative else share
    return Result(name, _r(share), None, threshold, bool(excess > threshold),
                  detail={"window_share": _r(share), "reference_share": _r(ref_share),
                          "count": int(win_mask.sum())})


def oos_drift(win_flags: np.ndarray | None, ref_share: float | None, max_increase: float
              ) -> Result:
    """The window's share of out-of-scope answers against the reference's (as ``truncated``);
    "unavailable" when the logged rows carry no flags (a champion without a detector, a log
    older than the detector) or the reference has no share (built before it)."""
    if win_flags is None or ref_share is None:
        missing = "the window's log rows" if win_flags is None else "the reference"
        return Result("out_of_scope", None, None, max_increase, False, "unavailable",
                      detail={"reason": f"{missing} carry no out-of-scope flags"})
    result = share_drift("out_of_scope", win_flags, ref_share, max_increase, True)
    result.detail["rows"] = len(win_flags)
    return result


def nearest_distances(x: np.ndarray, ref: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
    """Euclidean distance from each row of ``x`` to its nearest row of ``ref``."""
    import numpy as np

    from stages.drift_stats import squared_distances

    x64, r64 = x.astype(np.float64), ref.astype(np.float64)
    d2 = squared_distances(x64, r64)
    if leave_one_out:
        np.fill_diagonal(d2, np.inf)
    return np.sqrt(d2.min(1))


def novelty_drift(ref: np.ndarray | None, win: np.ndarray | None, params: MonitorParams) -> Result:
    """More window embeddings off the reference's manifold than the reference has of its own."""
    import numpy as np
    from scipy.stats import fisher_exact

    if ref is None or win is None or len(win) < params.min_predictions:
        status = "unavailable" if ref is None or win is None else "not enough data"
        return Result("novelty", None, None, params.alpha, False, status)
    rng = np.random.default_rng(params.seed + 1)
    ref = ref[rng.permutation(len(ref))[:params.max_rows]]
    win = win[rng.permutation(len(win))[:params.max_rows]]
    ref_nn = nearest_distances(ref, ref, leave_one_out=True)
    radius = float(np.quantile(ref_nn, params.novelty_quantile))
    ref_far, win_far = int((ref_nn > radius).sum()), int((nearest_distances(win, ref) > radius).sum())
    _, p = fisher_exact([[win_far, len(win) - win_far], [ref_far, len(ref) - ref_far]],
                        alternative="greater")
    share = win_far / len(win)
    return Result("novelty", _r(share), _r(p, 8), params.alpha, bool(p < params.alpha),
                  detail={"window_share": _r(share), "reference_share": _r(ref_far / len(ref)),
                          "radius": _r(radius, 4), "rows": [len(ref), len(win)]})
