"""The drift monitor on the tiny model: the champion's reference, the log reader, the detectors.

The reference is built from a real int8 ONNX export (with its ``embedding`` output) of the tiny
random BERT; the prediction logs are written in the service's layout from texts scored by that
same model, so a "no shift" window is what the service would log for data like the test split.
The Prefect side (deployments, schedule, the drift event and the retrain it triggers) is in
test_monitor_server.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_rows

START = datetime(2026, 12, 1, 8, tzinfo=UTC)
# only two intents, so the predicted-label mix and the embeddings move
SHIFTED_INTENTS = {
    "delivery_status": ["where is my package {n}", "my parcel has not arrived since {n} days"],
    "login_problem": ["cant log in to my account since {n}", "my account is locked after {n} tries"],
}


def split_frame(n_per_class: int, seed: int) -> pd.DataFrame:
    texts, labels = make_rows(n_per_class, seed=seed)
    return pd.DataFrame(texts).merge(pd.DataFrame(labels), on="id")


@pytest.fixture(scope="module")
def onnx_project(tmp_path_factory: pytest.TempPathFactory, tiny_st_model_dir: Path) -> Path:
    """export + quantize of the tiny model (test_export's project), with larger test/val splits."""
    from tests.test_export import build_project

    root = build_project(tmp_path_factory.mktemp("monitor-project"), tiny_st_model_dir)
    split_frame(30, seed=11).to_parquet(root / "data/splits/test.parquet", index=False)
    split_frame(30, seed=12).to_parquet(root / "data/splits/val.parquet", index=False)
    return root


@pytest.fixture(scope="module")
def reference_dir(onnx_project: Path) -> Path:
    from monitor.reference import build_reference

    out = onnx_project / "reference"
    build_reference(onnx_project / "models/onnx", out, onnx_project / "data/splits/test.parquet",
                    onnx_project / "data/splits/val.parquet", threads=1)
    return out


@pytest.fixture(scope="module")
def int8_model(onnx_project: Path):
    from stages.onnx_session import load_onnx_model

    return load_onnx_model(onnx_project / "models/onnx/model.int8.onnx", threads=1, device="cpu")


def log_rows(model, texts: list[str], start: datetime, text_logged: bool = True,
             spacing_s: float = 30.0) -> pd.DataFrame:
    """What the service logs for ``texts`` (scored by ``model``), one every ``spacing_s`` seconds."""
    from monitor.reference import score_texts

    s = score_texts(model, texts, "test")
    n = len(texts)
    oos = {} if s.out_of_scope is None else {"out_of_scope": s.out_of_scope,
                                             "oos_score": s.oos_scores.astype(np.float32)}
    return pd.DataFrame({
        "ts": [pd.Timestamp(start + timedelta(seconds=i * spacing_s)) for i in range(n)],
        "request_id": [f"req-{i}" for i in range(n)], "id": [f"t{i}" for i in range(n)],
        "text": texts if text_logged else [None] * n,
        "text_sha256": [hashlib.sha256(t.encode()).hexdigest() for t in texts],
        "label": s.predicted, "confidence": s.confidence.astype(np.float32),
        "probs": list(s.probs), "model_version": "champion-1",
        "latency_ms": np.float32(4.0), "truncated": s.truncated, "n_tokens": s.n_tokens,
        "embedding": list(s.embeddings), **oos})


def window_texts(n_per_class: int, seed: int, intents: dict | None = None) -> list[str]:
    """Texts in random order (make_rows groups them by class; traffic comes mixed)."""
    import random

    texts = [r["text"] for r in make_rows(n_per_class, seed=seed, intents=intents)[0]]
    random.Random(seed).shuffle(texts)
    return texts


def shifted_texts(n_per_class: int, seed: int) -> list[str]:
    """Two intents only, each message sent three times over: label mix, length and embeddings
    move (the tiny random model's predictions depend little on the intent alone)."""
    return [" ".join([t] * 3) for t in window_texts(n_per_class, seed, SHIFTED_INTENTS)]


def params(**overrides):
    from monitor.detectors import MonitorParams

    return MonitorParams(**{"min_predictions": 100, **overrides})


def check(reference_dir: Path, log_dir: Path, hours: int = 24, **overrides):
    from monitor.check import check_window
    from monitor.log import read_window
    from monitor.reference import load_reference

    ref = load_reference(reference_dir)
    window = read_window(log_dir, START, START + timedelta(hours=hours), len(ref.labels))
    return check_window(ref, window, params(**overrides))


# --- the reference ---------------------------------------------------------------------------


def test_reference_holds_int8_scores_embeddings_and_a_calibration(
        reference_dir: Path, onnx_project: Path, int8_model) -> None:
    from monitor.reference import calibrated, load_reference
    from stages.metrics import softmax
    from stages.onnx_session import encode, run_logits

    ref = load_reference(reference_dir)
    test = pd.read_parquet(onnx_project / "data/splits/test.parquet")
    assert ref.meta["rows"] == len(test) == len(ref.table)
    assert "text" not in ref.table.columns  # hashes only: the reference holds no raw text
    assert ref.meta["model"]["file"] == "model.int8.onnx"
    assert ref.embeddings().shape == (len(test), 32)
    # the served int8 model's probabilities, scored independently here
    probs = softmax(run_logits(int8_model, encode(int8_model, test["text"].tolist())))
    np.testing.assert_allclose(ref.probs(), probs, atol=1e-5)
    pred = np.array(ref.labels)[probs.argmax(1)]
    assert ref.meta["accuracy"] == pytest.approx((pred == test["label"].to_numpy()).mean(), abs=1e-6)
    cal = ref.meta["calibration"]
    assert cal["fitted_on"].endswith("val.parquet") and cal["rows"] == 180
    assert np.all(np.diff(cal["y"]) >= 0) and 0 <= min(cal["y"]) <= max(cal["y"]) <= 1
    assert ref.meta["estimated_accuracy"] == pytest.approx(
        calibrated(probs.max(1), cal).mean(), abs=1e-6)
    assert ref.meta["embedding_bandwidth"] > 0


def test_reference_cli_refuses_without_champion_or_split(workdir: Path, onnx_project: Path) -> None:
    proc = run_stage_module("monitor.reference", workdir)
    assert proc.returncode == 1 and "no champion yet" in proc.stderr
    out = workdir / "ref"
    proc = run_stage_module("monitor.reference", workdir, "--onnx-dir",
                            str(onnx_project / "models/onnx"), "--out", str(out),
                            "--test-split", str(workdir / "missing.parquet"))
    assert proc.returncode == 1
    assert "the test split is missing" in proc.stderr and "missing.parquet" in proc.stderr
    assert not out.exists()


def run_stage_module(module: str, cwd: Path, *args: str):
    from tests.helpers import run_module

    return run_module(module, cwd, *args)


def test_promote_stores_the_reference_in_the_champion(onnx_project: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from commands import promote
    from monitor.reference import load_reference

    root = tmp_path / "p"
    shutil.copytree(onnx_project, root, ignore=shutil.ignore_patterns("reference"))
    (root / "models/checkpoint/training_data.json").write_text('{"fingerprints": []}')
    monkeypatch.chdir(root)
    ev = {"test_rows": 180, "labels": ["a"], "candidate": {"macro_f1": 1.0, "accuracy": 1.0}}
    promote.build_champion(root / "models/new-champion", ev, {"rows": 1})
    ref = load_reference(root / "models/new-champion/monitor_reference")
    assert ref.meta["rows"] == 180 and ref.meta["model"]["file"] == "model.int8.onnx"


# --- windows ---------------------------------------------------------------------------------


def test_no_shift_is_ok_and_a_shift_fires(reference_dir: Path, int8_model, tmp_path: Path) -> None:
    from monitor.log import write_log_file

    same = tmp_path / "same"
    write_log_file(same, log_rows(int8_model, window_texts(50, seed=21), START))
    report, sample = check(reference_dir, same)
    assert report["predictions"] == 300 and report["files"] >= 3  # one file per hour partition
    assert report["status"] == "ok", report["detectors"]
    assert {d["name"] for d in report["detectors"]} == {
        "label", "confidence", "length", "embedding", "novelty", "accuracy", "truncated", "empty",
        "out_of_scope"}
    assert all(d["status"] == "ok" for d in report["detectors"])

    shifted = tmp_path / "shifted"
    write_log_file(shifted, log_rows(int8_model, shifted_texts(150, seed=22), START))
    report, sample = check(reference_dir, shifted)
    assert report["status"] == "drift"
    fired = {d["name"] for d in report["detectors"] if d["drifted"]}
    assert {"label", "length", "novelty"} <= fired and fired == set(report["alarms"])
    label = next(d for d in report["detectors"] if d["name"] == "label")
    assert label["p_value"] < 1e-4 and label["statistic"] > 0.02  # JS divergence of the label mix
    # the labelling sample: the most uncertain and the most drifted rows, with their text
    assert len(sample) == 50 and set(sample["reason"]) == {"uncertain", "drifted"}
    assert sample["text"].notna().all()
    # alarm_on decides which detectors may raise the alarm; the others are still reported
    report, _ = check(reference_dir, shifted, alarm_on=["empty"])
    assert report["status"] == "ok" and any(d["drifted"] for d in report["detectors"])


def test_not_enough_data_never_alarms(reference_dir: Path, int8_model, tmp_path: Path) -> None:
    from monitor.log import write_log_file

    log_dir = tmp_path / "log"
    write_log_file(log_dir, log_rows(int8_model, window_texts(8, seed=23, intents=SHIFTED_INTENTS),
                                     START))
    report, sample = check(reference_dir, log_dir)
    assert report["predictions"] == 16
    assert report["status"] == "not enough data" and report["alarms"] == []
    assert "16 predictions in the window, at least 100 needed" in report["message"]
    assert report["detectors"] == [] and sample is None
    # an hour with no log at all, and a log directory that does not exist yet
    assert check(reference_dir, tmp_path / "nothing")[0]["status"] == "not enough data"


def test_hash_only_log_gives_the_same_verdict(reference_dir: Path, int8_model,
                                              tmp_path: Path) -> None:
    from monitor.log import write_log_file

    texts = shifted_texts(150, seed=24)
    for name, logged in (("text", True), ("hash", False)):
        write_log_file(tmp_path / name, log_rows(int8_model, texts, START, text_logged=logged))
    with_text, _ = check(reference_dir, tmp_path / "text")
    hash_only, sample = check(reference_dir, tmp_path / "hash")
    assert with_text["text_logged"] is True and hash_only["text_logged"] is False
    assert hash_only["status"] == "drift"
    assert hash_only["detectors"] == with_text["detectors"]
    assert sample["text"].isna().all() and sample["text_sha256"].str.len().eq(64).all()


def test_empty_and_truncated_texts_are_seen_from_hashes_and_counts(
        reference_dir: Path, int8_model, tmp_path: Path) -> None:
    from monitor.log import write_log_file

    texts = window_texts(25, seed=25) + [""] * 30 + ["refund " * 200] * 40
    write_log_file(tmp_path / "log", log_rows(int8_model, texts, START, text_logged=False))
    report, _ = check(reference_dir, tmp_path / "log")
    by_name = {d["name"]: d for d in report["detectors"]}
    assert by_name["empty"]["detail"]["count"] == 30 and by_name["empty"]["drifted"]
    assert by_name["truncated"]["detail"]["count"] == 40 and by_name["truncated"]["drifted"]


def test_a_log_write_under_way_is_not_read(int8_model, tmp_path: Path) -> None:
    from monitor.log import read_window, write_log_file
    from stages.prediction_log import log_files

    log_dir = tmp_path / "log"
    [done] = write_log_file(log_dir, log_rows(int8_model, window_texts(20, seed=3), START))
    rows = len(read_window(log_dir, START, START + timedelta(hours=1)).frame)
    # what atomic_path holds while pyarrow is still writing: a hidden temp dir, half a file
    under_way = done.parent / ".part-9.parquet.x1y2.tmp/part-9.parquet"
    under_way.parent.mkdir()
    under_way.write_bytes(b"PAR1")
    window = read_window(log_dir, START, START + timedelta(hours=1))
    assert (window.skipped, window.files) == ([], 1)
    assert len(window.frame) == rows > 0
    assert log_files(log_dir) == [done]


def test_corrupt_partition_is_skipped_with_a_warning(reference_dir: Path, int8_model,
                                                     tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from monitor.log import partition_dir, write_log_file

    log_dir = tmp_path / "log"
    good = write_log_file(log_dir, log_rows(int8_model, window_texts(50, seed=21), START))
    part = partition_dir(log_dir, START + timedelta(hours=1))
    (part / "part-1-deadbeef.parquet").write_bytes(b"PAR1 truncated by a crash")
    pd.DataFrame({"ts": [pd.Timestamp(START)]}).to_parquet(part / "part-2-0badf00d.parquet")
    good[0].write_bytes(good[0].read_bytes()[:200])  # a real log file cut short
    logging.getLogger("retrainer").propagate = True  # let caplog see the project's logger
    try:
        with caplog.at_level(logging.WARNING):
            report, _ = check(reference_dir, log_dir)
    finally:
        logging.getLogger("retrainer").propagate = False
    assert len(report["skipped_files"]) == 3
    assert report["status"] == "ok"  # the rest of the window is still monitored
    assert 0 < report["predictions"] < 300
    errors = {Path(s["path"]).name: s["error"] for s in report["skipped_files"]}
    assert "missing column(s)" in errors["part-2-0badf00d.parquet"]
    warned = {r.message for r in caplog.records if "skipping unreadable log file" in r.message}
    assert len(warned) == 3


def test_report_files_and_history(reference_dir: Path, int8_model, tmp_path: Path) -> None:
    from monitor.check import check_window
    from monitor.log import read_window, write_log_file
    from monitor.reference import load_reference
    from monitor.report import read_history, write_outputs
    from stages import artifacts

    ref = load_reference(reference_dir)
    write_log_file(tmp_path / "log", log_rows(int8_model, window_texts(50, seed=21), START))
    for hours in (1, 2):  # two windows: the history (drift over time) gets two lines
        window = read_window(tmp_path / "log", START, START + timedelta(hours=hours),
                             len(ref.labels))
        history = read_history(tmp_path / artifacts.MONITOR_HISTORY)
        report, sample = check_window(ref, window, params(min_predictions=20), history)
        paths = write_outputs(tmp_path, report, ref, window, sample)
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    md = paths["markdown"].read_text()
    assert "| embedding |" in md and "hash-only" not in md and paths["png"].name in md
    metrics = json.loads((tmp_path / artifacts.MONITOR_METRICS).read_text())
    assert metrics["window"] == window.name and metrics["status"] == report["status"]
    history = read_history(tmp_path / artifacts.MONITOR_HISTORY)
    assert [h["predictions"] for h in history] == [120, 240]
    assert report["volume"]["median_previous"] == 120  # the window before this one
    assert pd.read_csv(paths["labelling"]).shape[0] == 50


@pytest.mark.parametrize("windows", [0, 1, 2])
def test_drift_over_time_panel_needs_two_windows(windows: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from monitor.report import plot_drift_over_time

    history = [{"window": f"w{i}", "scores": {"label": {"p_value": 0.2}, "confidence": {"p_value": 0.01}}}
               for i in range(windows)]
    fig, ax = plt.subplots()
    drawn = plot_drift_over_time(ax, [{"window": "not scored", "scores": {}}, *history], alpha=0.01)
    notes = [t.get_text() for t in ax.texts]
    plt.close(fig)
    if windows < 2:  # one point on an axis from -0.04 to 0.04 was drawn before: say so instead
        assert not drawn and not ax.lines and not ax.axison
        assert notes == [f"{windows} scored window(s) so far:\ndrift over time is drawn from 2 windows on"]
    else:
        assert drawn and not notes
        assert [len(line.get_xdata()) for line in ax.lines[:2]] == [2, 2]  # label, confidence


# --- the statistics --------------------------------------------------------------------------


def test_mmd_and_novelty_on_known_distributions() -> None:
    from monitor.detectors import mmd_test, novelty_drift

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    null_p = [mmd_test(x, rng.normal(size=(300, 8)), 4.0, 200, rng)[1] for _ in range(5)]
    assert min(null_p) > 0.01
    stat, p, witness = mmd_test(x, rng.normal(0.4, 1, size=(300, 8)), 4.0, 200, rng)
    assert p < 0.01 and stat > 0 and witness.shape == (300,)
    # 20% of the window far from anything in the reference: novelty sees it, MMD barely does
    y = np.vstack([rng.normal(size=(400, 8)), rng.normal(size=(100, 8)) + 6.0])
    assert novelty_drift(x, y, params()).drifted
    assert not novelty_drift(x, rng.normal(size=(500, 8)), params()).drifted


def test_cooldown_allows_one_event_per_champion() -> None:
    from flows.monitoring import recent_event

    end = START + timedelta(hours=5)
    history = [{"window": "w1", "end": (START + timedelta(hours=2)).isoformat(),
                "event_emitted": True, "model_sha256": "abc"}]
    assert recent_event(history, "abc", end, cooldown_hours=24)["window"] == "w1"
    assert recent_event(history, "abc", end, cooldown_hours=2) is None
    assert recent_event(history, "new-champion", end, cooldown_hours=24) is None


def test_too_few_permutations_for_alpha_is_refused(reference_dir: Path, tmp_path: Path) -> None:
    from stages.common import StageError

    with pytest.raises(StageError, match="could never fire") as err:
        check(reference_dir, tmp_path / "nothing", permutations=100, alpha=0.002)
    assert "permutations >= 500" in str(err.value)


# --- on a real Prefect server ----------------------------------------------------------------


@pytest.mark.slow  # a real Prefect server, worker and deployments
def test_monitor_deployment_emits_drift_and_queues_texts_for_labelling(
        pipeline_repo: Path, reference_dir: Path, int8_model, tmp_path: Path) -> None:
    """A real `prefect server start`, worker and `prefect deploy --all` (tests/test_prefect_server.py
    has the plumbing): the hourly monitor deployment runs on a no-shift window (no event, no
    labelling), then on a shifted window: retrainer.drift.detected is emitted and the
    label-on-drift deployment's trigger queues a batch of the shifted texts for people to label
    (drift never retrains on unchanged data)."""
    import re
    import shutil
    import sys

    import httpx
    import yaml

    from monitor.log import write_log_file
    from tests.conftest import set_params
    from tests.helpers import git
    from tests.test_prefect_server import (
        TERMINAL,
        cli,
        free_port,
        prefect_env,
        start,
        start_server_and_deploy,
        stop,
        wait_for,
    )

    repo = pipeline_repo
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    dvc_yaml["stages"] = {"ingest": dvc_yaml["stages"]["ingest"]}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    shutil.copytree(reference_dir, repo / "monitor_ref")
    set_params(repo, {"monitor": {"reference": "monitor_ref", "min_predictions": 100}})
    git(repo, "commit", "-qam", "ingest only; monitor a fixed reference")
    log_dir = repo / "logs/predictions"
    write_log_file(log_dir, log_rows(int8_model, window_texts(50, seed=21), START))
    shifted_start = START + timedelta(hours=5)
    shifted = shifted_texts(150, seed=22)
    write_log_file(log_dir, log_rows(int8_model, shifted, shifted_start))

    port = free_port()
    env = prefect_env(tmp_path, port)
    api = env["PREFECT_API_URL"]
    logs = [tmp_path / "server.log", tmp_path / "worker.log"]
    prefect = str(Path(sys.executable).with_name("prefect"))
    procs = []
    try:
        procs.append(start_server_and_deploy(env, repo, tmp_path, port, logs))
        by_name = {d["name"]: d for d in httpx.post(f"{api}/deployments/filter", json={}).json()}
        assert by_name["hourly"]["schedules"][0]["schedule"]["cron"] == "5 * * * *"
        procs.append(start([prefect, "worker", "start", "--pool", "retrainer-pool"], tmp_path, env,
                           logs[1]))

        def finished(run_id: str):
            run = httpx.get(f"{api}/flow_runs/{run_id}").json()
            return run if run["state_type"] in TERMINAL else None

        def monitor_run(end: datetime) -> dict:
            out = cli(env, repo, "deployment", "run", "monitor/hourly", "--param",
                      f"end={end.isoformat()}", "--param", "hours=3")
            run_id = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
            run = wait_for("the monitor run", lambda: finished(run_id), 300, logs)
            assert run["state_type"] == "COMPLETED", (run["state"]["message"],
                                                      logs[1].read_text()[-3000:])
            return run

        def drift_events() -> list:
            body = {"filter": {"event": {"name": ["retrainer.drift.detected"]}}, "limit": 10}
            return httpx.post(f"{api}/events/filter", json=body).json()["events"]

        def labelling_runs() -> list:
            return httpx.post(f"{api}/flow_runs/filter", json={
                "deployments": {"id": {"any_": [by_name["label-on-drift"]["id"]]}}}).json()

        # 1. no shift: a report, no event, no labelling batch
        run = monitor_run(START + timedelta(hours=3))
        metrics = json.loads((repo / "metrics/monitor.json").read_text())
        assert metrics["status"] == "ok" and metrics["predictions"] == 300
        assert (repo / f"reports/monitoring/{metrics['window']}.png").is_file()
        arts = httpx.post(f"{api}/artifacts/filter", json={
            "flow_runs": {"id": {"any_": [run["id"]]}}}).json()
        window_md = next(a for a in arts if a["key"] == "monitor-window")["data"]
        assert "**OK**: no drift detected" in window_md

        # 2. the shifted hours: event emitted, label-on-drift queues texts for labelling
        monitor_run(shifted_start + timedelta(hours=3))
        metrics = json.loads((repo / "metrics/monitor.json").read_text())
        assert metrics["status"] == "drift" and metrics["event_emitted"] is True
        events = wait_for("the drift event", drift_events, 60, logs)
        assert len(events) == 1  # the no-shift window emitted none
        assert events[0]["payload"]["window"] == metrics["window"]
        assert set(events[0]["payload"]["alarms"]) == set(metrics["alarms"])
        assert events[0]["payload"]["scores"]["label"]["drifted"] is True
        labelling = wait_for("the drift-triggered labelling batch",
                             lambda: (runs := labelling_runs()) and finished(runs[0]["id"]), 300,
                             logs)
        assert labelling["state_type"] == "COMPLETED", labelling["state"]
        assert labelling["parameters"]["reason"] == (
            f"retrainer.drift.detected: retrainer.monitor.{repo.name} window {metrics['window']}")
        assert len(labelling_runs()) == 1
        (queued,) = (repo / "data/queue").glob("*.csv")
        batch = pd.read_csv(queued)
        assert 0 < len(batch) <= 50 and set(batch["text"]) <= set(shifted)
        arts = httpx.post(f"{api}/artifacts/filter", json={
            "flow_runs": {"id": {"any_": [labelling["id"]]}}}).json()
        assert str(queued.name) in next(a for a in arts if a["key"] == "labelling-batch")["data"]
        history = (repo / "reports/monitoring/history.jsonl").read_text().splitlines()
        assert [json.loads(h)["status"] for h in history] == ["ok", "drift"]
    finally:
        for proc in reversed(procs):
            stop(proc)


def test_a_logits_only_export_still_gets_a_reference(onnx_project: Path, int8_model,
                                                     tmp_path: Path) -> None:
    """An export older than the embedding output (and so than out-of-scope detectors): the
    reference is built, the embedding and out-of-scope detectors say "unavailable", the others
    still decide."""
    import shutil

    import onnx

    from monitor.log import write_log_file
    from monitor.reference import build_reference

    onnx_dir = tmp_path / "onnx"
    shutil.copytree(onnx_project / "models/onnx", onnx_dir)
    proto = onnx.load(str(onnx_dir / "model.int8.onnx"))
    del proto.graph.output[1]  # drop `embedding`: logits only, as exports before it
    onnx.save(proto, str(onnx_dir / "model.int8.onnx"))
    for name in ("oos.json", "oos.npz"):  # nor had they a detector (kNN would need `embedding`)
        (onnx_dir / name).unlink()
    build_reference(onnx_dir, tmp_path / "ref", onnx_project / "data/splits/test.parquet",
                    onnx_project / "data/splits/val.parquet", threads=1)
    rows = log_rows(int8_model, shifted_texts(150, seed=22), START).assign(embedding=None)
    write_log_file(tmp_path / "log", rows)
    report, _ = check(tmp_path / "ref", tmp_path / "log")
    status = {d["name"]: d["status"] for d in report["detectors"]}
    assert status["embedding"] == status["novelty"] == status["out_of_scope"] == "unavailable"
    assert report["status"] == "drift" and "label" in report["alarms"]
