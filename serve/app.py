"""The FastAPI application: endpoints, the reload machinery and the service's lifecycle.

Endpoints: POST /v1/predict, GET /v1/model, /healthz, /readyz, /metrics, POST /admin/reload
(Bearer $RETRAINER_ADMIN_TOKEN). A reload loads, warms and parity-checks the new champion while
the old one keeps answering, then swaps one reference; a champion that fails any check is refused.
More: docs/serving.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serve.batcher import MicroBatcher
from serve.http_messages import BadRequest, error_response, predict_answer, read_predict_request
from serve.metrics import ServeMetrics
from serve.model import BatchResult, NoChampion, ServedModel, champion_files, load_champion
from serve.params import ADMIN_TOKEN_ENV, ServeParams
from serve.predlog import PredictionLog
from stages import artifacts
from stages.common import StageError, get_logger

log = get_logger(__name__)

ENDPOINTS = {"/v1/predict", "/v1/model", "/healthz", "/readyz", "/metrics", "/admin/reload"}
NULL_LABEL = "null"  # serve_predictions' label for an out-of-scope answer whose label is null


class Service:
    """The model being served, the batcher, the log, and how a new champion replaces the model."""

    def __init__(self, params: ServeParams, pointer: Path = artifacts.CHAMPION_POINTER) -> None:
        self.params, self.pointer = params, pointer
        self.metrics = ServeMetrics()
        self.model: ServedModel | None = None
        self.not_ready = "loading the champion"
        self.last_reload: dict[str, Any] | None = None
        self.batcher = MicroBatcher(lambda: self.model, params.max_batch, params.max_wait_ms,
                                    self.metrics, params.max_pad_share, params.workers)
        self.log = PredictionLog(params.log_path, params.log_text, params.flush_every,
                                 params.flush_interval_s, self.metrics)
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="champion-loader")
        self._log_writer = ThreadPoolExecutor(1, thread_name_prefix="prediction-log")
        self._log_write: asyncio.Future | None = None
        self._reload_lock = asyncio.Lock()
        self._pointer_seen: bytes | None = None
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------ reload
    def _pointer_bytes(self) -> bytes | None:
        try:
            return self.pointer.read_bytes()
        except OSError:
            return None

    async def reload(self, trigger: str) -> dict[str, Any]:
        """Load the workspace's champion beside the current one and swap, or refuse it."""
        async with self._reload_lock:
            self._pointer_seen = self._pointer_bytes()
            loop = asyncio.get_running_loop()
            try:
                _, _, version = await loop.run_in_executor(
                    self._loader, champion_files, self.params.precision, self.pointer)
                if self.model is not None and version == self.model.version:
                    return self._reloaded("unchanged", trigger, version)
                new = await loop.run_in_executor(self._loader, load_champion, self.params,
                                                 self.pointer)
            except NoChampion as exc:
                if self.model is None:
                    self.not_ready = exc.what
                return self._reloaded("refused", trigger, None, exc)
            except Exception as exc:  # anything else (a damaged file pyarrow cannot read...)
                error = exc if isinstance(exc, StageError) else StageError(
                    f"loading the champion failed: {exc!r}", where=str(self.pointer),
                    fix="check the champion's files: `dvc status models/champion.dvc`")
                if self.model is None:
                    self.not_ready = f"the champion was refused: {error.what}"
                return self._reloaded("refused", trigger, None, error)
            old, self.model = self.model, new  # the swap: the next batch runs on `new`
            self.not_ready = ""
            self.metrics.ready.set(1)
            self.metrics.model.info({"version": new.version, "precision": new.precision,
                                     "provider": new.describe()["provider"],
                                     "promoted_at": str(new.record.get("promoted_at"))})
            log.info("serving %s (was %s; trigger %s)", new.version,
                     old.version if old else "nothing", trigger)
            return self._reloaded("loaded", trigger, new.version)

    def _reloaded(self, result: str, trigger: str, version: str | None,
                  error: StageError | None = None) -> dict[str, Any]:
        self.metrics.reloads.labels(result=result, trigger=trigger).inc()
        self.last_reload = {"result": result, "trigger": trigger, "version": version,
                            "serving": self.model.version if self.model else None,
                            "at": datetime.now(UTC).isoformat(timespec="seconds")}
        if error is not None:
            self.last_reload["error"] = str(error)
            if isinstance(error, NoChampion):
                log.warning("no champion to load (%s): %s", trigger, error.what)
            else:
                log.error("REFUSED the new champion (%s); still serving %s:\n%s", trigger,
                          self.last_reload["serving"] or "nothing", error)
        return self.last_reload

    async def _watch_pointer(self) -> None:
        """Reload when models/champion.json changes (promote writes it last)."""
        while True:
            await asyncio.sleep(self.params.reload_poll_s)
            if self._pointer_bytes() != self._pointer_seen:
                await self.reload("pointer")

    def record(self, ts: datetime, request_id: str, ids: list[str | None], texts: list[str],
               labels: list[str | None], model: ServedModel, result: BatchResult,
               latency_ms: float) -> None:
        """Log a request's predictions and count them in the metrics."""
        self.log.append(ts, request_id, ids, texts, labels, result.probs, model.version,
                        latency_ms, result.truncated, result.n_tokens, result.embedding,
                        result.out_of_scope, result.oos_score)
        self.flush_log_if_due()
        for label in labels:
            self.metrics.predictions.labels(label=NULL_LABEL if label is None else label).inc()
        self.metrics.truncated.inc(sum(result.truncated))
        if result.out_of_scope is not None:
            self.metrics.out_of_scope.inc(int(result.out_of_scope.sum()))

    def flush_log_if_due(self) -> None:
        """Write the buffered log rows on the log thread (a Parquet write is 5-30 ms: on the
        event loop it would stall every request in flight). One write at a time."""
        if self.log.due() and (self._log_write is None or self._log_write.done()):
            self._log_write = asyncio.get_running_loop().run_in_executor(self._log_writer,
                                                                         self.log.flush)

    async def _flush_log(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.params.flush_interval_s))
            self.flush_log_if_due()

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.batcher.start()
        await loop.run_in_executor(self._log_writer, self.log.warm)
        self._tasks = [loop.create_task(self.reload("startup"), name="startup-load"),
                       loop.create_task(self._flush_log(), name="log-flusher")]
        if self.params.reload_poll_s > 0:
            self._tasks.append(loop.create_task(self._watch_pointer(), name="pointer-watch"))
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, lambda: self._tasks.append(
                loop.create_task(self.reload("sighup"))))

    async def stop(self) -> None:
        """After uvicorn has drained the requests: answer what is queued, write the log."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGHUP)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.batcher.stop()
        if self._log_write is not None:
            await asyncio.wait([self._log_write])
        rows = self.log.flush()
        self._log_writer.shutdown(wait=True)
        self._loader.shutdown(wait=False, cancel_futures=True)
        log.info("stopped: wrote the last %d prediction log rows to %s", rows,
                 self.params.log_path)


def create_app(params: ServeParams, pointer: Path = artifacts.CHAMPION_POINTER) -> FastAPI:
    service = Service(params, pointer)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="retrainer: the champion", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.service = service
    metrics = service.metrics

    app.add_middleware(RequestMetrics, metrics=metrics)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if service.model is None:
            return JSONResponse({"ready": False, "reason": service.not_ready}, status_code=503)
        return JSONResponse({"ready": True, "model_version": service.model.version})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model")
    async def model_info() -> Response:
        if service.model is None:
            return not_ready(service)
        return JSONResponse({**service.model.describe(), "last_reload": service.last_reload})

    @app.post("/admin/reload")
    async def admin_reload(request: Request) -> Response:
        token = os.environ.get(ADMIN_TOKEN_ENV, "")
        if not token:
            return error_response(403, "admin_disabled", "admin reload is disabled",
                                  f"start the service with {ADMIN_TOKEN_ENV} set")
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return error_response(401, "unauthorized", "missing or wrong admin token",
                                  f"send 'Authorization: Bearer ${ADMIN_TOKEN_ENV}'")
        result = await service.reload("admin")
        return JSONResponse(result, status_code=409 if result["result"] == "refused" else 200)

    @app.post("/v1/predict")
    async def predict(request: Request) -> Response:
        start, ts = time.perf_counter(), datetime.now(UTC)
        request_id = uuid.uuid4().hex
        if service.model is None:
            return not_ready(service)
        try:
            texts, ids = await read_predict_request(request, params)
        except BadRequest as exc:
            return exc.response()
        try:
            model, result = await service.batcher.submit(texts)
        except Exception as exc:  # logged by the batcher with its traceback
            return error_response(500, "inference_failed", f"the model failed: {exc}")
        latency_ms = (time.perf_counter() - start) * 1000
        labels = model.answer_labels(result)
        service.record(ts, request_id, ids, texts, labels, model, result, latency_ms)
        return predict_answer(request_id, model, ids, labels, result, params.top_k)

    return app


class RequestMetrics:
    """Count and time every HTTP request by endpoint and status (plain ASGI: no per-request
    task or body buffering, unlike Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
            labels = {"endpoint": endpoint, "status": str(status)}
            self.metrics.requests.labels(**labels).inc()
            self.metrics.latency.labels(**labels).observe(time.perf_counter() - start)


def not_ready(service: Service) -> JSONResponse:
    return error_response(503, "not_ready", f"no model is being served: {service.not_ready}",
                          "wait for GET /readyz to answer 200", headers={"Retry-After": "5"})

