"""Out-of-scope detection in evaluate, the gate and the reports, on the tiny model's real stages.

One checkpoint is trained for the module; its detector is fitted the way the ``oos`` stage does
(``fit_arrays`` on the train embeddings, ``choose_threshold`` on the val scores) and written into
``models/oos``. Out-of-scope test rows are texts labelled ``out_of_scope``. The detector's threshold
is then set where some rows of each kind are flagged and some are not, so that every figure the
gate checks lies strictly between 0 and 1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stages import artifacts
from stages.gate import GateParams, run_gate
from tests.conftest import (
    REPO_ROOT,
    TINY_PIPELINE,
    run_command,
    run_stage,
    set_params,
    write_tiny_splits,
)
from tests.helpers import assert_failed_with, run_module

LABEL = "out_of_scope"
METHOD = "mahalanobis"
OOS_TEXTS = ["hi hello how are you today", "what is the weather like this week",
             "can you help me write a new song", "tell me why the screen is blue",
             "is it late in the city already", "i would like a new street name",
             "thanks you have been a help", "what quality of data is new today"]
# the absolute gate checks off (the tiny model cannot reach the project's floors): only the
# out-of-scope checks under test decide
OFF = dict(min_macro_f1=0.0, min_accuracy=None, min_class_recall=None, tfidf_margin=None,
           max_regression_macro_f1=None, max_regression_slice=None, min_paired_rows=5)
OOS_SCORE_COLUMNS = ["candidate_oos_score", "candidate_out_of_scope"]


# ------------------------------------------------------------------------------- the projects

def model_outputs(root: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Logits, pooled embeddings and classes of the project's checkpoint, as evaluate scores."""
    from stages.model import class_names, load_classifier, predict_outputs, trained_max_length

    checkpoint = root / artifacts.CHECKPOINT_DIR
    model, tokenizer = load_classifier(checkpoint)
    logits, embeddings = predict_outputs(model, tokenizer, texts, trained_max_length(checkpoint),
                                         batch_size=128)
    return logits, embeddings, class_names(model)


def oos_rows(n: int = len(OOS_TEXTS)) -> pd.DataFrame:
    return pd.DataFrame([{"id": f"oos{i:03d}", "text": text, "source": "email", "label": LABEL}
                         for i, text in enumerate(OOS_TEXTS[:n])])


def add_test_rows(root: Path, rows: pd.DataFrame) -> None:
    path = root / artifacts.split_path("test")
    test = pd.read_parquet(path)
    pd.concat([test, rows[test.columns]], ignore_index=True).to_parquet(path)


def copy_project(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def run_evaluate(root: Path) -> dict[str, Any]:
    """The evaluate stage in this process (in ``root``, as DVC runs it); eval.json's contents."""
    from stages.evaluate import main

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        main()
    return json.loads((root / artifacts.EVAL_METRICS).read_text())


def predictions(root: Path) -> pd.DataFrame:
    return pd.read_parquet(root / artifacts.PREDICTIONS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    """A trained tiny project, and a detector fitted on it (its parts, so tests can move the
    threshold): the threshold of METHOD lies where both kinds of test rows have some scores above
    and some below it."""
    from stages.oos_detector import METHODS, choose_threshold, fit_arrays, score

    root = tmp_path_factory.mktemp("oos") / "trained"
    root.mkdir()
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    write_tiny_splits(root, tiny_model_dir, epochs=1)
    proc = run_module("stages.train", root)
    assert proc.returncode == 0, proc.stderr

    train, val, test = (pd.read_parquet(root / artifacts.split_path(s))
                        for s in ("train", "val", "test"))
    logits, embeddings, classes = model_outputs(root, train["text"].tolist())
    arrays = fit_arrays(embeddings, np.array([classes.index(c) for c in train["label"]]),
                        len(classes), bank_rows=1000)
    val_logits, val_embeddings, _ = model_outputs(root, val["text"].tolist())
    thresholds = {m: choose_threshold(score(m, val_logits, val_embeddings, arrays, 1), 0.95)
                  for m in METHODS}
    test_logits, test_embeddings, _ = model_outputs(root, test["text"].tolist() + OOS_TEXTS)
    scores = score(METHOD, test_logits, test_embeddings, arrays, 1)
    thresholds[METHOD] = mixed_threshold(scores[:len(test)], scores[len(test):])
    return {"root": root, "arrays": arrays, "thresholds": thresholds, "scores": np.sort(scores)}


def mixed_threshold(inside: np.ndarray, outside: np.ndarray) -> float:
    """A threshold between two neighbouring scores that flags some but not all of each kind."""
    both = np.sort(np.concatenate([inside, outside]))
    cuts = (both[1:] + both[:-1]) / 2
    lo, hi = max(inside.min(), outside.min()), min(inside.max(), outside.max())
    cuts = cuts[(cuts > lo) & (cuts < hi)]
    assert len(cuts), "the score separates the tiny test rows perfectly: no threshold mixes them"
    return float(cuts[len(cuts) // 2])


def write_detector(parts: dict[str, Any], out_dir: Path, method: str = METHOD,
                   label: str | None = LABEL, **thresholds: float) -> None:
    from stages.oos_detector import Detector, save

    det = Detector(method, {**parts["thresholds"], **thresholds}, label, 0.95, 1, parts["arrays"])
    save(det, out_dir)


@pytest.fixture(scope="module")
def plain(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Evaluated without a detector (a project from before the feature)."""
    root = copy_project(trained["root"], tmp_path_factory.mktemp("oos") / "plain")
    run_evaluate(root)
    return root


@pytest.fixture(scope="module")
def no_oos_rows(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Evaluated with a detector, on a test split without out-of-scope rows."""
    root = copy_project(trained["root"], tmp_path_factory.mktemp("oos") / "no-oos-rows")
    write_detector(trained, root / artifacts.OOS_DIR)
    run_evaluate(root)
    return root


@pytest.fixture(scope="module")
def measured(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Evaluated with a detector and eight out-of-scope test rows, no champion."""
    root = copy_project(trained["root"], tmp_path_factory.mktemp("oos") / "measured")
    write_detector(trained, root / artifacts.OOS_DIR)
    add_test_rows(root, oos_rows())
    run_evaluate(root)
    return root


def make_champion(root: Path) -> Path:
    """The candidate's checkpoint promoted as it is (same training data, so every test row pairs)."""
    champion = root / artifacts.CHAMPION_DIR
    shutil.copytree(root / artifacts.CHECKPOINT_DIR, champion)
    (root / artifacts.CHAMPION_POINTER).write_text(
        json.dumps({"champion": {"path": str(artifacts.CHAMPION_DIR)}}))
    return champion


@pytest.fixture(scope="module")
def with_champion(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As ``measured``, against a champion whose detector flags every row (threshold below every
    score): its out-of-scope recall is 1, the candidate's about a half."""
    root = copy_project(trained["root"], tmp_path_factory.mktemp("oos") / "champion")
    write_detector(trained, root / artifacts.OOS_DIR)
    champion = make_champion(root)
    write_detector(trained, champion / artifacts.CHAMPION_ONNX,
                   **{METHOD: float(trained["scores"][0]) - 1.0})
    add_test_rows(root, oos_rows())
    run_evaluate(root)
    return root


def gate_in(root: Path, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """The gate stage in a copy of ``root`` (tests share the evaluated projects)."""
    work = copy_project(root, tmp_path / "gate")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        result = run_gate(GateParams(**{**OFF, **overrides}))
    result["gate_md"] = (work / artifacts.GATE_REPORT).read_text()
    return result


def by_name(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


# ------------------------------------------------------------------------------- evaluate

def test_without_a_detector_nothing_changes(plain: Path) -> None:
    ev = json.loads((plain / artifacts.EVAL_METRICS).read_text())
    assert "oos" not in ev
    pred = predictions(plain)
    assert not any("oos" in c or "out_of_scope" in c for c in pred.columns)


def test_a_detector_only_adds_the_oos_key(plain: Path, no_oos_rows: Path) -> None:
    before = json.loads((plain / artifacts.EVAL_METRICS).read_text())
    after = json.loads((no_oos_rows / artifacts.EVAL_METRICS).read_text())
    oos = after.pop("oos")
    assert after == before                           # every classification figure identical
    pd.testing.assert_frame_equal(predictions(no_oos_rows).drop(columns=OOS_SCORE_COLUMNS),
                                  predictions(plain))
    cand = oos["candidate"]
    assert oos["champion"] is None
    assert (cand["method"], cand["label"], cand["in_scope_rows"], cand["oos_rows"]) == \
        (METHOD, LABEL, before["test_rows"], 0)
    # with no out-of-scope rows there is nothing to catch: those figures are not there at all
    assert not {"oos_recall", "oos_precision", "auroc", "fpr_at_95_tpr"} & set(cand)
    assert set(cand["methods"]) == {"msp", "energy", "mahalanobis", "knn"}
    for figures in cand["methods"].values():
        assert figures["auroc"] is None and figures["oos_rows"] == 0
    assert cand["methods"][METHOD]["in_scope_flagged"] == cand["in_scope_flagged"]


def test_out_of_scope_rows_are_measured_not_classified(plain: Path, measured: Path) -> None:
    before = json.loads((plain / artifacts.EVAL_METRICS).read_text())
    ev = json.loads((measured / artifacts.EVAL_METRICS).read_text())
    n = before["test_rows"]
    assert ev["test_rows"] == n + len(OOS_TEXTS)
    oos = ev.pop("oos")["candidate"]
    # the classification metrics are those of the in-scope rows: exactly as without the new rows
    assert {k: v for k, v in ev.items() if k != "test_rows"} == \
        {k: v for k, v in before.items() if k != "test_rows"}
    assert ev["candidate"]["n"] == n and LABEL not in ev["labels"]

    from sklearn.metrics import f1_score

    pred = predictions(measured)
    assert len(pred) == n + len(OOS_TEXTS)
    is_oos = (pred["label"] == LABEL).to_numpy()
    flags = pred["candidate_out_of_scope"].to_numpy(dtype=bool)
    scores = pred["candidate_oos_score"].to_numpy()
    assert (oos["in_scope_rows"], oos["oos_rows"]) == (n, len(OOS_TEXTS))
    assert np.array_equal(flags, scores > oos["threshold"])
    assert oos["oos_recall"] == pytest.approx(flags[is_oos].mean(), abs=1e-6)
    assert oos["in_scope_flagged"] == pytest.approx(flags[~is_oos].mean(), abs=1e-6)
    assert oos["oos_precision"] == pytest.approx(flags[is_oos].sum() / flags.sum(), abs=1e-6)
    assert 0 < oos["oos_recall"] < 1 and 0 < oos["in_scope_flagged"] < 1
    inside = pred[~is_oos]
    right = (inside["candidate_pred"] == inside["label"]).to_numpy()
    kept = ~flags[~is_oos]
    assert oos["accuracy_with_abstention"] == pytest.approx((right & kept).mean(), abs=1e-6)
    assert oos["selective_accuracy"] == pytest.approx(right[kept].mean(), abs=1e-6)
    assert oos["accuracy_with_abstention"] <= ev["candidate"]["accuracy"]
    # macro-F1 with an abstention as a miss of the true class (and a prediction of no class)
    answered = np.where(flags[~is_oos], "(abstained)", inside["candidate_pred"])
    assert oos["macro_f1_with_abstention"] == pytest.approx(
        f1_score(inside["label"], answered, labels=ev["labels"], average="macro",
                 zero_division=0), abs=1e-6)
    # AUROC: the share of (in-scope, out-of-scope) pairs the score orders right
    pairs = scores[is_oos][:, None] > scores[~is_oos][None, :]
    assert oos["auroc"] == pytest.approx(pairs.mean(), abs=1e-6)
    assert 0 <= oos["fpr_at_95_tpr"] <= 1
    for method, figures in oos["methods"].items():
        assert figures["oos_rows"] == len(OOS_TEXTS) and figures["in_scope_rows"] == n, method
        assert 0 <= figures["auroc"] <= 1
    assert oos["methods"][METHOD]["auroc"] == oos["auroc"]
    # the confusion CSV is the classification's: in-scope rows only
    assert len(pd.read_csv(measured / artifacts.CONFUSION_CSV)) == n


def test_out_of_scope_rows_without_a_detector_are_an_unknown_class(trained: dict,
                                                                   tmp_path: Path) -> None:
    root = copy_project(trained["root"], tmp_path / "p")
    add_test_rows(root, oos_rows(2))
    proc = run_stage("evaluate", root)
    assert_failed_with(proc, "stages.evaluate",
                       "test split has classes the model was not trained on: ['out_of_scope']",
                       "re-run split and train")


def test_a_genuinely_unknown_class_still_fails_with_a_detector(trained: dict,
                                                               tmp_path: Path) -> None:
    root = copy_project(trained["root"], tmp_path / "p")
    write_detector(trained, root / artifacts.OOS_DIR)
    add_test_rows(root, pd.concat([oos_rows(2), oos_rows(1).assign(id="new1", label="gift_card")]))
    proc = run_stage("evaluate", root)
    err = assert_failed_with(proc, "stages.evaluate",
                             "test split has classes the model was not trained on: ['gift_card']")
    assert "'out_of_scope'" not in err                # its rows are out-of-scope examples


def test_the_champion_is_measured_with_its_own_detector(with_champion: Path, measured: Path) -> None:
    ev = json.loads((with_champion / artifacts.EVAL_METRICS).read_text())
    cand, champ = ev["oos"]["candidate"], ev["oos"]["champion"]
    alone = json.loads((measured / artifacts.EVAL_METRICS).read_text())["oos"]["candidate"]
    assert cand == alone                             # the champion changes nothing of the candidate
    assert champ["oos_recall"] == 1.0 and champ["in_scope_flagged"] == 1.0
    assert champ["accuracy_with_abstention"] == 0.0 and champ["selective_accuracy"] is None
    assert champ["auroc"] == cand["auroc"]           # same model, same score: only the threshold moved
    pred = predictions(with_champion)
    assert pred["champion_out_of_scope"].all()
    assert np.allclose(pred["champion_oos_score"], pred["candidate_oos_score"])
    # the classification comparison is still on the in-scope rows only
    assert ev["paired"]["test_rows"] == ev["candidate"]["n"] == ev["test_rows"] - len(OOS_TEXTS)


def test_an_old_champion_without_a_detector(with_champion: Path, tmp_path: Path) -> None:
    root = copy_project(with_champion, tmp_path / "p")
    shutil.rmtree(root / artifacts.CHAMPION_DIR / artifacts.CHAMPION_ONNX)
    ev = run_evaluate(root)
    assert ev["oos"]["champion"] is None and ev["oos"]["candidate"]["oos_rows"] == len(OOS_TEXTS)
    assert "champion_out_of_scope" not in predictions(root).columns
    result = gate_in(root, tmp_path, max_regression_oos_recall=0.1, min_oos_recall=0.0)
    assert result["passed"]
    assert "max_regression_oos_recall" not in by_name(result)
    assert any(s.startswith("max_regression_oos_recall (the champion has no out-of-scope detector")
               for s in result["skipped"])


# ------------------------------------------------------------------------------- gate

def oos_figures(root: Path) -> dict[str, Any]:
    return json.loads((root / artifacts.EVAL_METRICS).read_text())["oos"]["candidate"]


def test_the_oos_limits_pass_at_the_measured_values(measured: Path, tmp_path: Path) -> None:
    fig = oos_figures(measured)
    result = gate_in(measured, tmp_path, min_oos_recall=fig["oos_recall"],
                     min_oos_auroc=fig["auroc"], max_in_scope_flagged=fig["in_scope_flagged"])
    assert result["passed"], result["failed"]
    rows = by_name(result)
    for name, figure in (("min_oos_recall", "oos_recall"), ("min_oos_auroc", "auroc"),
                         ("max_in_scope_flagged", "in_scope_flagged")):
        row = rows[name]
        assert row["value"] == row["threshold"] == fig[figure] and row["passed"] and row["blocking"]
        assert set(row) == {"name", "value", "threshold", "delta_vs_champion", "ci95", "passed",
                            "blocking", "detail"}
    assert rows["min_oos_recall"]["detail"].startswith(f"{METHOD} score")
    assert result["headline"]["oos"]["candidate"]["oos_recall"] == fig["oos_recall"]
    md = result["gate_md"]
    assert "### Out of scope" in md and f"**{METHOD}**" in md
    assert "| `min_oos_recall` |" in md and "| `max_in_scope_flagged` |" in md
    assert "- Out of scope: min_oos_recall" in md


@pytest.mark.parametrize("name, figure, step", [("min_oos_recall", "oos_recall", 0.01),
                                                 ("min_oos_auroc", "auroc", 0.01),
                                                 ("max_in_scope_flagged", "in_scope_flagged", -0.01)])
def test_each_oos_limit_fails_just_past_the_measured_value(measured: Path, tmp_path: Path,
                                                           name: str, figure: str,
                                                           step: float) -> None:
    value = oos_figures(measured)[figure]
    assert 0.01 < value < 0.99                      # the fixture's threshold makes sure of it
    result = gate_in(measured, tmp_path, **{name: round(value + step, 6)})
    assert result["failed"] == [name] and not result["passed"]
    assert by_name(result)[name]["value"] == value
    assert f"| `{name}` |" in result["gate_md"] and "**FAIL**" in result["gate_md"]
    warned = gate_in(measured, tmp_path / "warn", **{name: round(value + step, 6)},
                     warn_only=[name])
    assert warned["passed"] and warned["warnings"] == [name]


def test_a_limit_with_no_out_of_scope_rows_fails_and_says_how_to_fix(no_oos_rows: Path,
                                                                      tmp_path: Path) -> None:
    result = gate_in(no_oos_rows, tmp_path, min_oos_recall=0.5, min_oos_auroc=0.5,
                     max_in_scope_flagged=1.0)
    assert result["failed"] == ["min_oos_recall", "min_oos_auroc"]
    rows = by_name(result)
    for name in ("min_oos_recall", "min_oos_auroc"):
        assert rows[name]["value"] is None and rows[name]["blocking"]
        assert "no out-of-scope rows in the test split" in rows[name]["detail"]
        assert "add texts labelled `out_of_scope` to the labelled data" in rows[name]["detail"]
    assert rows["max_in_scope_flagged"]["passed"]   # in-scope rows are there: it is measured


def test_a_limit_without_a_detector_fails_and_says_how_to_fix(plain: Path, tmp_path: Path) -> None:
    result = gate_in(plain, tmp_path, max_in_scope_flagged=0.5)
    row = by_name(result)["max_in_scope_flagged"]
    assert result["failed"] == ["max_in_scope_flagged"] and row["value"] is None
    assert "the candidate has no out-of-scope detector" in row["detail"]
    assert "dvc repro oos evaluate" in row["detail"]
    assert "oos" not in result["headline"]


def test_the_gate_cli_stops_on_an_unmeasurable_limit(no_oos_rows: Path, tmp_path: Path) -> None:
    root = copy_project(no_oos_rows, tmp_path / "p")
    set_params(root, {"gate": {**TINY_PIPELINE["gate"], "min_oos_recall": 0.9}})
    proc = run_stage("gate", root)
    assert_failed_with(proc, "stages.gate", "gate FAILED: 1 blocking check(s) failed",
                       "min_oos_recall: value — vs threshold 0.9000",
                       "add texts labelled `out_of_scope`")
    gate = json.loads((root / artifacts.GATE_METRICS).read_text())
    assert gate["failed"] == ["min_oos_recall"]


def test_without_oos_params_the_gate_is_as_before(plain: Path, measured: Path,
                                                  tmp_path: Path) -> None:
    before = gate_in(plain, tmp_path / "a")
    after = gate_in(measured, tmp_path / "b")
    # out-of-scope rows are left out of the classification checks, as evaluate left them out
    assert after["checks"] == before["checks"] and after["passed"] == before["passed"]
    assert after["headline"]["test_rows"] == before["headline"]["test_rows"]
    assert {"min_oos_recall", "max_regression_oos_recall"} <= set(before["disabled"])


def test_the_champion_comparison(with_champion: Path, tmp_path: Path) -> None:
    cand = oos_figures(with_champion)
    result = gate_in(with_champion, tmp_path, max_regression_oos_recall=0.1, min_oos_recall=0.0)
    rows = by_name(result)
    row = rows["max_regression_oos_recall"]
    # the candidate catches about half of the out-of-scope rows, the champion all of them
    assert row["value"] == pytest.approx(cand["oos_recall"] - 1.0, abs=1e-6)
    assert row["threshold"] == -0.1 and not row["passed"] and row["blocking"]
    assert f"on {len(OOS_TEXTS)} paired out-of-scope rows" in row["detail"]
    assert rows["min_oos_recall"]["delta_vs_champion"] == row["value"]
    assert result["failed"] == ["max_regression_oos_recall"]
    paired = result["headline"]["oos"]["paired"]
    assert paired["champion"]["oos_recall"] == 1.0 and paired["oos_rows"] == len(OOS_TEXTS)
    assert "On the" in result["gate_md"] and "champion (mahalanobis)" in result["gate_md"]

    lenient = gate_in(with_champion, tmp_path / "lenient", max_regression_oos_recall=1.0)
    assert lenient["passed"] and by_name(lenient)["max_regression_oos_recall"]["passed"]


def test_the_champion_comparison_waits_for_a_champion(measured: Path, tmp_path: Path) -> None:
    result = gate_in(measured, tmp_path, max_regression_oos_recall=0.1)
    assert result["passed"] and "max_regression_oos_recall" not in by_name(result)
    assert "max_regression_oos_recall (no champion yet)" in result["skipped"]


# ------------------------------------------------------------------------------- reports

def test_the_pr_report_section(plain: Path, measured: Path, with_champion: Path) -> None:
    from commands.report import oos_section

    plain_ev, measured_ev, champ_ev = (json.loads((r / artifacts.EVAL_METRICS).read_text())
                                       for r in (plain, measured, with_champion))
    assert oos_section(plain_ev, plain_ev) == [] and oos_section(None, None) == []

    fig = measured_ev["oos"]["candidate"]
    md = "\n".join(oos_section(plain_ev, measured_ev))
    assert md.startswith("## Out of scope")
    assert f"| method | — | `{METHOD}` | new |" in md
    assert f"| OOS recall | — | {fig['oos_recall']:.4f} | new |" in md
    assert f"| AUROC | — | {fig['auroc']:.4f} | new |" in md
    assert f"- head: {fig['in_scope_rows']} in-scope and 8 out-of-scope test rows" in md
    assert f"| `{METHOD}` (used) |" in md and "| `msp` |" in md    # the scores compared

    # a head without out-of-scope rows: the unmeasured figures say why instead of a number
    no_rows = {**measured_ev, "oos": {"candidate": {k: v for k, v in fig.items() if k not in
                                                    ("oos_recall", "oos_precision", "auroc",
                                                     "fpr_at_95_tpr")} | {"oos_rows": 0},
                                      "champion": None}}
    md = "\n".join(oos_section(None, no_rows))
    assert "\n| OOS recall |" not in md and "\n| in-scope flagged |" in md
    assert "no out-of-scope rows, so recall, precision, AUROC and FPR are not measured" in md

    md = "\n".join(oos_section(measured_ev, champ_ev))
    assert f"| OOS recall | {fig['oos_recall']:.4f} | {fig['oos_recall']:.4f} | +0.0000 |" in md
    assert "- head's champion (`mahalanobis`): in-scope flagged 1.0000, OOS recall 1.0000" in md

    md = "\n".join(oos_section(measured_ev, plain_ev))
    assert "The head's candidate has no out-of-scope detector" in md


def test_summary_prints_the_candidate_oos_line(measured: Path, plain: Path) -> None:
    fig = oos_figures(measured)
    out = run_command("summary", measured).stdout
    line = next(x for x in out.splitlines() if x.startswith("Out of scope"))
    assert line.startswith(f"Out of scope ({METHOD}, threshold ")
    assert f"OOS recall {fig['oos_recall']:.4f}" in line and "on 8 out-of-scope rows" in line
    assert "Out of scope" not in run_command("summary", plain).stdout
