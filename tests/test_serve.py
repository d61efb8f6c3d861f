"""The service on a real uvicorn server (127.0.0.1) with the tiny model's real ONNX export.

Each endpoint, each bad request, batching that batches, hot reload under load with zero failed
requests, a broken champion refused, a complete prediction log after SIGTERM, and no torch in
the server process.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers import run_module, wait_until
from tests.serving import ADMIN_TOKEN, Server, free_port, install_champion, metric
from tests.test_export import LONG_TEXT, MAX_LENGTH, build_project

TEXTS = ["where is my package 123", "please refund the 42 charge", LONG_TEXT,
         "cant log in to my account"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_st_model_dir: Path) -> Path:
    """A tiny project after export and quantize: models/onnx and the test split."""
    return build_project(tmp_path_factory.mktemp("serve-project"), tiny_st_model_dir)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, project: Path) -> Server:
    """One server shared by the read-only tests (endpoints, bad requests, batching)."""
    root = tmp_path_factory.mktemp("served")
    install_champion(root, project, "aaaa1111bbbb2222")
    server = Server(root, max_wait_ms=100, max_batch=32, max_texts=8, max_chars=2000,
                    max_body_bytes=20000, top_k=2).start()
    yield server
    server.stop()


def predict(server: Server, payload: object, **kwargs: object) -> httpx.Response:
    return httpx.post(server.url + "/v1/predict", json=payload, timeout=30, **kwargs)


def test_predict_answers_like_the_batch_predict_path(served: Server, project: Path) -> None:
    from stages.onnx_session import load_onnx_model
    from stages.scoring import score_table

    response = predict(served, {"texts": TEXTS, "ids": ["a", "b", "c", "d"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"].startswith("aaaa1111bbbb-")
    assert response.headers["x-request-id"] == body["request_id"]
    preds = body["predictions"]
    assert [p["id"] for p in preds] == ["a", "b", "c", "d"]
    assert [p["truncated"] for p in preds] == [False, False, True, False]
    assert preds[2]["n_tokens"] == MAX_LENGTH and preds[0]["n_tokens"] < MAX_LENGTH

    # alone (one text per request) the very numbers the batch CLI gives with the same int8 file
    import pandas as pd

    model_file = served.root / "models/champion/onnx/model.int8.onnx"
    batch_model = load_onnx_model(model_file, threads=1, device="cpu")
    expected, _ = score_table(batch_model, pd.DataFrame({"text": TEXTS}), batch_size=32)
    labels = json.loads((model_file.parent / "labels.json").read_text())
    detector = json.loads((model_file.parent / "oos.json").read_text())
    for row, text in enumerate(TEXTS):
        (pred,) = predict(served, {"texts": [text]}).json()["predictions"]
        assert pred["label"] == expected["label"][row]
        assert pred["out_of_scope"] == expected["out_of_scope"][row]
        assert pred["oos_score"] == pytest.approx(expected["oos_score"][row], abs=1e-5)
        assert len(pred["probs"]) == 2  # serve.top_k
        # the answer is the top class, or the detector's label for an out-of-scope text
        assert pred["label"] == (detector["label"] if pred["out_of_scope"]
                                 else pred["probs"][0]["label"])
        assert pred["probs"][0]["prob"] >= pred["probs"][1]["prob"]
        assert pred["confidence"] == pytest.approx(pred["probs"][0]["prob"])
        for p in pred["probs"]:
            assert p["label"] in labels
            assert p["prob"] == pytest.approx(expected[f"prob_{p['label']}"][row], abs=1e-5)
        # in one request with the others, too: dynamic int8 runs each text in a call of its own
        for p in preds[row]["probs"]:
            assert p["prob"] == pytest.approx(expected[f"prob_{p['label']}"][row], abs=1e-5)


def test_model_health_ready_and_metrics_endpoints(served: Server) -> None:
    assert httpx.get(served.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(served.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    info = httpx.get(served.url + "/v1/model").json()
    assert info["version"] == ready.json()["model_version"]
    assert info["labels"] == json.loads(
        (served.root / "models/champion/onnx/labels.json").read_text())
    assert info["max_length"] == MAX_LENGTH and info["precision"] == "int8"
    assert info["provider"] == "CPUExecutionProvider"
    assert info["promoted_at"].startswith("2026-12-01T")
    assert info["metrics"]["macro_f1"] == 0.5  # the champion's own metrics.json
    assert info["embedding"] is True  # the export has the pooled-vector output (monitoring)

    predict(served, {"texts": ["where is my package"]})
    response = httpx.get(served.url + "/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = served.metrics()
    assert metric(samples, "serve_requests_total", endpoint="/v1/predict", status="200") >= 1
    assert metric(samples, "serve_request_latency_seconds_count", endpoint="/v1/predict",
                  status="200") >= 1
    assert metric(samples, "serve_ready") == 1
    assert metric(samples, "serve_model_info", version=info["version"], precision="int8",
                  provider="CPUExecutionProvider", promoted_at=info["promoted_at"]) == 1
    assert sum(v for k, v in samples.items() if k.startswith("serve_predictions_total{")) >= 1
    assert "serve_queue_depth" in samples and "serve_batch_size_count" in samples


@pytest.mark.parametrize(("body", "status", "code", "message"), [
    (b"{not json", 400, "invalid_json", "not valid JSON"),
    (b'["a list"]', 422, "missing_texts", "'texts' list"),
    (b'{"text": ["typo"]}', 422, "missing_texts", "'texts' list"),
    (b'{"texts": []}', 422, "invalid_texts", "non-empty list"),
    (b'{"texts": "one string"}', 422, "invalid_texts", "non-empty list"),
    (b'{"texts": ["ok", 7]}', 422, "invalid_text", "texts[1] is int"),
    (b'{"texts": ["ok", null]}', 422, "invalid_text", "texts[1] is NoneType"),
    (json.dumps({"texts": ["x"] * 9}).encode(), 422, "too_many_texts", "at most 8"),
    (json.dumps({"texts": ["ok", "y" * 2001]}).encode(), 422, "text_too_long",
     "texts[1] has 2001 characters"),
    (json.dumps({"texts": ["x" * 1000] * 30}).encode(), 413, "body_too_large", "over 20000"),
    (b'{"texts": ["a", "b"], "ids": ["only one"]}', 422, "invalid_ids", "one per text"),
    (b'{"texts": ["a"], "top": 3}', 422, "unknown_fields", "['top']"),
])
def test_bad_requests_get_clear_4xx(served: Server, body: bytes, status: int, code: str,
                                    message: str) -> None:
    before = metric(served.metrics(), "serve_batch_size_count")
    response = httpx.post(served.url + "/v1/predict", content=body, timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and message in error["message"] and error["fix"]
    assert metric(served.metrics(), "serve_batch_size_count") == before  # nothing was run
    assert metric(served.metrics(), "serve_requests_total", endpoint="/v1/predict",
                  status=str(status)) >= 1


def test_body_too_large_without_content_length(served: Server) -> None:
    def chunks():  # chunked transfer: no Content-Length to refuse up front
        yield b'{"texts": ["'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"]}'

    response = httpx.post(served.url + "/v1/predict", content=chunks(), timeout=30)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def concurrent_single_texts(server: Server, n: int = 24) -> tuple[float, float, float]:
    """``n`` single-text requests at once: (ONNX calls, texts, calls of one text) they took."""
    before = server.metrics()
    start = threading.Barrier(n)

    def one(i: int) -> httpx.Response:
        start.wait()
        return predict(server, {"texts": [f"refund order {i}"]})

    with ThreadPoolExecutor(n) as pool:
        responses = list(pool.map(one, range(n)))
    assert all(r.status_code == 200 for r in responses)
    after = server.metrics()
    assert metric(after, "serve_queue_depth") == 0
    return tuple(metric(after, name, **labels) - metric(before, name, **labels)
                 for name, labels in (("serve_batch_size_count", {}), ("serve_batch_size_sum", {}),
                                      ("serve_batch_size_bucket", {"le": "1.0"})))


def test_concurrent_requests_share_onnx_calls(tmp_path: Path, project: Path) -> None:
    install_champion(tmp_path, project, "ba7c4ba7")
    with Server(tmp_path, precision="fp32", max_wait_ms=100, max_batch=32) as server:
        assert httpx.get(server.url + "/v1/model").json()["batch_invariant"] is True
        calls, texts, singles = concurrent_single_texts(server)
    assert texts == 24
    assert calls < texts / 2, f"{texts} concurrent single-text requests took {calls} ONNX calls"
    assert singles < calls  # some call carried more than one text


def test_dynamic_int8_runs_each_text_in_a_call_of_its_own(served: Server) -> None:
    # its activation scales are per call: batched, a text's scores would depend on its batch mates
    assert httpx.get(served.url + "/v1/model").json()["batch_invariant"] is False
    calls, texts, singles = concurrent_single_texts(served)
    assert calls == texts == singles == 24


def test_not_ready_until_a_champion_is_promoted(tmp_path: Path, project: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models/champion.json").write_text('{"champion": null}\n')
    with Server(tmp_path).start(wait_ready=False) as server:
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503 and "no champion yet" in ready.json()["reason"]
        response = predict(server, {"texts": ["hello"]})
        assert response.status_code == 503 and response.headers["retry-after"]
        assert response.json()["error"]["code"] == "not_ready"
        assert httpx.get(server.url + "/v1/model").status_code == 503
        assert metric(server.metrics(), "serve_ready") == 0

        install_champion(tmp_path, project, "cccc3333")  # the pointer changes: picked up
        server.wait_for("/readyz", timeout_s=30)
        assert predict(server, {"texts": ["hello"]}).json()["model_version"].startswith("cccc3333")


class Load:
    """Client threads sending single-text requests until stopped; records every outcome."""

    def __init__(self, server: Server, clients: int) -> None:
        self.server, self.stop_flag = server, threading.Event()
        self.outcomes: list[tuple[float, int, str]] = []  # (time, status, version or error)
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]

    def _client(self, i: int) -> None:
        with httpx.Client(timeout=30) as client:
            n = 0
            while not self.stop_flag.is_set() and n < 2000:
                n += 1
                try:
                    r = client.post(self.server.url + "/v1/predict",
                                    json={"texts": [f"my card was declined {i} {n}"]})
                    self.outcomes.append((time.monotonic(), r.status_code,
                                          r.json().get("model_version", r.text)))
                except httpx.HTTPError as exc:
                    self.outcomes.append((time.monotonic(), -1, repr(exc)))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=60)

    def versions(self) -> list[str]:
        return [v for _, status, v in sorted(self.outcomes) if status == 200]


def test_hot_reload_under_load_fails_no_request(tmp_path: Path, project: Path) -> None:
    from serve.client import request_reload
    from stages.common import StageError

    install_champion(tmp_path, project, "1111aaaa")
    with Server(tmp_path, max_wait_ms=2) as server, Load(server, clients=6) as load:
        wait_until(lambda: len(load.outcomes) > 30)
        # 1. a promotion: the pointer changes, the watcher reloads
        install_champion(tmp_path, project, "2222bbbb")
        wait_until(lambda: any(v.startswith("2222bbbb") for v in load.versions()[-5:]))
        # 2. SIGHUP after a promotion the watcher has not seen yet (polling is slow to notice)
        install_champion(tmp_path, project, "3333cccc")
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: any(v.startswith("3333cccc") for v in load.versions()[-5:]))
        # 3. the admin endpoint, through the client the retrain flow uses
        install_champion(tmp_path, project, "4444dddd")
        result = request_reload(server.url, ADMIN_TOKEN)
        assert result["result"] in ("loaded", "unchanged")  # the watcher may have been first
        assert result["serving"].startswith("4444dddd")
        n = len(load.outcomes)
        wait_until(lambda: len(load.outcomes) > n + 30)
        with pytest.raises(StageError, match="HTTP 401"):
            request_reload(server.url, "wrong-token")
        samples = server.metrics()

    failed = [o for o in load.outcomes if o[1] != 200]
    assert failed == [] and len(load.outcomes) > 100
    order = [v.split("-")[0] for v in load.versions()]
    firsts = [order.index(c) for c in ("1111aaaa", "2222bbbb", "3333cccc", "4444dddd")]
    assert firsts == sorted(firsts)  # each promotion took over in turn
    assert set(order[-20:]) == {"4444dddd"}  # and the last one stayed
    assert sum(metric(samples, "serve_reloads_total", result="loaded", trigger=t)
               for t in ("pointer", "sighup", "admin")) >= 3
    assert metric(samples, "serve_reloads_total", result="refused", trigger="admin") == 0


def break_model_file(onnx_dir: Path) -> None:
    (onnx_dir / "model.int8.onnx").write_bytes(b"not an onnx model")


def shift_class_bias(onnx_dir: Path) -> None:
    """A model that loads and runs but predicts something else than it did at promotion."""
    import onnx
    from onnx import numpy_helper

    labels = json.loads((onnx_dir / "labels.json").read_text())
    path = onnx_dir / "model.int8.onnx"
    proto = onnx.load(str(path))
    (bias,) = [t for t in proto.graph.initializer if list(t.dims) == [len(labels)]]
    arr = numpy_helper.to_array(bias).copy()
    arr[0] += 50.0  # every text now goes to the first class
    bias.CopyFrom(numpy_helper.from_array(arr, bias.name))
    onnx.save(proto, str(path))


def drop_reference(onnx_dir: Path) -> None:
    (onnx_dir / "reference_predictions.parquet").unlink()


def garble_reference(onnx_dir: Path) -> None:
    (onnx_dir / "reference_predictions.parquet").write_bytes(b"PAR1 not really")


@pytest.mark.parametrize(("tamper", "message"), [
    (break_model_file, "ONNX Runtime could not load the model"),
    (shift_class_bias, "does not reproduce its recorded test predictions"),
    (drop_reference, "no recorded test predictions"),
    (garble_reference, "loading the champion failed"),
])
def test_broken_champion_is_refused_and_the_old_keeps_serving(tmp_path: Path, project: Path,
                                                              tamper, message: str) -> None:
    install_champion(tmp_path, project, "900d900d")
    with Server(tmp_path, reload_poll_s=0) as server, Load(server, clients=3) as load:
        wait_until(lambda: len(load.outcomes) > 10)
        install_champion(tmp_path, project, "badbadba", tamper=tamper)
        response = httpx.post(server.url + "/admin/reload", timeout=120,
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert response.status_code == 409
        assert message in response.json()["error"]
        assert response.json()["serving"].startswith("900d900d")
        n = len(load.outcomes)
        wait_until(lambda: len(load.outcomes) > n + 10)
        samples = server.metrics()
        info = httpx.get(server.url + "/v1/model").json()
    assert [o for o in load.outcomes if o[1] != 200] == []
    assert {v.split("-")[0] for v in load.versions()} == {"900d900d"}
    assert metric(samples, "serve_reloads_total", result="refused", trigger="admin") == 1
    assert info["version"].startswith("900d900d")
    assert info["last_reload"]["result"] == "refused" and message in info["last_reload"]["error"]
    assert "REFUSED the new champion" in server.log() and message in server.log()


def test_sigterm_keeps_every_prediction_in_the_log(tmp_path: Path, project: Path) -> None:
    from stages.prediction_log import log_files, log_schema, read_log, text_sha256

    install_champion(tmp_path, project, "10901090")
    # max_wait_ms 1000: a batch short of max_batch waits a second, so requests are in flight
    # (fp32: dynamic int8 runs every text at once, in a call of its own)
    server = Server(tmp_path, flush_every=7, flush_interval_s=3600.0, log_text=False,
                    max_wait_ms=1000, max_batch=32, precision="fp32").start()
    n = 41  # 82 rows: 10 files of 8, and 2 rows that only SIGTERM writes
    with ThreadPoolExecutor(n) as pool:
        responses = list(pool.map(lambda i: predict(
            server, {"texts": [f"where is parcel {i}", LONG_TEXT], "ids": [f"q{i}", f"l{i}"]}),
            range(n)))
    assert all(r.status_code == 200 for r in responses)
    # flush_every 7: a write starts once 7 rows wait (a request adds 2) and takes every waiting
    # row, so all but fewer than 7 rows reach the disk without SIGTERM (rows that arrived during
    # a write go with the next one)
    def on_disk() -> list[int]:
        return [pq.read_metadata(f).num_rows for f in log_files(tmp_path / "logs/predictions")]
    wait_until(lambda: sum(on_disk()) > 2 * n - 7, timeout_s=30)  # the last write may be under way
    assert all(rows >= 7 for rows in on_disk()) and sum(on_disk()) <= 2 * n

    # SIGTERM while 5 requests wait in the batcher: they are answered, then the server exits
    in_flight: list[tuple[float, httpx.Response]] = []
    def late(i: int) -> None:
        response = predict(server, {"texts": [f"in flight {i}"], "ids": [f"f{i}"]})
        in_flight.append((time.monotonic(), response))
    threads = [threading.Thread(target=late, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    wait_until(lambda: metric(server.metrics(), "serve_queue_depth") == 5, timeout_s=30)
    sigterm_at = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    for t in threads:
        t.join(timeout=30)
    assert [r.status_code for _, r in in_flight] == [200] * 5
    assert all(done > sigterm_at for done, _ in in_flight)  # answered during the drain
    responses += [r for _, r in in_flight]
    assert "wrote the last" in server.log()
    assert server.heavy_modules() == []  # no torch, transformers, sklearn... in the server

    files = log_files(tmp_path / "logs/predictions")
    for f in files:  # hive partitions, one schema
        assert f.parent.name.startswith("hour=") and f.parent.parent.name.startswith("date=")
        assert f.name.startswith("part-") and pq.read_schema(f).equals(log_schema())
    table = read_log(tmp_path / "logs/predictions").to_pylist()
    assert len(table) == 2 * n + 5
    assert {r["request_id"] for r in table} == {r.json()["request_id"] for r in responses}
    by_id = {r["id"]: r for r in table}
    for i, response in enumerate(responses[:n]):
        for pred, text in zip(response.json()["predictions"],
                              [f"where is parcel {i}", LONG_TEXT], strict=True):
            row = by_id[pred["id"]]
            assert row["text"] is None and row["text_sha256"] == text_sha256(text)
            assert row["label"] == pred["label"]
            assert row["confidence"] == pytest.approx(pred["confidence"], abs=1e-6)
            assert np.isclose(sum(row["probs"]), 1.0, atol=1e-4)
            assert row["model_version"] == response.json()["model_version"]
            assert row["truncated"] is pred["truncated"] and row["n_tokens"] == pred["n_tokens"]
            assert row["latency_ms"] > 0 and len(row["embedding"]) > 0  # hash-only logs keep it
            assert row["ts"].tzinfo is not None
            home = next(f for f in files if row["request_id"] in
                        pq.read_table(f, columns=["request_id"]).column(0).to_pylist())
            assert home.parent.parent.name == f"date={row['ts']:%Y-%m-%d}"
            assert home.parent.name == f"hour={row['ts']:%H}"
    assert {f"f{i}" for i in range(5)} <= set(by_id)


def test_embedding_output_goes_into_the_log(tmp_path: Path, project: Path) -> None:
    import onnxruntime as ort

    install_champion(tmp_path, project, "e3be0001")
    onnx_path = tmp_path / "models/champion/onnx/model.int8.onnx"
    outputs = {o.name: o for o in ort.InferenceSession(str(onnx_path)).get_outputs()}
    assert list(outputs) == ["logits", "embedding"]
    server = Server(tmp_path, admin_token=None).start()
    response = predict(server, {"texts": ["where is my package", "refund please"]})
    assert response.status_code == 200
    assert httpx.get(server.url + "/v1/model").json()["embedding"] is True
    # without RETRAINER_ADMIN_TOKEN in its environment the admin endpoint is off
    denied = httpx.post(server.url + "/admin/reload", headers={"Authorization": "Bearer guess"})
    assert denied.status_code == 403 and "RETRAINER_ADMIN_TOKEN" in denied.json()["error"]["fix"]
    assert server.stop() == 0
    from stages.prediction_log import read_log

    rows = read_log(tmp_path / "logs/predictions").to_pylist()
    assert [r["text"] for r in rows] == ["where is my package", "refund please"]
    # the pooled sentence vector the head reads: one per text, finite, and not the same vector
    first, second = (np.asarray(r["embedding"], dtype=np.float64) for r in rows)
    assert first.shape == second.shape and first.shape[0] > len(rows[0]["probs"])
    assert np.isfinite(first).all() and not np.allclose(first, second)


def test_bad_params_refuse_to_start(tmp_path: Path) -> None:
    from tests.conftest import REPO_ROOT, set_params

    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path, {"serve": {"max_batch": 0}})
    proc = run_module("serve", tmp_path, timeout=60)
    assert proc.returncode == 1
    assert "serve.max_batch = 0 is out of range: it must be >= 1" in proc.stderr
    assert "params.yaml:serve.max_batch" in proc.stderr


def test_promotion_step_notifier(served: Server, caplog: pytest.LogCaptureFixture) -> None:
    """What flows/retrain.py's promote step calls when RETRAINER_SERVE_URL is set."""
    import logging

    from serve.client import notify_reload

    log = logging.getLogger("test-notify")
    answer = notify_reload(served.url, log, token=ADMIN_TOKEN)
    assert answer["result"] == "unchanged" and answer["trigger"] == "admin"
    assert answer["serving"].startswith("aaaa1111bbbb-")
    with caplog.at_level(logging.WARNING, logger="test-notify"):
        assert notify_reload(served.url, log, token="wrong") is None
        assert notify_reload(f"http://127.0.0.1:{free_port()}", log, token=ADMIN_TOKEN) is None
    assert "HTTP 401" in caplog.text and "could not reach the service" in caplog.text


def test_params_yaml_serve_section_matches_the_defaults() -> None:
    from dataclasses import asdict

    from serve.params import ServeParams, load_serve_params
    from tests.conftest import REPO_ROOT

    assert asdict(load_serve_params(REPO_ROOT / "params.yaml")) == asdict(ServeParams())


def test_a_call_takes_the_oldest_text_and_similar_lengths_of_its_model() -> None:
    from types import SimpleNamespace

    from serve.batcher import Text, select_call

    old_model, new_model = object(), object()

    def queue(lengths: list[int], model: object = old_model) -> list[Text]:
        return [Text(SimpleNamespace(model=model), 0, n) for n in lengths]

    def padding(call: list[Text]) -> float:
        widths = [t.length for t in call]
        return 1 - sum(widths) / (len(widths) * max(widths))

    mixed = queue([20, 5, 21, 80, 6, 22, 19, 7])
    call = select_call(mixed, 32, 0.15)
    assert call[0] is mixed[0]                       # the oldest always goes next
    assert [t.length for t in call] == [20, 21, 22, 19]  # oldest first, within the padding bound
    assert padding(call) <= 0.15
    looser = select_call(mixed, 32, 0.25)            # now 7 fits: padding 0.19
    assert [t.length for t in looser] == [20, 21, 22, 19, 7] and padding(looser) <= 0.25
    assert [t.length for t in select_call(mixed, 3, 0.15)] == [20, 21, 22]  # max_batch
    assert len(select_call(mixed, 32, 1.0)) == 8     # lengths ignored: one call for all
    assert [t.length for t in select_call(queue([10] * 5), 1, 0.25)] == [10]  # batching off
    after_reload = queue([20, 20]) + queue([20, 20], new_model)
    assert all(t.job.model is old_model for t in select_call(after_reload, 32, 0.25))


def test_a_crash_loses_at_most_flush_every_rows(tmp_path: Path, project: Path) -> None:
    install_champion(tmp_path, project, "c4a5c4a5")
    server = Server(tmp_path, flush_every=5, flush_interval_s=3600.0).start()
    answered = [predict(server, {"texts": [f"refund {i}"]}).json()["request_id"]
                for i in range(23)]
    server.stop(signal.SIGKILL)  # no shutdown: whatever was buffered is gone
    from stages.prediction_log import read_log

    logged = read_log(tmp_path / "logs/predictions").column("request_id").to_pylist()
    assert set(logged) <= set(answered)
    assert len(answered) - 5 < len(logged) < len(answered)  # 20 of 23 written, 3 lost
    assert len(logged) == 20  # (read_log read every part file: none is half-written)


def test_fp32_is_selectable_and_a_missing_fp16_is_refused(tmp_path: Path, project: Path) -> None:
    install_champion(tmp_path, project, "f3200000")
    with Server(tmp_path, precision="fp32") as server:
        info = httpx.get(server.url + "/v1/model").json()
        assert info["precision"] == "fp32" and info["file"].endswith("onnx/model.onnx")
        from stages.io import sha256_file

        onnx_file = tmp_path / "models/champion/onnx/model.onnx"
        assert info["version"] == f"f3200000-{sha256_file(onnx_file)[:12]}"
        assert predict(server, {"texts": ["hello"]}).status_code == 200
    # quantize.fp16 was off, so the champion has no fp16 file
    with Server(tmp_path, precision="fp16").start(wait_ready=False) as server:
        wait_until(lambda: "fp16" in httpx.get(server.url + "/readyz").json().get("reason", ""))
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503
        assert "the champion has no fp16 model" in ready.json()["reason"]


def test_a_request_over_max_batch_is_split_over_concurrent_calls_and_answered_in_order(
        tmp_path: Path, project: Path) -> None:
    install_champion(tmp_path, project, "5b1175b1")
    texts = ["refund", "where is my parcel please", "card declined at the shop today again",
             "hi", "cancel my subscription now", LONG_TEXT, "login fails"]
    # fp32: batch-invariant, so a text must score the same alone and among others
    with Server(tmp_path, precision="fp32", max_batch=2, workers=2) as server:
        alone = [predict(server, {"texts": [t]}).json()["predictions"][0] for t in texts]
        before = server.metrics()
        together = predict(server, {"texts": texts, "ids": [str(i) for i in range(7)]}).json()
        calls = (metric(server.metrics(), "serve_batch_size_count")
                 - metric(before, "serve_batch_size_count"))
    assert calls >= 4  # 7 texts, at most 2 per call
    assert [p["id"] for p in together["predictions"]] == [str(i) for i in range(7)]
    for one, many in zip(alone, together["predictions"], strict=True):
        assert many["label"] == one["label"]
        assert many["n_tokens"] == one["n_tokens"] and many["truncated"] == one["truncated"]
        assert abs(many["confidence"] - one["confidence"]) < 1e-5
    assert together["predictions"][5]["truncated"] is True  # LONG_TEXT
