"""Batch scoring on a real local Dask cluster with the tiny model's real ONNX export.

A 2-worker cluster scores 3 shards with the same numbers as the ONNX scoring loop predict uses; a
worker process killed (SIGKILL) mid-shard has its shard redone by the other worker, and the
output holds every row exactly once; a re-run skips finished shards; bad shards fail clearly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO_ROOT, make_rows
from tests.helpers import run_module, wait_until
from tests.test_export import build_project

SHARD_ROWS = {"a": 40, "b": 30, "c": 50}


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory, tiny_st_model_dir: Path) -> Path:
    """The tiny model's exported fp32 + int8 ONNX models, tokenizer and labels."""
    root = build_project(tmp_path_factory.mktemp("score-project"), tiny_st_model_dir)
    return root / "models" / "onnx"


def write_shards(folder: Path) -> pd.DataFrame:
    """Shards a (Parquet), b (CSV), c (Parquet in a sub-folder); returns all rows."""
    frames = []
    for k, (name, n) in enumerate(SHARD_ROWS.items()):
        texts, _ = make_rows(n // 6 + 1, seed=k)
        df = pd.DataFrame(texts).head(n)
        df["id"] = [f"{name}-{i:03d}" for i in range(n)]
        frames.append(df)
        if name == "b":
            df.to_csv(folder / "b.csv", index=False)
        elif name == "c":
            (folder / "more").mkdir(parents=True, exist_ok=True)
            df.to_parquet(folder / "more" / "c.parquet", index=False)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            df.to_parquet(folder / "a.parquet", index=False)
    return pd.concat(frames, ignore_index=True)


def score_cli(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess:
    return run_module("scale.score", cwd, *args, timeout=300)


def outputs(out: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((out / "shards").glob("*.parquet"))],
                     ignore_index=True)


@pytest.mark.slow
def test_two_workers_score_three_shards_and_a_rerun_skips_them(onnx_dir: Path, tmp_path: Path
                                                                ) -> None:
    rows = write_shards(tmp_path / "in")
    proc = score_cli(REPO_ROOT, "--input", tmp_path / "in", "--model-dir", onnx_dir,
                     "--output", tmp_path / "out", "--workers", 2)
    assert proc.returncode == 0, proc.stderr
    assert "3 shard(s), 120 rows: scored 3, skipped 0" in proc.stdout
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["engine"]["engine"] == "dask" and manifest["engine"]["workers"] == 2
    assert manifest["status"] == "complete" and manifest["model"]["precision"] == "int8"
    assert [s["shard"] for s in manifest["shards"]] == ["a", "b", "more__c"]
    assert [s["rows"] for s in manifest["shards"]] == list(SHARD_ROWS.values())
    assert all(s["peak_rss_mb"] > 0 and s["worker"].startswith("tcp://127.0.0.1")
               for s in manifest["shards"])
    # one ONNX session per worker process, reused for its next shards (not one per shard: under
    # `python -m`, a function of __main__ would reach the workers with fresh module globals)
    workers = {s["worker"] for s in manifest["shards"]}
    assert proc.stderr.count("session model.int8.onnx on CPUExecutionProvider") == len(workers)

    # the very numbers of the ONNX scoring loop predict uses, row by row, in input order (shard
    # by shard with the same batch size: int8's dynamic activation scales depend on the batch)
    from stages.onnx_session import load_onnx_model, score_texts

    model = load_onnx_model(onnx_dir / "model.int8.onnx", threads=1)
    scored = outputs(tmp_path / "out")
    assert scored["id"].tolist() == rows["id"].tolist()
    parts = [score_texts(model, part["text"].tolist(), batch_size=64)
             for _, part in rows.groupby(rows["id"].str[0], sort=True)]
    expected = np.concatenate([p.probs for p in parts])
    flagged = np.concatenate([p.out_of_scope for p in parts])
    probs = scored[[f"prob_{c}" for c in model.labels]].to_numpy()
    assert np.allclose(probs, expected, atol=1e-5)
    # the class, or the detector's label for an out-of-scope row (tests/test_oos_serving.py)
    assert scored["out_of_scope"].tolist() == flagged.tolist()
    assert scored["label"].tolist() == [model.oos.label if f else model.labels[i]
                                        for f, i in zip(flagged, expected.argmax(axis=1), strict=True)]
    assert manifest["totals"]["out_of_scope"] == int(flagged.sum())

    # a re-run skips all three and leaves their files alone
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out/shards").iterdir()}
    again = score_cli(REPO_ROOT, "--input", tmp_path / "in", "--model-dir", onnx_dir,
                      "--output", tmp_path / "out", "--workers", 2)
    assert again.returncode == 0, again.stderr
    assert "scored 0, skipped 3 (already done)" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out/shards").iterdir()} == before

    # a changed shard (new rows) is scored again; the others are still skipped
    b = pd.read_csv(tmp_path / "in/b.csv").head(10)
    b.to_csv(tmp_path / "in/b.csv", index=False)
    third = score_cli(REPO_ROOT, "--input", tmp_path / "in", "--model-dir", onnx_dir,
                      "--output", tmp_path / "out", "--engine", "inline")
    assert third.returncode == 0, third.stderr
    assert "3 shard(s), 100 rows: scored 1, skipped 2" in third.stdout
    assert pd.read_parquet(tmp_path / "out/shards/b.parquet")["id"].tolist() == b["id"].tolist()


@pytest.mark.slow  # a Dask cluster of worker processes, one of them killed
def test_a_killed_worker_shard_is_redone_and_every_row_is_there_once(onnx_dir: Path,
                                                                     tmp_path: Path) -> None:
    from distributed import LocalCluster

    from scale.engine import DaskEngine
    from scale.score import TEST_DELAY_ENV, ScoreParams, score_corpus

    rows = write_shards(tmp_path / "in")
    out = tmp_path / "out"
    # shard b holds its output back for 4 s, so the kill lands while it is in flight
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, env={TEST_DELAY_ENV: "b=4"})
    engine = DaskEngine(address=cluster.scheduler_address)
    result: dict = {}

    def run() -> None:
        try:
            result["manifest"] = score_corpus(str(tmp_path / "in"), out, onnx_dir, ScoreParams(),
                                              engine=engine)
        except Exception as exc:  # surfaced by the asserts below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        victim = wait_until(lambda: next((w for w, keys in engine.client.processing().items()
                                          if "score-b" in keys), None), 60, "shard b to start")
        time.sleep(1.0)
        pid = engine.client.run(os.getpid, workers=[victim])[victim]
        assert not (out / "shards/b.done.json").exists()  # mid-shard: nothing written yet
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=120)
        assert not thread.is_alive()
    finally:
        engine.close()
        cluster.close()
    assert "error" not in result, result.get("error")
    manifest = result["manifest"]
    by_shard = {s["shard"]: s for s in manifest["shards"]}
    assert manifest["status"] == "complete" and manifest["totals"]["failed"] == 0
    assert by_shard["b"]["worker"] != victim and by_shard["b"]["pid"] != pid  # redone elsewhere
    assert by_shard["b"]["seconds"] >= 4
    scored = outputs(out)
    assert len(scored) == len(rows) and scored["id"].is_unique
    assert sorted(scored["id"]) == sorted(rows["id"])


def test_a_bad_shard_fails_clearly_and_the_others_are_kept(onnx_dir: Path, tmp_path: Path
                                                          ) -> None:
    write_shards(tmp_path / "in")
    pd.DataFrame({"id": ["x"], "body": ["no text column"]}).to_csv(tmp_path / "in/bad.csv",
                                                                   index=False)
    stale = tmp_path / "out/shards/.a.parquet.abc123.tmp"  # what a killed worker leaves behind
    stale.mkdir(parents=True)
    proc = score_cli(REPO_ROOT, "--input", tmp_path / "in", "--model-dir", onnx_dir,
                     "--output", tmp_path / "out", "--engine", "inline")
    assert proc.returncode == 1
    assert "1 of 4 shard(s) failed" in proc.stderr and "bad: StageError" in proc.stderr
    assert "no 'text' column" in proc.stderr
    assert not (tmp_path / "out/shards/bad.parquet").exists()
    assert not (tmp_path / "out/shards/bad.done.json").exists()
    assert not stale.exists()
    assert sorted(p.name for p in (tmp_path / "out/shards").glob("*.parquet")) == [
        "a.parquet", "b.parquet", "more__c.parquet"]
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["totals"]["failed"] == 1


@pytest.mark.parametrize(("case", "message"), [
    ("no_model", "no int8 ONNX model in"),
    ("output_in_input", "the output folder is inside the input"),
    ("no_input", "input not found"),
    ("empty_input", "no shards in"),
])
def test_bad_runs_write_nothing(onnx_dir: Path, tmp_path: Path, case: str, message: str) -> None:
    write_shards(tmp_path / "in")
    (tmp_path / "empty").mkdir()
    model, source, out = onnx_dir, tmp_path / "in", tmp_path / "out"
    if case == "no_model":
        model = tmp_path / "nowhere"
    elif case == "output_in_input":
        out = tmp_path / "in" / "scores"
    elif case == "no_input":
        source = tmp_path / "missing"
    else:
        source = tmp_path / "empty"
    proc = score_cli(REPO_ROOT, "--input", source, "--model-dir", model, "--output", out,
                     "--engine", "inline")
    assert proc.returncode == 1 and "ERROR [scale.score]" in proc.stderr
    assert message in proc.stderr
    assert not out.exists()


@pytest.mark.slow  # the Prefect test server
def test_the_score_flow_records_the_manifest_and_fails_on_a_bad_shard(
        prefect_api: Any, onnx_dir: Path, tmp_path: Path) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.score import score

    write_shards(tmp_path / "in")
    state = score(source=str(tmp_path / "in"), output=str(tmp_path / "out"),
                  model_dir=str(onnx_dir), workers=2, return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["totals"]["rows"] == sum(SHARD_ROWS.values())
    runs = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    arts = {a.key: a for a in prefect_api.read_artifacts(flow_run_filter=runs)}
    assert {"score-shards", "score-summary"} <= set(arts)
    assert "more__c" in json.dumps(arts["score-shards"].data)

    (tmp_path / "in/bad.csv").write_text("id,body\nx,no text\n")
    failed = score(source=str(tmp_path / "in"), output=str(tmp_path / "out"),
                   model_dir=str(onnx_dir), engine="inline", return_state=True)
    assert failed.is_failed() and "1 of 4 shard(s) failed" in failed.message
