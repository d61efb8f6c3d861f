"""evaluate: score the candidate, the champion and two baselines on the same test split.

Paired: both models predict the same test rows, and rows either model learned from (per its
``training_data.json``) are flagged and left out of the paired numbers. Baselines: majority class
and TF-IDF + logistic regression; metrics also per slice.

Out of scope: with a detector beside the candidate (``models/oos``; the champion's in its
``onnx/``), test rows labelled with the detector's ``label`` are out-of-scope examples. They are
left out of the classification metrics, and ``oos`` in eval.json says how each model's detector
does on both kinds of rows (stages.oos_metrics).
More: docs/gates.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages import artifacts, oos_detector
from stages.common import PositiveInt, StageError, get_logger, load_params, params_section
from stages.data import load_split, seen_fingerprints, text_fingerprint
from stages.io import read_json, write_csv, write_json, write_parquet
from stages.metrics import classification_metrics, softmax
from stages.model import (
    class_names,
    load_classifier,
    predict_outputs,
    trained_max_length,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from stages.oos_detector import Detector

log = get_logger(__name__)


@params_section("evaluate")
@dataclass
class EvaluateParams:
    batch_size: PositiveInt = 128
    # text-length slice edges in characters: short < edges[0] <= medium < edges[1] <= long
    length_buckets: list[int] = field(default_factory=lambda: [60, 160])
    tfidf_max_features: PositiveInt = 20000

    def check_params(self, where: str) -> None:
        edges = self.length_buckets
        if len(edges) != 2 or not 0 < edges[0] < edges[1]:
            raise StageError(f"length_buckets must be two increasing positive numbers, got {edges}",
                             where=f"{where}.length_buckets", fix="e.g. length_buckets: [60, 160]")


def length_bucket(texts: pd.Series, edges: list[int]) -> pd.Series:
    import pandas as pd

    if len(edges) != 2 or edges[0] >= edges[1]:
        raise StageError(f"evaluate.length_buckets must be two increasing numbers, got {edges}",
                         where="params.yaml:evaluate")
    return pd.cut(texts.str.len(), [-1, edges[0] - 1, edges[1] - 1, float("inf")],
                  labels=["short", "medium", "long"]).astype(str)


def scoring_max_length(path: Path) -> int:
    """Each model is scored as it was trained: a champion trained on 128 tokens is not truncated
    to a candidate's 16."""
    max_length = trained_max_length(path)
    if max_length is None:
        raise StageError(f"{path / artifacts.MANIFEST_FILE} missing or without params.max_length",
                         where=str(path),
                         fix=artifacts.restore_fix(path))
    return max_length


@dataclass
class Scored:
    """One model's answers on the test rows, in their order."""

    # arrays typed Any: numpy is imported lazily, and the params tests resolve every
    # dataclass's hints in stage modules
    pred: list[str]            # predicted class names
    probs: Any                 # (rows, classes) probabilities, in the model's class order
    logits: Any                # (rows, classes)
    embeddings: Any            # (rows, hidden) pooled, as the ONNX graph's ``embedding``, or None
    classes: list[str]         # the model's classes in logit order


def model_predictions(path: Path, texts: list[str], params: EvaluateParams,
                      embeddings: bool = False) -> Scored:
    """The checkpoint at ``path`` on ``texts``: one forward pass, the pooled embeddings too when
    an out-of-scope detector needs them."""
    max_length = scoring_max_length(path)
    model, tokenizer = load_classifier(path)
    logits, pooled = predict_outputs(model, tokenizer, texts, max_length, params.batch_size,
                                     show_progress=True, embeddings=embeddings)
    names = class_names(model)
    return Scored([names[i] for i in logits.argmax(axis=1)], softmax(logits), logits, pooled, names)


def baselines(train: pd.DataFrame, test: pd.DataFrame, params: EvaluateParams) -> dict[str, list]:
    """Predictions of the majority-class and TF-IDF + logistic-regression baselines."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if train["label"].nunique() < 2:  # scikit-learn's logistic regression refuses one class
        raise StageError(f"the train split has {train['label'].nunique()} class(es): the TF-IDF "
                         "baseline (and any classifier) needs at least 2",
                         where=str(artifacts.split_path("train")),
                         fix="add labelled texts of other classes at the source and re-run "
                             "`dvc repro`")
    majority = train["label"].value_counts().sort_index().idxmax()
    tfidf = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1,
                        max_features=params.tfidf_max_features),
        LogisticRegression(max_iter=2000, C=10.0),
    ).fit(train["text"], train["label"])
    return {"majority": [majority] * len(test), "tfidf_logreg": list(tfidf.predict(test["text"]))}


def slice_metrics(df: pd.DataFrame, column: str, labels: list[str], has_champion: bool) -> dict:
    """Per slice: the candidate on all its rows; with a champion, both on the paired rows only."""
    def scores(part: pd.DataFrame, who: str) -> dict:
        m = classification_metrics(part["label"], part[f"{who}_pred"], labels)
        return {k: m[k] for k in ("accuracy", "macro_f1", "n")}

    out = {}
    for value, part in df.groupby(column, sort=True):
        paired = part[part["paired"]] if has_champion else part.iloc[:0]
        out[str(value)] = {
            "candidate": scores(part, "candidate"),
            "champion": scores(paired, "champion") if len(paired) else None,
            "candidate_paired": scores(paired, "candidate") if len(paired) else None,
        }
    return out


def trained_on(checkpoint: Path, keys: pd.Series) -> tuple[pd.Series, bool]:
    """Which rows (by text fingerprint) the checkpoint trained or was selected on, and whether
    its training data is known at all."""
    record = checkpoint / artifacts.TRAINING_DATA_FILE
    seen = seen_fingerprints(read_json(record) if record.is_file() else None)
    if seen is None:
        return keys.map(lambda _: False).astype(bool), False
    return keys.isin(seen), True


def paired_summary(pred: pd.DataFrame, labels: list[str], champion_known: bool) -> dict[str, Any]:
    """How many test rows the candidate-vs-champion comparison may use, and the scores on them."""
    rows = pred[pred["paired"]]
    return {
        "test_rows": len(pred),
        "rows": len(rows),
        "excluded_champion_trained_on": int(pred["champion_trained_on"].sum()),
        "excluded_candidate_trained_on": int(pred["candidate_trained_on"].sum()),
        "champion_training_data": "fingerprint" if champion_known else "unknown",
        "candidate": classification_metrics(rows["label"], rows["candidate_pred"], labels)
        if len(rows) else None,
        "champion": classification_metrics(rows["label"], rows["champion_pred"], labels)
        if len(rows) else None,
    }


def plot_confusion(cm: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stages.plots import draw_confusion, save_png

    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(labels), 0.6 + 0.6 * len(labels)))
    draw_confusion(ax, cm, labels, title)
    fig.tight_layout()
    save_png(fig, path, dpi=110)


def load_detectors(champion: Path | None) -> tuple[Detector | None, Detector | None]:
    """The candidate's out-of-scope detector and the champion's (None: the model has none).

    Without a candidate detector nothing is measured, so the champion's is not even read; a
    champion promoted before detectors has none in its ``onnx/``."""
    detector = oos_detector.load(artifacts.OOS_DIR)
    if detector is None or champion is None:
        return detector, None
    return detector, oos_detector.load(champion / artifacts.CHAMPION_ONNX)


def out_of_scope_label(detector: Detector | None, labels: list[str]) -> str | None:
    """The label of the test rows that are out-of-scope examples rather than a class the model
    should know: the detector's label, unless the model was trained with it as a class."""
    if detector is None or detector.label is None or detector.label in labels:
        return None
    return detector.label


def check_test_labels(test: pd.DataFrame, labels: list[str], oos_label: str | None) -> None:
    """Every test label is a class of the model, or the out-of-scope examples' label."""
    unknown = sorted(set(test["label"]) - set(labels) - {oos_label})
    if unknown:
        raise StageError(f"test split has classes the model was not trained on: {unknown}",
                         where=str(artifacts.split_path("test")), fix="re-run split and train")
    if oos_label is not None and len(test) and not test["label"].isin(labels).any():
        raise StageError(f"the test split has only out-of-scope rows (labelled {oos_label!r}): "
                         "no row of a class the model knows to score it on",
                         where=str(artifacts.split_path("test")),
                         fix="re-run split on data with labelled rows of the model's classes")


def candidate_frame(test: pd.DataFrame, cand: Scored, labels: list[str],
                    params: EvaluateParams) -> pd.DataFrame:
    """The predictions table, one row per test row: the row, its slice and the candidate's answer."""
    pred = test[["id", "text", "label"] + (["source"] if "source" in test else [])].copy()
    pred["length_bucket"] = length_bucket(test["text"], params.length_buckets)
    pred["candidate_pred"] = cand.pred
    pred["candidate_confidence"] = cand.probs.max(axis=1)
    for i, label in enumerate(labels):
        pred[f"prob_{label}"] = cand.probs[:, i]
    return pred


def score_champion(pred: pd.DataFrame, champion: Path | None, texts: list[str], keys: pd.Series,
                   params: EvaluateParams, detector: Detector | None) -> tuple[Scored | None, bool]:
    """The champion's answers on the same rows, added to ``pred`` with the pairing flags.

    Returns them and whether the champion's training data is known."""
    if champion is None:
        log.info("no champion yet: scoring the candidate and the baselines only")
        return None, False
    log.info("scoring champion %s on the same %d test rows", champion, len(texts))
    scored = model_predictions(champion, texts, params, embeddings=detector is not None)
    pred["champion_pred"] = scored.pred
    pred["champion_trained_on"], known = trained_on(champion, keys)
    pred["paired"] = ~pred["champion_trained_on"] & ~pred["candidate_trained_on"]
    log.info("paired comparison on %d of %d test rows (champion trained on %s)",
             int(pred["paired"].sum()), len(texts),
             f"{int(pred['champion_trained_on'].sum())} of them" if known
             else "unknown rows: it has no training-data fingerprint")
    return scored, known


def out_of_scope(pred: pd.DataFrame, labels: list[str], models: dict[str, Scored | None],
                 detectors: dict[str, Detector | None]) -> dict[str, Any]:
    """eval.json's ``oos``: each model's detector on the test rows (out-of-scope rows: those
    labelled with the candidate's detector label), its scores and flags added to ``pred``."""
    from stages.oos_metrics import measure, out_of_scope_rows

    is_oos = out_of_scope_rows(pred["label"], detectors["candidate"].label)
    out: dict[str, Any] = {"candidate": None, "champion": None}
    for who, scored in models.items():
        detector = detectors[who]
        if scored is None or detector is None:
            continue
        out[who], flags, scores = measure(detector, scored.logits, scored.embeddings,
                                          scored.classes, pred["label"], scored.pred, is_oos, labels)
        pred[f"{who}_oos_score"] = scores
        pred[f"{who}_out_of_scope"] = flags
    return out


def classification_summary(pred: pd.DataFrame, labels: list[str], has_champion: bool,
                           champion_known: bool) -> dict[str, Any]:
    """The classification metrics of eval.json, on the rows of ``pred`` (the in-scope rows)."""
    return {
        "candidate": classification_metrics(pred["label"], pred["candidate_pred"], labels),
        "champion": (classification_metrics(pred["label"], pred["champion_pred"], labels)
                     if has_champion else None),
        "paired": paired_summary(pred, labels, champion_known) if has_champion else None,
        "baselines": {
            "majority": classification_metrics(pred["label"], pred["majority_pred"], labels),
            "tfidf_logreg": classification_metrics(pred["label"], pred["tfidf_pred"], labels),
        },
        "slices": {col: slice_metrics(pred, col, labels, has_champion)
                   for col in ("length_bucket", "source") if col in pred},
    }


def evaluate(params: EvaluateParams) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix

    train, test = load_split("train"), load_split("test")
    texts = test["text"].tolist()
    champion = artifacts.champion_dir()
    detector, champion_detector = load_detectors(champion)
    cand = model_predictions(artifacts.CHECKPOINT_DIR, texts, params,
                             embeddings=detector is not None)
    labels = read_json(artifacts.CHECKPOINT_DIR / artifacts.LABELS_FILE)
    oos_label = out_of_scope_label(detector, labels)
    check_test_labels(test, labels, oos_label)

    pred = candidate_frame(test, cand, labels, params)
    keys = test["text"].map(text_fingerprint)
    pred["candidate_trained_on"], _ = trained_on(artifacts.CHECKPOINT_DIR, keys)
    if pred["candidate_trained_on"].any():
        log.warning("the candidate trained on %d test row(s): they are left out of the comparison",
                    int(pred["candidate_trained_on"].sum()))
    champ, champion_known = score_champion(pred, champion, texts, keys, params, champion_detector)
    # the baselines learn the model's classes only, as the candidate did
    for name, values in baselines(train[train["label"] != oos_label], test, params).items():
        pred[f"{'tfidf' if name == 'tfidf_logreg' else name}_pred"] = values
    oos = (out_of_scope(pred, labels, {"candidate": cand, "champion": champ},
                        {"candidate": detector, "champion": champion_detector})
           if detector is not None else None)

    # classification metrics on the rows of the model's classes (all rows without a detector)
    in_scope = pred[pred["label"] != oos_label] if oos_label is not None else pred
    if len(in_scope) < len(pred):
        log.info("%d out-of-scope test row(s) (labelled %r) are left out of the classification "
                 "metrics and measured under 'oos'", len(pred) - len(in_scope), oos_label)
    metrics = {"test_rows": len(test), "labels": labels,
               **classification_summary(in_scope, labels, champion is not None, champion_known)}
    if oos is not None:
        metrics["oos"] = oos
    cm = confusion_matrix(in_scope["label"], in_scope["candidate_pred"], labels=labels)
    return {"metrics": metrics, "predictions": pred, "in_scope": in_scope, "confusion": cm}


def log_oos(oos: dict[str, Any] | None) -> None:
    """One line on the candidate's detector."""
    c = (oos or {}).get("candidate")
    if not c:
        return
    caught = (f"out-of-scope recall {c['oos_recall']}, AUROC {c['auroc']} on {c['oos_rows']} rows"
              if c["oos_rows"] else "no out-of-scope test rows to measure recall on")
    log.info("out of scope (%s, threshold %s): in-scope rows flagged %s; %s", c["method"],
             c["threshold"], c["in_scope_flagged"], caught)


def main() -> None:
    import pandas as pd

    params = load_params("evaluate", EvaluateParams)
    result = evaluate(params)
    metrics, pred, in_scope = result["metrics"], result["predictions"], result["in_scope"]
    labels = metrics["labels"]
    write_parquet(artifacts.PREDICTIONS, pred)
    write_json(artifacts.EVAL_METRICS, metrics)
    write_csv(artifacts.CONFUSION_CSV, in_scope[["label", "candidate_pred"]].rename(
        columns={"label": "actual", "candidate_pred": "predicted"}))
    write_csv(artifacts.PER_CLASS_CSV, pd.DataFrame(
        [{"label": lab, "f1": v["f1"], "precision": v["precision"], "recall": v["recall"],
          "support": v["support"]} for lab, v in metrics["candidate"]["per_class"].items()]))
    plot_confusion(result["confusion"], labels, artifacts.CONFUSION_PNG,
                   f"candidate, test split (n={len(in_scope)})")
    c, b = metrics["candidate"], metrics["baselines"]
    log.info("macro-F1: candidate %.4f | tfidf_logreg %.4f | majority %.4f%s", c["macro_f1"],
             b["tfidf_logreg"]["macro_f1"], b["majority"]["macro_f1"],
             f" | champion {metrics['champion']['macro_f1']:.4f}" if metrics["champion"] else "")
    log_oos(metrics.get("oos"))
    log.info("wrote %s, %s, %s, %s", artifacts.EVAL_METRICS, artifacts.PREDICTIONS,
             artifacts.CONFUSION_CSV, artifacts.CONFUSION_PNG)


if __name__ == "__main__":
    from stages.stage_cli import run_stage

    run_stage(main, "stages.evaluate", __doc__)
