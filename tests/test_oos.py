"""The out-of-scope detector: each score separates far-away texts, the threshold is chosen on data,
the stage fits it on a real checkpoint, out-of-scope examples in the data are used (and never
trained as a class unless asked), and bad params or files are clear errors.

Scores are first checked on synthetic logits and embeddings whose answer is known (two tight
clusters; out-of-scope points far from both, or flat logits), then on the tiny random BERT, whose
texts made only of characters outside its vocabulary ([UNK] tokens) are far from every training
text in its embedding space.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages import artifacts, oos_detector
from stages.common import StageError
from tests.conftest import run_stage, set_params
from tests.helpers import assert_clear_error, assert_failed_with

MODULE = "stages.oos"
FAR_TEXTS = ["ΩΨΦ ΣΔΛ ΞΠΘ ЖЩЮ", "ЖЖЖ ЩЩЩ ΘΘΘ ΛΛΛ ΞΞΞ", "ΣΣΣ ΔΔΔ ΠΠΠ ΨΨΨ ЮЮЮ ЖЖЖ"]


# ---------------------------------------------------------------- scores on known answers

@pytest.fixture(scope="module")
def clusters() -> dict[str, np.ndarray]:
    """Two classes in 16 dimensions (tight clusters at +-4), in-scope and far test points, and
    logits that are peaked for in-scope points and flat for far ones."""
    rng = np.random.default_rng(0)
    centre = np.tile([4.0, -4.0], 8)

    def points(n: int, at: np.ndarray) -> np.ndarray:
        return rng.normal(0, 1, (n, 16)) + at

    train = np.r_[points(100, centre), points(100, -centre)]
    near = np.r_[points(30, centre), points(30, -centre)]
    far = points(40, np.tile([4.0, 4.0], 8))  # as far from either cluster as they are apart
    peaked = np.tile([6.0, -6.0], (60, 1)) + rng.normal(0, 0.3, (60, 2))
    flat = rng.normal(0, 0.3, (40, 2))
    return {"train": train, "classes": np.r_[np.zeros(100, int), np.ones(100, int)],
            "near": near, "far": far, "near_logits": peaked, "far_logits": flat}


@pytest.mark.parametrize("method", oos_detector.METHODS)
def test_each_score_puts_far_texts_above_in_scope_ones(method: str, clusters: dict) -> None:
    arrays = oos_detector.fit_arrays(clusters["train"], clusters["classes"], 2, bank_rows=1000)
    near = oos_detector.score(method, clusters["near_logits"], clusters["near"], arrays, 5)
    far = oos_detector.score(method, clusters["far_logits"], clusters["far"], arrays, 5)
    assert oos_detector.auroc(near, far) == 1.0
    threshold = oos_detector.choose_threshold(near, 0.95)
    assert (near <= threshold).mean() >= 0.95
    assert (far > threshold).all()
    figures = oos_detector.separation(near, far, threshold)
    assert figures["oos_recall"] == 1.0 and figures["fpr_at_95_tpr"] == 0.0


def test_mahalanobis_uses_the_covariance_not_only_the_distance() -> None:
    """Along a direction the classes vary in, a point is less surprising than one at the same
    Euclidean distance across it: the shared covariance, not the plain distance, decides."""
    rng = np.random.default_rng(1)
    spread = np.diag([10.0, 0.1])
    train = rng.normal(0, 1, (500, 2)) @ spread
    arrays = oos_detector.fit_arrays(train, np.zeros(500, int), 1, bank_rows=10)
    along, across = np.array([[5.0, 0.0]]), np.array([[0.0, 5.0]])
    assert (oos_detector.mahalanobis_score(across, arrays["whitening"], arrays["white_means"])
            > 100 * oos_detector.mahalanobis_score(along, arrays["whitening"], arrays["white_means"]))


def test_the_knn_bank_is_a_seeded_sample_of_unit_vectors() -> None:
    emb = np.random.default_rng(2).normal(0, 3, (50, 4))
    a = oos_detector.fit_arrays(emb, np.zeros(50, int), 1, bank_rows=20, seed=3)["bank"]
    b = oos_detector.fit_arrays(emb, np.zeros(50, int), 1, bank_rows=20, seed=3)["bank"]
    assert a.shape == (20, 4) and np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_a_class_without_training_rows_is_never_the_nearest_mean() -> None:
    emb = np.random.default_rng(3).normal(0, 1, (40, 3))
    arrays = oos_detector.fit_arrays(emb, np.zeros(40, int), 2, bank_rows=40)
    scores = oos_detector.mahalanobis_score(emb, arrays["whitening"], arrays["white_means"])
    assert np.isfinite(scores).all()


# ---------------------------------------------------------------- the threshold

def test_the_threshold_keeps_the_asked_share_of_in_scope_val_texts() -> None:
    inside = np.arange(100, dtype=float)
    threshold = oos_detector.choose_threshold(inside, 0.9)
    assert (inside <= threshold).mean() == pytest.approx(0.9, abs=0.011)


def test_out_of_scope_val_texts_only_ever_loosen_the_threshold() -> None:
    """Labelled out-of-scope examples far above every in-scope score: the threshold rises to keep
    every in-scope text, as they are all still caught; it never drops below the target."""
    inside, outside = np.arange(100, dtype=float), np.full(20, 500.0)
    base = oos_detector.choose_threshold(inside, 0.9)
    loosened = oos_detector.choose_threshold(inside, 0.9, outside)
    assert loosened > base and (inside <= loosened).all() and (outside > loosened).all()
    # overlapping examples cannot make it stricter than the in-scope target
    overlapping = np.linspace(0, 99, 20)
    assert oos_detector.choose_threshold(inside, 0.9, overlapping) >= base


def test_auroc_and_fpr_need_both_kinds_of_text() -> None:
    assert oos_detector.auroc(np.arange(3.0), np.array([])) is None
    assert oos_detector.fpr_at_recall(np.array([]), np.arange(3.0)) is None
    assert oos_detector.auroc(np.array([0.0, 1.0]), np.array([0.5])) == 0.5


# ---------------------------------------------------------------- the files

def detector_for_tests(out: Path, label: str | None = "out_of_scope") -> oos_detector.Detector:
    emb = np.random.default_rng(4).normal(0, 1, (30, 8))
    arrays = oos_detector.fit_arrays(emb, np.arange(30) % 3, 3, bank_rows=30)
    detector = oos_detector.Detector("knn", {m: 0.5 for m in oos_detector.METHODS}, label, 0.95,
                                     3, arrays, {"rows": {"val_in_scope": 9}})
    oos_detector.save(detector, out)
    return detector


def test_a_detector_reads_back_as_saved(tmp_path: Path) -> None:
    saved = detector_for_tests(tmp_path, label=None)
    loaded = oos_detector.load(tmp_path)
    assert loaded is not None and loaded.method == "knn" and loaded.label is None
    assert loaded.thresholds == saved.thresholds and loaded.knn_k == 3
    for name in oos_detector.ARRAY_NAMES:
        assert np.allclose(loaded.arrays[name], saved.arrays[name], atol=1e-5)
    emb = np.random.default_rng(5).normal(0, 1, (4, 8))
    assert np.allclose(loaded.score(np.zeros((4, 3)), emb), saved.score(np.zeros((4, 3)), emb),
                       atol=1e-5)


def test_a_model_exported_before_detectors_has_none(tmp_path: Path) -> None:
    assert oos_detector.load(tmp_path) is None


@pytest.mark.parametrize("damage", ["json", "arrays", "method"])
def test_a_damaged_detector_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    detector_for_tests(tmp_path)
    meta = tmp_path / artifacts.OOS_JSON
    if damage == "json":
        meta.write_text("{not json")
    elif damage == "arrays":
        (tmp_path / artifacts.OOS_ARRAYS).write_bytes(b"PK\x03\x04 truncated")
    else:
        meta.write_text(json.dumps(json.loads(meta.read_text()) | {"method": "magic"}))
    with pytest.raises(StageError) as err:
        oos_detector.load(tmp_path)
    assert "dvc repro oos" in err.value.fix and str(meta) == err.value.where


def test_an_embedding_score_on_a_logits_only_model_says_what_to_do(tmp_path: Path) -> None:
    detector = detector_for_tests(tmp_path)
    with pytest.raises(StageError, match="needs the pooled embedding") as err:
        detector.score(np.zeros((2, 3)), None)
    assert "msp or energy" in err.value.fix
    assert detector.score(np.zeros((2, 3)), None, method="energy").shape == (2,)


def test_a_model_that_learned_the_label_as_a_class_flags_its_own_answer(tmp_path: Path) -> None:
    detector = detector_for_tests(tmp_path)
    detector.thresholds["knn"] = 10.0  # nothing is far enough: only the predicted class decides
    logits = np.array([[5.0, 0, 0], [0, 5.0, 0]])
    flags, _ = detector.decide(logits, np.ones((2, 8)), ["a", "out_of_scope", "b"])
    assert flags.tolist() == [False, True]
    flags, _ = detector.decide(logits, np.ones((2, 8)), ["a", "c", "b"])
    assert flags.tolist() == [False, False]


# ---------------------------------------------------------------- the stage, on the tiny model

def with_oos_rows(root: Path, per_split: int = 3) -> None:
    """Add rows labelled out_of_scope (texts of [UNK] tokens) to the train and val splits."""
    for name in ("train", "val"):
        path = root / f"data/splits/{name}.parquet"
        df = pd.read_parquet(path)
        extra = pd.DataFrame({"id": [f"oos-{name}-{i}" for i in range(per_split)],
                              "text": FAR_TEXTS[:per_split], "label": "out_of_scope",
                              "source": "email"})
        pd.concat([df, extra], ignore_index=True).to_parquet(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A workdir with the tiny splits (plus out-of-scope examples) and a trained checkpoint."""
    import shutil

    from tests.conftest import write_tiny_splits
    from tests.helpers import REPO_ROOT

    root = tmp_path_factory.mktemp("oos")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    write_tiny_splits(root, tiny_model_dir, epochs=3)
    with_oos_rows(root)
    proc = run_stage("train", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 row(s) labelled 'out_of_scope' are out-of-scope examples, left out" in proc.stderr
    return root


def copy_project(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest)
    return dest


def test_train_leaves_out_of_scope_examples_out(trained: Path) -> None:
    labels = json.loads((trained / artifacts.CHECKPOINT_DIR / artifacts.LABELS_FILE).read_text())
    assert "out_of_scope" not in labels and len(labels) == 6
    seen = json.loads((trained / artifacts.CHECKPOINT_DIR / artifacts.TRAINING_DATA_FILE).read_text())
    train_rows = len(pd.read_parquet(trained / "data/splits/train.parquet"))
    assert seen["rows"]["train"] == train_rows - 3


def test_the_stage_fits_a_detector_that_flags_far_texts(trained: Path, tmp_path: Path) -> None:
    from stages.model import class_names, load_classifier, predict_outputs

    root = copy_project(trained, tmp_path / "p")
    proc = run_stage("oos", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    detector = oos_detector.load(root / artifacts.OOS_DIR)
    assert detector is not None and detector.label == "out_of_scope"
    record = json.loads((root / artifacts.OOS_DIR / artifacts.OOS_JSON).read_text())
    assert record["val"]["rows"]["val_oos"] == 3 and set(record["thresholds"]) == set(oos_detector.METHODS)
    # in-scope val texts kept: at least the asked share, the val examples' threshold may loosen it
    for method, figures in record["val"]["methods"].items():
        assert figures["in_scope_flagged"] <= 0.05 + 1e-9, (method, figures)
    model, tokenizer = load_classifier(root / artifacts.CHECKPOINT_DIR)
    test = pd.read_parquet(root / "data/splits/test.parquet")["text"].tolist()
    far = ["ΛΛΛ ΞΞΞ ΩΩΩ ЖЖЖ", "ЮЮЮ ΨΨΨ ΦΦΦ ЩЩЩ ΣΣΣ"]  # unseen, but [UNK] tokens like the examples
    logits, emb = predict_outputs(model, tokenizer, test + far, 32)
    for method in ("mahalanobis", "knn"):  # the embedding scores; the tiny model's logits are noise
        scores = detector.score(logits, emb, method)
        assert oos_detector.auroc(scores[:len(test)], scores[len(test):]) == 1.0, method
    flags, _ = detector.decide(logits, emb, class_names(model))
    assert flags[len(test):].all() and flags[:len(test)].mean() < 0.2


def test_the_stage_refuses_a_label_that_is_a_class_of_the_model(trained: Path, tmp_path: Path) -> None:
    root = copy_project(trained, tmp_path / "p")
    set_params(root, {"oos": {"label": "refund_request"}})
    assert_clear_error(run_stage("oos", root), MODULE, "oos.label 'refund_request' is also a class",
                       "params.yaml:oos.label", "oos.train_as_class: true")
    assert not (root / artifacts.OOS_DIR).exists()


@pytest.mark.parametrize(("key", "value", "phrase"), [
    ("keep_in_scope", 1.0, "keep_in_scope = 1.0 is out of range"),
    ("keep_in_scope", 0, "keep_in_scope = 0.0 is out of range"),
    ("label", " ", "oos.label is empty"),
    ("method", "softmax", "method"),
])
def test_bad_params_are_refused_before_any_work(split_dir: Path, key: str, value: object,
                                                phrase: str) -> None:
    set_params(split_dir, {"oos": {key: value}})
    assert_failed_with(run_stage("oos", split_dir), MODULE, phrase)
    assert not (split_dir / artifacts.OOS_DIR).exists()


def test_validate_refuses_a_label_that_collides_with_a_declared_class(tiny_model_dir: Path) -> None:
    from stages.oos_params import OosParams
    from stages.validate import ValidateParams, validate_raw
    from tests.conftest import make_rows

    texts, labels = map(pd.DataFrame, make_rows(20))
    declared = ValidateParams(labels=sorted(set(labels["label"])))
    with pytest.raises(StageError, match="oos.label 'refund_request' is also a class") as err:
        validate_raw(texts, labels, declared, None, OosParams(label="refund_request"))
    assert err.value.where == "params.yaml:oos.label"
    # out-of-scope examples are accepted beside a declared label set, not a new class
    texts.loc[len(texts)] = {"id": "x1", "text": FAR_TEXTS[0], "source": "email"}
    labels.loc[len(labels)] = {"id": "x1", "label": "out_of_scope"}
    _, metrics = validate_raw(texts, labels, declared, None, OosParams())
    assert metrics["label_set"]["new"] == []
