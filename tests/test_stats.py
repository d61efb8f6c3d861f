"""stages.stats: the vectorised bootstrap agrees with sklearn, is seeded, and McNemar is exact;
stages.drift_stats: the shared drift statistics give the numbers their former copies gave."""

from __future__ import annotations

import time
from math import comb

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from stages.stats import (
    binomial_two_sided_half,
    encode,
    mcnemar_exact,
    paired_bootstrap,
    scores,
)

LABELS = ["a", "b", "c", "d"]


def synthetic(n: int, seed: int = 0, right_a: float = 0.8, right_b: float = 0.75):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    a = np.where(rng.random(n) < right_a, y, rng.integers(0, 4, n))
    b = np.where(rng.random(n) < right_b, y, rng.integers(0, 4, n))
    names = np.array(LABELS)
    return names[y].tolist(), names[a].tolist(), names[b].tolist()


def test_scores_match_sklearn_on_resamples() -> None:
    y, a, _ = synthetic(500)
    a[:7] = ["zzz"] * 7  # predictions outside the label set count as misses
    t, p = encode(y, LABELS), encode(a, LABELS)
    idx = np.random.default_rng(1).integers(0, 500, size=(5, 500))
    f1, acc = scores(t[idx], p[idx], len(LABELS))
    for j in range(5):
        yt = [y[i] for i in idx[j]]
        yp = [a[i] for i in idx[j]]
        assert f1[j] == pytest.approx(f1_score(yt, yp, labels=LABELS, average="macro",
                                               zero_division=0), abs=1e-12)
        assert acc[j] == pytest.approx(accuracy_score(yt, yp), abs=1e-12)


def test_class_never_seen_nor_predicted_scores_zero_like_sklearn() -> None:
    y, p = ["a", "a", "b"], ["a", "c", "b"]
    f1, _ = scores(encode(y, LABELS)[None], encode(p, LABELS)[None], len(LABELS))
    assert f1[0] == pytest.approx(f1_score(y, p, labels=LABELS, average="macro",
                                           zero_division=0))


def test_bootstrap_point_difference_and_ci() -> None:
    y, a, b = synthetic(2000)
    r = paired_bootstrap(y, a, b, LABELS, n_resamples=500, seed=7)
    expected = (f1_score(y, a, labels=LABELS, average="macro")
                - f1_score(y, b, labels=LABELS, average="macro"))
    assert r["macro_f1"]["diff"] == pytest.approx(expected, abs=1e-12)
    assert r["accuracy"]["diff"] == pytest.approx(accuracy_score(y, a) - accuracy_score(y, b))
    for metric in ("macro_f1", "accuracy"):
        lo, hi = r[metric]["ci95"]
        assert lo < r[metric]["diff"] < hi
        assert 0.005 < hi - lo < 0.1  # a real interval, not a point and not everything
    assert r["n"] == 2000 and r["n_resamples"] == 500 and r["seed"] == 7


def test_bootstrap_is_deterministic_with_a_seed() -> None:
    y, a, b = synthetic(1000)
    first = paired_bootstrap(y, a, b, LABELS, n_resamples=300, seed=123)
    again = paired_bootstrap(y, a, b, LABELS, n_resamples=300, seed=123)
    other = paired_bootstrap(y, a, b, LABELS, n_resamples=300, seed=124)
    assert first == again
    assert first["macro_f1"]["ci95"] != other["macro_f1"]["ci95"]


def test_identical_predictions_give_a_zero_interval() -> None:
    y, a, _ = synthetic(300)
    r = paired_bootstrap(y, a, a, LABELS, n_resamples=200)
    assert r["macro_f1"]["diff"] == 0 and r["macro_f1"]["ci95"] == [0.0, 0.0]


def test_unknown_true_label_is_an_error() -> None:
    with pytest.raises(ValueError, match="not in the label set"):
        paired_bootstrap(["a", "x"], ["a", "a"], ["a", "a"], LABELS, n_resamples=10)


def test_mcnemar_matches_hand_computed_binomial() -> None:
    # 10 rows only a gets right, 2 only b, 30 both, 8 neither
    y = ["a"] * 50
    a = ["a"] * 10 + ["b"] * 2 + ["a"] * 30 + ["b"] * 8
    b = ["b"] * 10 + ["a"] * 2 + ["a"] * 30 + ["c"] * 8
    r = mcnemar_exact(y, a, b)
    assert (r["a_only"], r["b_only"], r["discordant"]) == (10, 2, 12)
    # two-sided exact: 2 * P(X <= 2), X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert r["p_value"] == pytest.approx(2 * (comb(12, 0) + comb(12, 1) + comb(12, 2)) / 2**12)
    assert r["p_value"] == pytest.approx(0.0385742, abs=1e-6)


@pytest.mark.parametrize("k, n", [(0, 1), (3, 7), (7, 7), (10, 12), (50, 100), (480, 1000),
                                  (4900, 10_000)])
def test_exact_binomial_matches_scipy(k: int, n: int) -> None:
    from scipy.stats import binomtest

    assert binomial_two_sided_half(k, n) == pytest.approx(binomtest(k, n).pvalue, rel=1e-9)


def test_mcnemar_without_discordant_rows_is_not_significant() -> None:
    assert mcnemar_exact(["a", "b"], ["a", "c"], ["a", "c"])["p_value"] == 1.0
    balanced = mcnemar_exact(["a"] * 4, ["a", "a", "b", "b"], ["b", "b", "a", "a"])
    assert balanced["p_value"] == 1.0


def test_bootstrap_speed_10k_rows_1000_resamples() -> None:
    y, a, b = synthetic(10_000)
    start = time.perf_counter()
    paired_bootstrap(y, a, b, LABELS, n_resamples=1000)
    assert time.perf_counter() - start < 5.0


# ------------------------------------------------------------------ drift statistics


def _js_by_loop(p: dict[str, int], q: dict[str, int]) -> float:
    """The validate stage's former Jensen-Shannon (a loop over the sorted classes), kept as the
    reference the shared implementation must reproduce."""
    import math

    tp, tq = sum(p.values()) or 1.0, sum(q.values()) or 1.0
    total = 0.0
    for k in sorted(set(p) | set(q)):
        a, b = p.get(k, 0.0) / tp, q.get(k, 0.0) / tq
        m = (a + b) / 2
        total += (a * math.log2(a / m) if a else 0.0) + (b * math.log2(b / m) if b else 0.0)
    return round(total / 2, 6)


def test_js_divergence_gives_the_validate_stage_its_former_numbers() -> None:
    from stages.drift_stats import aligned_counts, js_divergence

    rng = np.random.default_rng(0)
    for _ in range(2000):
        k = int(rng.integers(1, 40))
        p = {f"c{i}": int(rng.integers(0, 300)) for i in range(k) if rng.random() < 0.8}
        q = {f"c{i}": int(rng.integers(0, 300)) for i in range(k) if rng.random() < 0.8}
        assert round(js_divergence(*aligned_counts(p, q)), 6) == _js_by_loop(p, q), (p, q)


def test_ks_statistic_of_histograms_is_the_ks_test_statistic_of_the_samples() -> None:
    from stages.drift_stats import aligned_counts, ks_statistic, ks_test

    rng = np.random.default_rng(1)
    for _ in range(200):
        a = rng.integers(1, 60, size=int(rng.integers(1, 300)))
        b = rng.integers(1, 60, size=int(rng.integers(1, 300)))
        hist_a = {str(v): int(c) for v, c in zip(*np.unique(a, return_counts=True), strict=True)}
        hist_b = {str(v): int(c) for v, c in zip(*np.unique(b, return_counts=True), strict=True)}
        statistic, p = ks_test(a, b)
        assert ks_statistic(*aligned_counts(hist_a, hist_b, order=int)) == pytest.approx(statistic,
                                                                                      abs=1e-12)
        assert 0 <= p <= 1


def test_squared_distances_are_every_pair() -> None:
    from stages.drift_stats import squared_distances

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    brute = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(squared_distances(x, y), brute, atol=1e-12)
    within = squared_distances(x, x)
    assert (within >= 0).all() and np.allclose(np.diag(within), 0, atol=1e-12)
    assert squared_distances(x.astype(np.float32), x.astype(np.float32)).dtype == np.float32
