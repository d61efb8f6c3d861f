"""The champion's monitoring reference: what production predictions are compared with.

    python -m monitor.reference                     # (re)build it for the current champion
    python -m monitor.reference --onnx-dir models/onnx --out DIR

Built at promote time by the served int8 ONNX model: ``reference.parquet`` (the test split scored,
no text) and ``reference.json`` (labels, model hash, accuracy, the val-fitted calibration of
confidence to P(correct) that estimates a window's accuracy without labels, and for a model with
an out-of-scope detector the share of test texts it answers out of scope).
More: docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages import artifacts
from stages.common import StageError, get_logger, run_cli

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = get_logger(__name__)

REFERENCE_TABLE = "reference.parquet"
REFERENCE_META = "reference.json"
VERSION = 1
MAX_BANDWIDTH_ROWS = 1000


@dataclass
class Scored:
    """One split scored by the served model."""

    probs: np.ndarray
    embeddings: np.ndarray | None  # None: a logits-only graph (an export older than the monitor)
    n_tokens: np.ndarray
    truncated: np.ndarray
    labels: list[str]
    out_of_scope: np.ndarray | None = None  # the detector's flags; None: the model has none
    oos_scores: np.ndarray | None = None

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1)

    @property
    def predicted(self) -> list[str]:
        return [self.labels[i] for i in self.probs.argmax(axis=1)]


def score_texts(model: Any, texts: list[str], where: str, batch_size: int = 32) -> Scored:
    """Probabilities, embeddings, token counts and truncation flags, as the service logs them.

    A graph without the ``embedding`` output still gets a reference (label, confidence, length,
    accuracy and share detectors work); the embedding detectors then report "unavailable".
    """
    import numpy as np

    from stages.metrics import softmax
    from stages.onnx_session import detect_out_of_scope, encode, run_logits_and_embeddings

    encodings = encode(model, texts)
    logits, emb = run_logits_and_embeddings(model, encodings, batch_size, show_progress=True)
    if emb is None:
        log.warning("%s has no 'embedding' output: no embedding drift detection (re-export with "
                    "this version: `dvc repro export quantize`)", where)
    flags, scores = detect_out_of_scope(model, logits, emb)
    return Scored(softmax(logits).astype(np.float32), emb,
                  np.array([len(e.ids) for e in encodings], dtype=np.int32),
                  np.array([len(e.overflowing) > 0 for e in encodings]), model.labels,
                  flags, scores)


def out_of_scope_meta(model: Any, ref: Scored, where: str) -> dict[str, Any]:
    """The reference's out-of-scope share (what the ``out_of_scope`` detector compares a window
    with) and the detector it came from; None for both when the model has no detector."""
    if model.oos is None or ref.out_of_scope is None:
        log.warning("%s has no out-of-scope detector: the monitor's out_of_scope detector will "
                    "say unavailable (re-export with `dvc repro export quantize`)", where)
        return {"out_of_scope_share": None, "out_of_scope": None}
    return {"out_of_scope_share": round(float(ref.out_of_scope.mean()), 6),  # test: never empty
            "out_of_scope": {"method": model.oos.method, "threshold": model.oos.threshold,
                             "label": model.oos.label, "rows": int(ref.out_of_scope.sum())}}


def fit_calibration(confidence: np.ndarray, correct: np.ndarray) -> dict[str, list[float]]:
    """Isotonic map max probability -> P(correct), as knots for ``np.interp``."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    iso.fit(confidence.astype(float), correct.astype(float))
    return {"x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]}


def calibrated(confidence: np.ndarray, calibration: dict[str, list[float]]) -> np.ndarray:
    """P(correct) of each prediction from the reference's calibration knots."""
    import numpy as np

    return np.interp(confidence, calibration["x"], calibration["y"])


def rbf_bandwidth(emb: np.ndarray, seed: int = 0) -> float:
    """Median pairwise Euclidean distance (the median heuristic), fixed with the reference."""
    import numpy as np

    from stages.drift_stats import squared_distances

    rng = np.random.default_rng(seed)
    x = emb[rng.permutation(len(emb))[:MAX_BANDWIDTH_ROWS]].astype(np.float64)
    d2 = squared_distances(x, x)
    upper = d2[np.triu_indices(len(x), k=1)]
    return float(np.sqrt(np.median(upper))) if len(upper) else 1.0


def load_split_frame(path: Path, what: str) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise StageError(f"the {what} split is missing", where=str(path), fix="run `dvc repro split`")
    frame = pd.read_parquet(path)
    if not {"text", "label"} <= set(frame.columns) or frame.empty:
        raise StageError(f"the {what} split needs rows with text and label", where=str(path),
                         fix="run `dvc repro split`")
    return frame


def build_reference(onnx_dir: Path, out_dir: Path, test_split: Path | None = None,
                    calibration_split: Path | None = None, model_file: str = artifacts.ONNX_INT8,
                    threads: int | None = None) -> dict[str, Any]:
    """Score test (the reference) and val (the calibration) with the served model; write out_dir.

    The directory is replaced atomically: a failed build leaves the previous reference as it was.
    """
    import numpy as np
    import pandas as pd

    from stages.io import atomic_path, sha256_file, write_json
    from stages.onnx_session import load_onnx_model

    test_split = test_split or artifacts.split_path("test")
    calibration_split = calibration_split or artifacts.split_path("val")
    model_path = Path(onnx_dir) / model_file
    test = load_split_frame(test_split, "test")
    val = load_split_frame(calibration_split, "calibration (val)")
    model = load_onnx_model(model_path, threads=threads, device="cpu")
    log.info("scoring %d test and %d val texts with %s", len(test), len(val), model_path)
    ref = score_texts(model, test["text"].astype(str).tolist(), str(model_path))
    cal = score_texts(model, val["text"].astype(str).tolist(), str(model_path))
    cal_correct = np.array(cal.predicted) == val["label"].astype(str).to_numpy()
    calibration = fit_calibration(cal.confidence, cal_correct)
    ref_correct = np.array(ref.predicted) == test["label"].astype(str).to_numpy()
    estimated = calibrated(ref.confidence, calibration)
    texts = test["text"].astype(str)
    table = pd.DataFrame({
        "text_sha256": [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts],
        "label": ref.predicted, "true_label": test["label"].astype(str).to_numpy(),
        "correct": ref_correct, "confidence": ref.confidence.astype(np.float32),
        "probs": list(ref.probs),
        "embedding": [None] * len(test) if ref.embeddings is None else list(ref.embeddings),
        "n_tokens": ref.n_tokens, "truncated": ref.truncated})
    if ref.out_of_scope is not None:
        table["out_of_scope"], table["oos_score"] = ref.out_of_scope, ref.oos_scores
    meta = {
        "version": VERSION, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"file": model_file, "sha256": sha256_file(model_path)},
        "labels": model.labels, "rows": len(table),
        "embedding_dim": None if ref.embeddings is None else int(ref.embeddings.shape[1]),
        "test_split": {"path": str(test_split), "sha256": sha256_file(test_split)},
        "accuracy": round(float(ref_correct.mean()), 6),
        "estimated_accuracy": round(float(estimated.mean()), 6),
        "calibration": {"method": "isotonic", "fitted_on": str(calibration_split),
                        "sha256": sha256_file(calibration_split), "rows": len(val),
                        "accuracy": round(float(cal_correct.mean()), 6), **calibration},
        "embedding_bandwidth": None if ref.embeddings is None else rbf_bandwidth(ref.embeddings),
        "truncated_share": round(float(ref.truncated.mean()), 6),
        **out_of_scope_meta(model, ref, str(model_path)),
    }
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        table.to_parquet(tmp / REFERENCE_TABLE, index=False)
        write_json(tmp / REFERENCE_META, meta)
    log.info("reference: %d rows, accuracy %.4f, calibrated estimate %.4f (calibration on %d val "
             "rows); wrote %s", len(table), meta["accuracy"], meta["estimated_accuracy"], len(val),
             out_dir)
    return meta


@dataclass
class Reference:
    """A loaded reference: metadata plus the arrays the detectors compare with."""

    meta: dict[str, Any]
    table: pd.DataFrame
    path: Path

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    def probs(self) -> np.ndarray:
        import numpy as np

        return np.stack(self.table["probs"].to_numpy()).astype(np.float32)

    def embeddings(self) -> np.ndarray | None:
        """None when the reference was scored by a logits-only graph."""
        import numpy as np

        if self.meta.get("embedding_dim") is None:
            return None
        return np.stack(self.table["embedding"].to_numpy()).astype(np.float32)


def load_reference(path: Path) -> Reference:
    """Read a reference directory; a missing or damaged one is an error that says how to rebuild."""
    import pandas as pd

    from stages.io import read_json

    fix = "rebuild it: `python -m monitor.reference` (needs the champion's ONNX export and splits)"
    if not (path / REFERENCE_META).is_file() or not (path / REFERENCE_TABLE).is_file():
        raise StageError("no monitoring reference", where=str(path), fix=fix)
    try:
        meta = read_json(path / REFERENCE_META)
        table = pd.read_parquet(path / REFERENCE_TABLE)
    except Exception as exc:  # damaged JSON or Parquet
        raise StageError(f"the monitoring reference is unreadable: {exc}", where=str(path),
                         fix=fix) from None
    if meta.get("version") != VERSION:
        raise StageError(f"reference version {meta.get('version')} (this code reads {VERSION})",
                         where=str(path), fix=fix)
    return Reference(meta, table, path)


def champion_reference_dir() -> Path:
    """Where the current champion's reference lives (an error when there is no champion)."""
    champion = artifacts.champion_dir()
    if champion is None:
        raise StageError("there is no champion yet, so nothing to monitor",
                         where=str(artifacts.CHAMPION_POINTER),
                         fix="promote a model first: `python -m commands.promote`")
    return champion / artifacts.MONITOR_REFERENCE


def build_champion_reference(champion: Path) -> None:
    """promote's hook: the candidate's int8 export (models/onnx) scored into the new champion.

    A candidate without an int8 export (a pipeline run without export/quantize) is promoted
    without a reference, with a warning: monitoring then says how to build one later.
    """
    if not (artifacts.ONNX_DIR / artifacts.ONNX_INT8).is_file():
        log.warning("no %s: the champion gets no monitoring reference (build it later with "
                    "`python -m monitor.reference`)", artifacts.ONNX_DIR / artifacts.ONNX_INT8)
        return
    build_reference(artifacts.ONNX_DIR, champion / artifacts.MONITOR_REFERENCE)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m monitor.reference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx-dir", type=Path, help="default: the champion's ONNX export")
    parser.add_argument("--out", type=Path, help="default: the champion's monitor_reference/")
    parser.add_argument("--test-split", type=Path, help="default: data/splits/test.parquet")
    parser.add_argument("--calibration-split", type=Path, help="default: data/splits/val.parquet")
    args = parser.parse_args()
    onnx_dir = args.onnx_dir or artifacts.champion_onnx_dir()
    if onnx_dir is None:
        raise StageError("there is no champion yet", where=str(artifacts.CHAMPION_POINTER),
                         fix="pass --onnx-dir and --out, or promote a model first")
    out = args.out or champion_reference_dir()
    build_reference(onnx_dir, out, args.test_split, args.calibration_split)


if __name__ == "__main__":
    run_cli(main)
