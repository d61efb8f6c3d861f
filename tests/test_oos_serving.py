"""Out-of-scope answers wherever the exported ONNX model answers: the scoring loop, ``predict``,
batch scoring, the service (answer fields, /metrics, the prediction log, a champion exported
before detectors) and the monitor's ``out_of_scope`` detector.

The detector is fitted here on the tiny model's own ONNX embeddings (tests/serving.py:
``fit_onnx_detector``, kNN), with its threshold halfway in the gap the fixture measures between
in-scope texts and texts of characters outside the model's vocabulary: what gets flagged is
measured on real ONNX Runtime sessions, never assumed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from stages import artifacts, oos_detector
from tests.conftest import REPO_ROOT, run_command
from tests.helpers import run_module
from tests.serving import (
    ADMIN_TOKEN,
    FAR_TEXTS,
    Server,
    far_texts,
    fit_onnx_detector,
    install_champion,
    metric,
)
from tests.test_export import LONG_TEXT, build_project

IN_SCOPE = ["where is my package 123", "please refund the 42 charge", LONG_TEXT,
            "cant log in to my account"]
TEXTS = IN_SCOPE + FAR_TEXTS
IDS = [f"t{i}" for i in range(len(TEXTS))]
FLAGS = [False] * len(IN_SCOPE) + [True] * len(FAR_TEXTS)
NO_DETECTOR = "exported before out-of-scope detection"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_st_model_dir: Path) -> Path:
    """The tiny project after oos, export and quantize (models/onnx, the splits)."""
    return build_project(tmp_path_factory.mktemp("oos-project"), tiny_st_model_dir)


@pytest.fixture(scope="module")
def detectors(project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two detectors with the same arrays and threshold: label ``out_of_scope``, and null."""
    root = tmp_path_factory.mktemp("detectors")
    named = fit_onnx_detector(project / "models/onnx", root / "named", in_scope=IN_SCOPE)
    oos_detector.save(dataclasses.replace(named, label=None), root / "null")
    return {"named": root / "named", "null": root / "null"}


def put_detector(onnx_dir: Path, detector: Path | None) -> None:
    """``onnx_dir`` with ``detector``'s files beside the model (None: with none)."""
    for name in (artifacts.OOS_JSON, artifacts.OOS_ARRAYS):
        (onnx_dir / name).unlink(missing_ok=True)
        if detector is not None:
            shutil.copy(detector / name, onnx_dir / name)


def onnx_copy(project: Path, dest: Path, detector: Path | None) -> Path:
    shutil.copytree(project / "models/onnx", dest)
    put_detector(dest, detector)
    return dest


def champion_with(detector: Path | None):
    """install_champion's ``tamper``: the champion's onnx/ carries ``detector`` (None: none)."""
    return lambda onnx_dir: put_detector(onnx_dir, detector)


def prob_columns(labels: list[str]) -> list[str]:
    return [f"prob_{name}" for name in labels]


# --- the scoring loop -------------------------------------------------------------------------


def test_scoring_flags_far_texts_and_keeps_the_probabilities(project: Path, detectors: dict,
                                                             tmp_path: Path) -> None:
    from stages.onnx_session import encode, load_onnx_model, run_logits_and_embeddings, score_texts
    from stages.scoring import score_table

    with_detector = onnx_copy(project, tmp_path / "with", detectors["named"])
    without = onnx_copy(project, tmp_path / "without", None)
    for name in (artifacts.ONNX_FP32, artifacts.ONNX_INT8):
        model = load_onnx_model(with_detector / name, threads=1, device="cpu")
        plain = load_onnx_model(without / name, threads=1, device="cpu")
        assert model.oos is not None and model.oos.method == "knn" and plain.oos is None
        scored = score_texts(model, TEXTS, batch_size=4)
        assert scored.out_of_scope.tolist() == FLAGS, scored.oos_scores
        assert ((scored.oos_scores > model.oos.threshold) == scored.out_of_scope).all()
        logits, emb = run_logits_and_embeddings(model, encode(model, TEXTS), 4)
        np.testing.assert_allclose(scored.oos_scores, model.oos.score(logits, emb), atol=1e-6)
        bare = score_texts(plain, TEXTS, batch_size=4)
        assert bare.out_of_scope is None and bare.oos_scores is None
        np.testing.assert_allclose(scored.probs, bare.probs, atol=1e-6)  # untouched by it

    out, counts = score_table(model, pd.DataFrame({"id": IDS, "text": TEXTS}), batch_size=4)
    assert list(out.columns) == ["id", "label", "out_of_scope", "oos_score",
                                 *prob_columns(model.labels)]
    assert counts == {"rows": len(TEXTS), "truncated": bare.truncated, "empty_texts": 0,
                      "out_of_scope": 3}
    assert out["out_of_scope"].tolist() == FLAGS
    answered = [model.labels[i] for i in bare.probs.argmax(axis=1)]
    assert out["label"].tolist() == answered[:len(IN_SCOPE)] + ["out_of_scope"] * len(FAR_TEXTS)
    # and nothing to decide on no texts
    empty = score_texts(model, [])
    assert empty.out_of_scope.shape == (0,) and empty.probs.shape == (0, len(model.labels))


def test_an_embedding_detector_refuses_a_logits_only_graph(project: Path, detectors: dict,
                                                           tmp_path: Path) -> None:
    import onnx

    from stages.common import StageError
    from stages.onnx_session import encode, load_onnx_model, run_logits, score_texts

    onnx_dir = onnx_copy(project, tmp_path / "onnx", detectors["named"])
    path = onnx_dir / artifacts.ONNX_FP32
    proto = onnx.load(str(path))
    del proto.graph.output[1]  # drop `embedding`: logits only, as exports before it
    onnx.save(proto, str(path))
    with pytest.raises(StageError) as err:
        load_onnx_model(path, device="cpu")
    assert "knn, which needs the pooled embedding" in err.value.what
    assert err.value.where.endswith("oos.json") and "dvc repro export quantize" in err.value.fix

    # a logits-only score serves that graph: the embedding is never asked for
    msp = dataclasses.replace(oos_detector.load(detectors["named"]), method="msp",
                              thresholds={"msp": 0.3})
    oos_detector.save(msp, onnx_dir)
    model = load_onnx_model(path, device="cpu")
    scored = score_texts(model, TEXTS)
    expected = oos_detector.msp_score(run_logits(model, encode(model, TEXTS)))
    np.testing.assert_allclose(scored.oos_scores, expected, atol=1e-6)
    assert scored.out_of_scope.tolist() == (expected > 0.3).tolist()


# --- predict and batch scoring ------------------------------------------------------------------


def test_predict_writes_out_of_scope_columns_and_warns_without_a_detector(
        project: Path, detectors: dict, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": IDS, "text": TEXTS}).to_csv(src, index=False)
    for name, label in (("named", "out_of_scope"), ("null", None)):
        model = onnx_copy(project, tmp_path / name, detectors[name]) / artifacts.ONNX_FP32
        proc = run_command("predict", tmp_path, "--model", str(model), "--input", str(src),
                           "--output", f"{name}.csv")
        assert proc.returncode == 0, proc.stderr
        out = pd.read_csv(tmp_path / f"{name}.csv")
        labels = json.loads((model.parent / artifacts.LABELS_FILE).read_text())
        assert list(out.columns) == ["id", "label", "out_of_scope", "oos_score",
                                     *prob_columns(labels)]
        assert out["out_of_scope"].tolist() == FLAGS
        threshold = oos_detector.load(detectors[name]).threshold
        assert (out["oos_score"] > threshold).tolist() == FLAGS
        probs = out[prob_columns(labels)].to_numpy()
        classes = [labels[i] for i in probs.argmax(axis=1)]
        assert out["label"].tolist()[:len(IN_SCOPE)] == classes[:len(IN_SCOPE)]
        far = out["label"][len(IN_SCOPE):]
        assert far.isna().all() if label is None else far.tolist() == [label] * len(FAR_TEXTS)
        assert "out of scope: 3" in proc.stdout and NO_DETECTOR not in proc.stderr

    old = onnx_copy(project, tmp_path / "old", None) / artifacts.ONNX_FP32
    proc = run_command("predict", tmp_path, "--model", str(old), "--input", str(src),
                       "--output", "old.csv")
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(tmp_path / "old.csv")
    assert "out_of_scope" not in out.columns and "oos_score" not in out.columns
    assert proc.stderr.count(NO_DETECTOR) == 1 and "dvc repro export quantize" in proc.stderr
    assert "out of scope" not in proc.stdout


def write_corpus(folder: Path) -> None:
    folder.mkdir(parents=True)
    pd.DataFrame({"id": IDS, "text": TEXTS}).to_parquet(folder / "a.parquet", index=False)
    pd.DataFrame({"id": ["b0", "b1"], "text": IN_SCOPE[:2]}).to_csv(folder / "b.csv", index=False)


def test_batch_scoring_writes_the_columns_and_counts_out_of_scope_rows(
        project: Path, detectors: dict, tmp_path: Path) -> None:
    from scale.score import ScoreParams, score_corpus

    write_corpus(tmp_path / "in")
    onnx_dir = onnx_copy(project, tmp_path / "onnx", detectors["named"])
    out = tmp_path / "out"
    params = ScoreParams(engine="inline")
    manifest = score_corpus(str(tmp_path / "in"), out, onnx_dir, params)
    assert manifest["model"]["out_of_scope"]["method"] == "knn"
    assert manifest["totals"]["out_of_scope"] == 3
    assert {s["shard"]: s["out_of_scope"] for s in manifest["shards"]} == {"a": 3, "b": 0}
    a = pd.read_parquet(out / "shards/a.parquet")
    assert a["out_of_scope"].tolist() == FLAGS
    assert a["label"].tolist()[len(IN_SCOPE):] == ["out_of_scope"] * len(FAR_TEXTS)

    # the detector refitted (here: its label now null): every shard is scored again
    put_detector(onnx_dir, detectors["null"])
    manifest = score_corpus(str(tmp_path / "in"), out, onnx_dir, params)
    assert (manifest["totals"]["scored"], manifest["totals"]["skipped"]) == (2, 0)
    a = pd.read_parquet(out / "shards/a.parquet")
    assert a["out_of_scope"].tolist() == FLAGS and a["label"][len(IN_SCOPE):].isna().all()
    assert a["label"][:len(IN_SCOPE)].notna().all()
    again = score_corpus(str(tmp_path / "in"), out, onnx_dir, params)
    assert again["totals"]["skipped"] == 2 and again["totals"]["out_of_scope"] == 3

    # a model exported before detectors: no columns, one warning, no count
    put_detector(onnx_dir, None)
    proc = run_module("scale.score", REPO_ROOT, "--input", str(tmp_path / "in"), "--model-dir",
                      str(onnx_dir), "--output", str(tmp_path / "old"), "--engine", "inline",
                      timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(NO_DETECTOR) == 1
    manifest = json.loads((tmp_path / "old/manifest.json").read_text())
    assert manifest["totals"]["out_of_scope"] is None and manifest["model"]["out_of_scope"] is None
    columns = pd.read_parquet(tmp_path / "old/shards/a.parquet").columns
    assert "out_of_scope" not in columns and "oos_score" not in columns


# --- the service --------------------------------------------------------------------------------


def predict(server: Server, texts: list[str], ids: list[str]) -> list[dict]:
    response = httpx.post(server.url + "/v1/predict", json={"texts": texts, "ids": ids}, timeout=30)
    assert response.status_code == 200, response.text
    return [{**p, "request_id": response.json()["request_id"]}
            for p in response.json()["predictions"]]


def test_the_service_answers_far_texts_out_of_scope(project: Path, detectors: dict,
                                                    tmp_path: Path) -> None:
    from serve.client import request_reload
    from stages.onnx_session import load_onnx_model, score_texts
    from stages.prediction_log import read_log

    plain = load_onnx_model(onnx_copy(project, tmp_path / "plain", None) / artifacts.ONNX_INT8,
                            threads=1, device="cpu")
    expected = score_texts(plain, TEXTS).probs  # the int8 model's own, without any detector
    install_champion(tmp_path, project, "0050aaaa", tamper=champion_with(detectors["named"]))
    with Server(tmp_path) as server:
        detector = httpx.get(server.url + "/v1/model").json()["out_of_scope"]
        assert (detector["method"], detector["label"]) == ("knn", "out_of_scope")
        before = server.metrics()
        answers = predict(server, TEXTS, IDS)
        assert [p["out_of_scope"] for p in answers] == FLAGS
        assert [p["oos_score"] > detector["threshold"] for p in answers] == FLAGS
        for p, probs in zip(answers, expected, strict=True):
            for top in p["probs"]:  # the model's probabilities, out of scope or not
                assert top["prob"] == pytest.approx(probs[plain.labels.index(top["label"])],
                                                    abs=1e-5)
            assert p["label"] == ("out_of_scope" if p["out_of_scope"] else p["probs"][0]["label"])
        after = server.metrics()
        assert (metric(after, "serve_out_of_scope_texts_total")
                - metric(before, "serve_out_of_scope_texts_total")) == 3
        assert (metric(after, "serve_predictions_total", label="out_of_scope")
                - metric(before, "serve_predictions_total", label="out_of_scope")) == 3

        # a champion whose detector answers a null label, through the reload (parity included)
        install_champion(tmp_path, project, "0050bbbb", tamper=champion_with(detectors["null"]))
        assert request_reload(server.url, ADMIN_TOKEN)["serving"].startswith("0050bbbb")
        null_answers = predict(server, TEXTS, IDS)
        assert [p["out_of_scope"] for p in null_answers] == FLAGS
        assert [p["label"] for p in null_answers][len(IN_SCOPE):] == [None] * len(FAR_TEXTS)
        assert [p["label"] for p in null_answers][:len(IN_SCOPE)] == [
            p["label"] for p in answers][:len(IN_SCOPE)]
        samples = server.metrics()
        assert metric(samples, "serve_predictions_total", label="null") == 3
        assert metric(samples, "serve_out_of_scope_texts_total") == 6
    assert server.heavy_modules() == []  # the detector is numpy: no sklearn, no torch

    logged = {(r["request_id"], r["id"]): r for r in read_log(tmp_path / "logs/predictions")
              .to_pylist()}
    assert len(logged) == 2 * len(TEXTS)
    for p in answers + null_answers:
        row = logged[(p["request_id"], p["id"])]
        assert (row["label"], row["out_of_scope"]) == (p["label"], p["out_of_scope"])
        assert row["oos_score"] == pytest.approx(p["oos_score"], abs=1e-5)


def test_a_champion_exported_before_detectors_is_served_with_null_flags(
        project: Path, tmp_path: Path) -> None:
    from stages.prediction_log import read_log

    install_champion(tmp_path, project, "01dc0de0", tamper=champion_with(None))
    with Server(tmp_path) as server:
        assert httpx.get(server.url + "/v1/model").json()["out_of_scope"] is None
        answers = predict(server, TEXTS, IDS)
        samples = server.metrics()
    assert [(p["out_of_scope"], p["oos_score"]) for p in answers] == [(None, None)] * len(TEXTS)
    assert all(p["label"] == p["probs"][0]["label"] for p in answers)  # always a class
    assert metric(samples, "serve_out_of_scope_texts_total") == 0
    assert server.log().count(NO_DETECTOR) == 1  # one warning, at load
    rows = read_log(tmp_path / "logs/predictions").to_pylist()
    assert len(rows) == len(TEXTS)
    assert {(r["out_of_scope"], r["oos_score"]) for r in rows} == {(None, None)}


# --- the monitor --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def monitored(project: Path, detectors: dict, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, Path]:
    """The champion's int8 export with the detector and without it, and a reference built by
    each (the test split: the in-scope texts the detector fixture measured)."""
    from monitor.reference import build_reference
    from tests.test_monitor import split_frame

    root = tmp_path_factory.mktemp("monitored")
    split_frame(30, seed=11).to_parquet(root / "test.parquet", index=False)
    split_frame(30, seed=12).to_parquet(root / "val.parquet", index=False)
    out = {}
    for name, detector in (("with", detectors["named"]), ("without", None)):
        onnx_dir = onnx_copy(project, root / f"onnx-{name}", detector)
        build_reference(onnx_dir, root / f"ref-{name}", root / "test.parquet",
                        root / "val.parquet", threads=1)
        out[f"onnx-{name}"], out[f"ref-{name}"] = onnx_dir, root / f"ref-{name}"
    return out


def oos_result(report: dict) -> dict:
    return next(d for d in report["detectors"] if d["name"] == "out_of_scope")


def test_the_monitor_alarms_on_a_window_of_out_of_scope_answers(monitored: dict,
                                                                tmp_path: Path) -> None:
    from monitor.log import write_log_file
    from monitor.reference import load_reference
    from stages.onnx_session import load_onnx_model
    from tests.test_monitor import START, check, log_rows, window_texts

    ref = load_reference(monitored["ref-with"])
    assert ref.meta["out_of_scope"]["method"] == "knn"
    assert ref.meta["out_of_scope_share"] == pytest.approx(ref.table["out_of_scope"].mean())
    assert ref.meta["out_of_scope_share"] == 0.0  # the fixture measured these texts in scope
    model = load_onnx_model(monitored["onnx-with"] / artifacts.ONNX_INT8, threads=1, device="cpu")

    normal = tmp_path / "normal"
    write_log_file(normal, log_rows(model, window_texts(50, seed=21), START))
    report, _ = check(monitored["ref-with"], normal)
    result = oos_result(report)
    assert result["status"] == "ok" and not result["drifted"] and report["status"] == "ok"
    assert result["detail"]["rows"] == 300 and result["statistic"] <= 0.10

    far = tmp_path / "far"
    write_log_file(far, log_rows(model, far_texts(150), START))  # every one of them measured far
    report, sample = check(monitored["ref-with"], far)
    result = oos_result(report)
    assert result["drifted"] and result["statistic"] == 1.0 and result["detail"]["count"] == 150
    assert "out_of_scope" in report["alarms"] and report["status"] == "drift"
    assert sample["out_of_scope"].all()  # the labelling sample says why those rows are there
    quiet, _ = check(monitored["ref-with"], far, alarm_on=["label"])  # reported, no alarm
    assert oos_result(quiet)["drifted"] and "out_of_scope" not in quiet["alarms"]


def test_the_out_of_scope_detector_is_unavailable_without_flags_or_a_reference_share(
        monitored: dict, tmp_path: Path) -> None:
    from monitor.log import write_log_file
    from monitor.reference import load_reference
    from stages.onnx_session import load_onnx_model
    from tests.test_monitor import START, check, log_rows

    assert load_reference(monitored["ref-without"]).meta["out_of_scope_share"] is None
    with_flags = load_onnx_model(monitored["onnx-with"] / artifacts.ONNX_INT8, threads=1,
                                 device="cpu")
    without = load_onnx_model(monitored["onnx-without"] / artifacts.ONNX_INT8, threads=1,
                              device="cpu")
    for name, model, ref in (("old-reference", with_flags, "ref-without"),
                             ("old-log", without, "ref-with")):
        write_log_file(tmp_path / name, log_rows(model, far_texts(150), START))
        report, _ = check(monitored[ref], tmp_path / name)
        result = oos_result(report)
        assert result["status"] == "unavailable" and not result["drifted"], name
        assert "out_of_scope" not in report["alarms"]
