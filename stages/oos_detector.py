"""Out-of-scope detection: one score per text, a threshold chosen on data, saved with the model.

Every score is "higher = further from the classes the model knows", from what the ONNX graph
already returns (logits and the pooled ``embedding``), in numpy alone: the service, ``predict``
and the Dask scorer use it without torch.

    msp          1 - the largest softmax probability (the usual baseline)
    energy       -logsumexp(logits) (Liu et al. 2020)
    mahalanobis  smallest Mahalanobis distance to a class mean, one shared covariance
                 (Lee et al. 2018; Ledoit-Wolf shrinkage, so it also fits small data)
    knn          1 - cosine similarity to the k-th nearest training embedding (Sun et al. 2022)

:func:`fit` fits what the scores need (class means and a whitening matrix, a bank of normalised
training embeddings) and :func:`choose_threshold` the threshold on the val split. The detector is
two files beside the model: ``oos.json`` (method, thresholds, label, what the val split showed)
and ``oos.npz`` (arrays only, loaded with ``allow_pickle=False``: no code runs on load).
More: docs/out_of_scope.md.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.artifacts import OOS_ARRAYS as DETECTOR_ARRAYS
from stages.artifacts import OOS_JSON as DETECTOR_JSON
from stages.common import StageError

if TYPE_CHECKING:
    import numpy as np

METHODS = ("msp", "energy", "mahalanobis", "knn")
VERSION = 1
ARRAY_NAMES = ("whitening", "white_means", "bank")


@dataclass
class Detector:
    """Everything needed to score a text and decide whether it is out of scope."""

    method: str
    thresholds: dict[str, float]   # per method: score > threshold means out of scope
    label: str | None              # the answer's label for an out-of-scope text (None: null)
    keep_in_scope: float           # the val share of in-scope texts the threshold keeps
    knn_k: int
    arrays: dict[str, Any] = field(repr=False)  # whitening (d, d), white_means (<= C, d), bank (n, d)
    val: dict[str, Any] = field(default_factory=dict)  # what the val split showed, per method

    @property
    def threshold(self) -> float:
        return self.thresholds[self.method]

    def score(self, logits: np.ndarray, embeddings: np.ndarray | None,
              method: str | None = None) -> np.ndarray:
        """Scores of ``method`` (default: the detector's) for a batch, higher = more out of scope."""
        return score(method or self.method, logits, embeddings, self.arrays, self.knn_k)

    def decide(self, logits: np.ndarray, embeddings: np.ndarray | None, labels: list[str]
               ) -> tuple[np.ndarray, np.ndarray]:
        """(out_of_scope flags, scores) of a batch: the score is above the threshold, or the model
        predicts ``label`` itself (a model trained with out-of-scope examples as a class)."""
        import numpy as np

        scores = self.score(logits, embeddings)
        flags = scores > self.threshold
        if self.label is not None and self.label in labels:
            flags |= np.asarray(logits).argmax(axis=1) == labels.index(self.label)
        return flags, scores

    def needs_embeddings(self) -> bool:
        return self.method in ("mahalanobis", "knn")


# ---------------------------------------------------------------- scores

def logsumexp(logits: np.ndarray) -> np.ndarray:
    import numpy as np

    top = logits.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True)))[:, 0]


def msp_score(logits: np.ndarray) -> np.ndarray:
    import numpy as np

    return 1.0 - np.exp(logits.max(axis=1) - logsumexp(logits))


def energy_score(logits: np.ndarray) -> np.ndarray:
    return -logsumexp(logits)


def mahalanobis_score(embeddings: np.ndarray, whitening: np.ndarray,
                      white_means: np.ndarray) -> np.ndarray:
    """min over classes of (z - mu_c)^T P (z - mu_c), as squared distances in whitened space."""
    import numpy as np

    z = embeddings.astype(np.float64) @ whitening
    d2 = ((z * z).sum(axis=1)[:, None] + (white_means * white_means).sum(axis=1)[None, :]
          - 2.0 * z @ white_means.T)
    return np.maximum(d2.min(axis=1), 0.0)


def normalise_rows(x: np.ndarray) -> np.ndarray:
    import numpy as np

    x = x.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_score(embeddings: np.ndarray, bank: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """1 - cosine similarity to the k-th most similar bank row (the bank is unit-normalised)."""
    import numpy as np

    k = min(k, len(bank))
    z = normalise_rows(embeddings)
    out = np.empty(len(z), dtype=np.float64)
    for lo in range(0, len(z), chunk):  # bounds memory at chunk x bank rows
        sims = z[lo:lo + chunk] @ bank.T
        out[lo:lo + chunk] = 1.0 - np.partition(sims, -k, axis=1)[:, -k]
    return out


def score(method: str, logits: np.ndarray, embeddings: np.ndarray | None,
          arrays: dict[str, Any], knn_k: int) -> np.ndarray:
    """Out-of-scope scores of ``method`` for a batch (rows of ``logits``/``embeddings``)."""
    import numpy as np

    logits = np.asarray(logits, dtype=np.float64)
    if method == "msp":
        return msp_score(logits)
    if method == "energy":
        return energy_score(logits)
    if embeddings is None:
        raise StageError(f"the {method} out-of-scope score needs the pooled embedding, and this "
                         "model returns logits only",
                         fix="re-export with `dvc repro export quantize`, or set oos.method to "
                             "msp or energy")
    if method == "mahalanobis":
        return mahalanobis_score(embeddings, arrays["whitening"], arrays["white_means"])
    if method == "knn":
        return knn_score(embeddings, arrays["bank"], knn_k)
    raise StageError(f"unknown out-of-scope method {method!r}", fix=f"use one of {list(METHODS)}")


# ---------------------------------------------------------------- fitting

def fit_arrays(embeddings: np.ndarray, classes: np.ndarray, n_classes: int, bank_rows: int,
               seed: int = 0) -> dict[str, Any]:
    """Class means, a whitening matrix of their shared covariance, and the kNN bank.

    ``classes`` are class indices per row. The covariance is Ledoit-Wolf shrunk: with 384
    dimensions and a few hundred rows the plain estimate is singular.
    """
    import numpy as np
    from sklearn.covariance import LedoitWolf

    x = embeddings.astype(np.float64)
    present = np.unique(classes)
    means = np.zeros((n_classes, x.shape[1]))
    for c in present:
        means[c] = x[classes == c].mean(axis=0)
    centred = x - means[classes]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    # P = L L^T  =>  (z - mu)^T P (z - mu) = |L^T z - L^T mu|^2
    whitening = np.linalg.cholesky((precision + precision.T) / 2.0)
    white_means = means[present] @ whitening  # a class without training rows has no mean
    rng = np.random.default_rng(seed)
    keep = rng.permutation(len(x))[:bank_rows] if len(x) > bank_rows else np.arange(len(x))
    return {"whitening": whitening, "white_means": white_means,
            "bank": normalise_rows(embeddings[np.sort(keep)])}


def choose_threshold(in_scope: np.ndarray, keep_in_scope: float,
                     out_of_scope: np.ndarray | None = None) -> float:
    """The score threshold that keeps ``keep_in_scope`` of the in-scope val texts.

    With labelled out-of-scope val texts, the threshold may only rise from there (keeping more
    in-scope texts), to where in-scope kept + out-of-scope caught is largest: it never keeps
    fewer in-scope texts than asked.
    """
    import numpy as np

    assert 0.0 < keep_in_scope < 1.0, "oos.keep_in_scope's Range keeps it inside (0, 1)"
    if len(in_scope) == 0:
        raise StageError("no in-scope val texts to choose the out-of-scope threshold on",
                         fix="the val split needs rows of the known classes")
    base = float(np.quantile(in_scope, keep_in_scope, method="higher"))
    if out_of_scope is None or len(out_of_scope) == 0:
        return base
    candidates = np.unique(np.concatenate([[base], in_scope[in_scope > base],
                                           out_of_scope[out_of_scope > base]]))
    kept = (in_scope[None, :] <= candidates[:, None]).mean(axis=1)
    caught = (out_of_scope[None, :] > candidates[:, None]).mean(axis=1)
    return float(candidates[int(np.argmax(kept + caught))])


# ---------------------------------------------------------------- measuring

def auroc(in_scope: np.ndarray, out_of_scope: np.ndarray) -> float | None:
    """P(an out-of-scope text scores above an in-scope one), ties half; None without both."""
    import numpy as np
    from scipy.stats import rankdata

    if len(in_scope) == 0 or len(out_of_scope) == 0:
        return None
    ranks = rankdata(np.concatenate([in_scope, out_of_scope]))
    n_in, n_out = len(in_scope), len(out_of_scope)
    return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def fpr_at_recall(in_scope: np.ndarray, out_of_scope: np.ndarray, recall: float = 0.95
                  ) -> float | None:
    """FPR@95%TPR as the out-of-scope literature reports it: the share of out-of-scope texts
    taken as in scope at the threshold that keeps ``recall`` of the in-scope texts. None without
    both kinds."""
    import numpy as np

    if len(in_scope) == 0 or len(out_of_scope) == 0:
        return None
    threshold = np.quantile(in_scope, recall, method="higher")
    return float((out_of_scope <= threshold).mean())


def separation(in_scope: np.ndarray, out_of_scope: np.ndarray, threshold: float
               ) -> dict[str, Any]:
    """AUROC, FPR@95%TPR and, at ``threshold``, the share of each kind flagged."""
    def share(flags: np.ndarray) -> float | None:
        return round(float(flags.mean()), 6) if len(flags) else None

    a, f = auroc(in_scope, out_of_scope), fpr_at_recall(in_scope, out_of_scope)
    return {"auroc": None if a is None else round(a, 6),
            "fpr_at_95_tpr": None if f is None else round(f, 6),
            "in_scope_flagged": share(in_scope > threshold),
            "oos_recall": share(out_of_scope > threshold),
            "in_scope_rows": int(len(in_scope)), "oos_rows": int(len(out_of_scope)),
            "threshold": round(float(threshold), 6)}


# ---------------------------------------------------------------- files

def save(detector: Detector, out_dir: Path) -> None:
    """``oos.json`` + ``oos.npz`` in ``out_dir`` (the caller makes the directory atomic)."""
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / DETECTOR_ARRAYS, "wb") as f:
        np.savez(f, **{k: np.asarray(detector.arrays[k], dtype=np.float32) for k in ARRAY_NAMES})
    record = {"version": VERSION, "method": detector.method, "threshold": detector.threshold,
              "thresholds": detector.thresholds, "label": detector.label,
              "keep_in_scope": detector.keep_in_scope, "knn_k": detector.knn_k,
              "val": detector.val}
    (out_dir / DETECTOR_JSON).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n",
                                         encoding="utf-8")


def load(model_dir: Path) -> Detector | None:
    """The detector saved beside a model, or None for a model exported before detectors."""
    import numpy as np

    meta, arrays = Path(model_dir) / DETECTOR_JSON, Path(model_dir) / DETECTOR_ARRAYS
    if not meta.is_file():
        return None
    try:
        record = json.loads(meta.read_text(encoding="utf-8"))
        method, thresholds = record["method"], {k: float(v) for k, v in record["thresholds"].items()}
        with np.load(arrays, allow_pickle=False) as npz:
            loaded = {k: npz[k] for k in ARRAY_NAMES}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
        raise StageError(f"the out-of-scope detector is unreadable: {exc}", where=str(meta),
                         fix="re-run `dvc repro oos export` to write it again") from None
    if method not in METHODS or method not in thresholds:
        raise StageError(f"the out-of-scope detector names method {method!r} without a threshold",
                         where=str(meta), fix="re-run `dvc repro oos export`")
    return Detector(method, thresholds, record.get("label"), float(record["keep_in_scope"]),
                    int(record.get("knn_k", 1)), loaded, record.get("val", {}))
