"""oos: fit the candidate's out-of-scope detector, and choose its threshold on the val split.

The checkpoint scores train and val once (logits and the pooled embedding, what the ONNX graph
returns). Train's in-scope rows give what each score needs (class means and a shared covariance,
a bank of embeddings); val chooses, for every method, the threshold that keeps
``oos.keep_in_scope`` of the in-scope val texts (and, when val has rows labelled ``oos.label``,
catches as many of those as it can without keeping fewer). Writes models/oos/oos.json + oos.npz;
export ships them beside the ONNX model. More: docs/out_of_scope.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stages import artifacts
from stages.common import StageError, get_logger, load_params
from stages.data import load_split
from stages.io import atomic_path
from stages.oos_params import OosParams, check_label_collision

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from stages.oos_detector import Detector

log = get_logger(__name__)


def labelled_oos(frame: pd.DataFrame, label: str | None) -> np.ndarray:
    """Which rows are out-of-scope examples (labelled ``oos.label``)."""
    return (frame["label"] == label).to_numpy() if label is not None else (
        frame["label"].isna().to_numpy() & False)


def model_outputs(model: Any, tokenizer: Any, frame: pd.DataFrame, max_length: int,
                  params: OosParams) -> tuple[np.ndarray, np.ndarray]:
    from stages.model import predict_outputs

    logits, emb = predict_outputs(model, tokenizer, frame["text"].tolist(), max_length,
                                  params.batch_size, show_progress=True)
    assert emb is not None, "a checkpoint written by train always has embed()"
    return logits, emb


def fit_detector(train: pd.DataFrame, val: pd.DataFrame, model: Any, tokenizer: Any,
                 classes: list[str], max_length: int, params: OosParams) -> Detector:
    """The detector for ``model``: arrays from train's in-scope rows, thresholds from val."""
    from stages import oos_detector
    from stages.oos_detector import Detector

    fit_rows = train[~labelled_oos(train, params.label) & train["label"].isin(classes)]
    if fit_rows.empty:
        raise StageError("the train split has no in-scope rows of the model's classes",
                         where=str(artifacts.split_path("train")), fix="run `dvc repro split train`")
    _, train_emb = model_outputs(model, tokenizer, fit_rows, max_length, params)
    codes = fit_rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    arrays = oos_detector.fit_arrays(train_emb, codes, len(classes), params.knn_bank_rows,
                                     params.seed)
    val_logits, val_emb = model_outputs(model, tokenizer, val, max_length, params)
    oos_rows = labelled_oos(val, params.label)
    if not (~oos_rows).any():
        raise StageError("the val split has no in-scope rows to choose the threshold on",
                         where=str(artifacts.split_path("val")), fix="run `dvc repro split`")
    thresholds, figures = {}, {}
    for method in oos_detector.METHODS:
        scores = oos_detector.score(method, val_logits, val_emb, arrays, params.knn_k)
        inside, outside = scores[~oos_rows], scores[oos_rows]
        thresholds[method] = oos_detector.choose_threshold(inside, params.keep_in_scope, outside)
        figures[method] = oos_detector.separation(inside, outside, thresholds[method])
    log.info("val: %d in-scope rows, %d labelled %r; %s threshold %.4g flags %.1f%% of in-scope "
             "texts", int((~oos_rows).sum()), int(oos_rows.sum()), params.label, params.method,
             thresholds[params.method], 100 * figures[params.method]["in_scope_flagged"])
    rows = {"train_fitted": len(fit_rows), "val_in_scope": int((~oos_rows).sum()),
            "val_oos": int(oos_rows.sum())}
    return Detector(params.method, thresholds, params.label, params.keep_in_scope, params.knn_k,
                    arrays, {"rows": rows, "methods": figures})


def main() -> None:
    from stages import oos_detector
    from stages.model import class_names, load_classifier, trained_max_length

    params = load_params("oos", OosParams)
    model, tokenizer = load_classifier(artifacts.CHECKPOINT_DIR)
    classes = class_names(model)
    check_label_collision(params, classes, f"checkpoint ({artifacts.CHECKPOINT_DIR})")
    if params.label is not None and params.train_as_class and params.label not in classes:
        log.warning("oos.train_as_class is true but the model has no class %r: the data has no "
                    "out-of-scope examples", params.label)
    max_length = trained_max_length(artifacts.CHECKPOINT_DIR)
    if max_length is None:
        raise StageError("the checkpoint records no max_length", where=str(
            artifacts.CHECKPOINT_DIR / artifacts.MANIFEST_FILE), fix="run `dvc repro train`")
    detector = fit_detector(load_split("train"), load_split("val"), model, tokenizer, classes,
                            max_length, params)
    with atomic_path(artifacts.OOS_DIR) as tmp:
        oos_detector.save(detector, tmp)
    log.info("wrote %s (%s, threshold %.4g, answer label %r)", artifacts.OOS_DIR, detector.method,
             detector.threshold, detector.label)


if __name__ == "__main__":
    from stages.stage_cli import run_stage

    run_stage(main, "stages.oos", __doc__)
