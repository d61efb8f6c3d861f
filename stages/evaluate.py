"""evaluate: score the candidate, the champion and two baselines on the same test split.

Paired: both models predict the same test rows, and rows either model learned from (per its
``training_data.json``) are flagged and left out of the paired numbers. Baselines: majority class
and TF-IDF + logistic regression; metrics also per slice.
More: docs/gates.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages import artifacts
from stages.common import PositiveInt, StageError, get_logger, load_params, params_section
from stages.data import load_split, seen_fingerprints, text_fingerprint
from stages.io import read_json, write_csv, write_json, write_parquet
from stages.metrics import classification_metrics, softmax
from stages.model import (
    class_names,
    load_classifier,
    predict_logits,
    trained_max_length,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

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


def model_predictions(path: Path, texts: list[str], params: EvaluateParams) -> tuple[list[str], np.ndarray]:
    """Predicted class names and class probabilities of the checkpoint at ``path``."""
    max_length = scoring_max_length(path)
    model, tokenizer = load_classifier(path)
    logits = predict_logits(model, tokenizer, texts, max_length, params.batch_size, show_progress=True)
    names = class_names(model)
    return [names[i] for i in logits.argmax(axis=1)], softmax(logits)


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


def evaluate(params: EvaluateParams) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix

    train, test = load_split("train"), load_split("test")
    texts = test["text"].tolist()
    candidate_pred, probs = model_predictions(artifacts.CHECKPOINT_DIR, texts, params)
    labels = read_json(artifacts.CHECKPOINT_DIR / artifacts.LABELS_FILE)
    unknown = sorted(set(test["label"]) - set(labels))
    if unknown:
        raise StageError(f"test split has classes the model was not trained on: {unknown}",
                         where=str(artifacts.split_path("test")), fix="re-run split and train")

    pred = test[["id", "text", "label"] + (["source"] if "source" in test else [])].copy()
    pred["length_bucket"] = length_bucket(test["text"], params.length_buckets)
    pred["candidate_pred"] = candidate_pred
    pred["candidate_confidence"] = probs.max(axis=1)
    for i, label in enumerate(labels):
        pred[f"prob_{label}"] = probs[:, i]

    keys = test["text"].map(text_fingerprint)
    pred["candidate_trained_on"], _ = trained_on(artifacts.CHECKPOINT_DIR, keys)
    if pred["candidate_trained_on"].any():
        log.warning("the candidate trained on %d test row(s): they are left out of the comparison",
                    int(pred["candidate_trained_on"].sum()))
    champion = artifacts.champion_dir()
    champion_known = False
    if champion is not None:
        log.info("scoring champion %s on the same %d test rows", champion, len(test))
        pred["champion_pred"], _ = model_predictions(champion, texts, params)
        pred["champion_trained_on"], champion_known = trained_on(champion, keys)
        pred["paired"] = ~pred["champion_trained_on"] & ~pred["candidate_trained_on"]
        log.info("paired comparison on %d of %d test rows (champion trained on %s)",
                 int(pred["paired"].sum()), len(test),
                 f"{int(pred['champion_trained_on'].sum())} of them" if champion_known
                 else "unknown rows: it has no training-data fingerprint")
    else:
        log.info("no champion yet: scoring the candidate and the baselines only")
    for name, values in baselines(train, test, params).items():
        pred[f"{'tfidf' if name == 'tfidf_logreg' else name}_pred"] = values

    metrics = {
        "test_rows": len(test),
        "labels": labels,
        "candidate": classification_metrics(pred["label"], pred["candidate_pred"], labels),
        "champion": (classification_metrics(pred["label"], pred["champion_pred"], labels)
                     if champion is not None else None),
        "paired": paired_summary(pred, labels, champion_known) if champion is not None else None,
        "baselines": {
            "majority": classification_metrics(pred["label"], pred["majority_pred"], labels),
            "tfidf_logreg": classification_metrics(pred["label"], pred["tfidf_pred"], labels),
        },
        "slices": {col: slice_metrics(pred, col, labels, champion is not None)
                   for col in ("length_bucket", "source") if col in pred},
    }
    cm = confusion_matrix(pred["label"], pred["candidate_pred"], labels=labels)
    return {"metrics": metrics, "predictions": pred, "confusion": cm}


def main() -> None:
    import pandas as pd

    params = load_params("evaluate", EvaluateParams)
    result = evaluate(params)
    metrics, pred = result["metrics"], result["predictions"]
    labels = metrics["labels"]
    write_parquet(artifacts.PREDICTIONS, pred)
    write_json(artifacts.EVAL_METRICS, metrics)
    write_csv(artifacts.CONFUSION_CSV, pred[["label", "candidate_pred"]].rename(
        columns={"label": "actual", "candidate_pred": "predicted"}))
    write_csv(artifacts.PER_CLASS_CSV, pd.DataFrame(
        [{"label": lab, "f1": v["f1"], "precision": v["precision"], "recall": v["recall"],
          "support": v["support"]} for lab, v in metrics["candidate"]["per_class"].items()]))
    plot_confusion(result["confusion"], labels, artifacts.CONFUSION_PNG,
                   f"candidate, test split (n={len(pred)})")
    c, b = metrics["candidate"], metrics["baselines"]
    log.info("macro-F1: candidate %.4f | tfidf_logreg %.4f | majority %.4f%s", c["macro_f1"],
             b["tfidf_logreg"]["macro_f1"], b["majority"]["macro_f1"],
             f" | champion {metrics['champion']['macro_f1']:.4f}" if metrics["champion"] else "")
    log.info("wrote %s, %s, %s, %s", artifacts.EVAL_METRICS, artifacts.PREDICTIONS,
             artifacts.CONFUSION_CSV, artifacts.CONFUSION_PNG)


if __name__ == "__main__":
    from stages.stage_cli import run_stage

    run_stage(main, "stages.evaluate", __doc__)
