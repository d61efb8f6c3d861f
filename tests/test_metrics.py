"""The numpy macro-F1 used by train agrees with scikit-learn's on random labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from stages.metrics import classification_metrics, macro_f1


@pytest.mark.parametrize("seed", range(20))
def test_macro_f1_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = list("abcde")
    y_true = rng.choice(labels, 200)
    y_pred = rng.choice(labels[:4], 200)  # one class never predicted: zero_division path
    expected = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    assert macro_f1(y_true, y_pred, labels) == pytest.approx(expected, abs=1e-12)
    assert classification_metrics(y_true, y_pred, labels)["macro_f1"] == pytest.approx(expected, abs=1e-6)
