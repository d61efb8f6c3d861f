"""Dynamic micro-batching: concurrent requests share one ONNX call.

Each request's texts wait in one queue. The batcher takes the queue's front as soon as it holds
``max_batch`` texts, or when the oldest text has waited ``max_wait_ms``, and runs them as one
call (padded to the longest) on a single inference thread; while that call runs, the next batch
gathers. A request with more than ``max_batch`` texts runs alone, in ``max_batch`` chunks.
``max_batch: 1`` is one call per text (micro-batching off, the benchmark's baseline).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from serve.metrics import ServeMetrics
from serve.model import BatchResult, ServedModel
from stages.common import get_logger

log = get_logger(__name__)


@dataclass
class Job:
    texts: list[str]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher:
    def __init__(self, current_model: Callable[[], ServedModel | None], max_batch: int,
                 max_wait_ms: float, metrics: ServeMetrics) -> None:
        self.current_model = current_model  # read at each batch: a reload swaps it between calls
        self.max_batch, self.max_wait_s = max_batch, max_wait_ms / 1000
        self.metrics = metrics
        self._pending: deque[Job] = deque()
        self._queued_texts = 0
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="onnx-inference")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def submit(self, texts: list[str]) -> tuple[ServedModel, BatchResult]:
        """The model that answered and its result for ``texts`` (in order)."""
        job = Job(texts, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._queued_texts += len(texts)
        self.metrics.queue_depth.set(self._queued_texts)
        self._wakeup.set()
        return await job.future

    async def stop(self) -> None:
        """Answer everything queued, then stop (SIGTERM: uvicorn has stopped taking requests)."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            model = self.current_model()
            try:
                if model is None:
                    raise RuntimeError("no model is loaded")
                texts = [t for job in batch for t in job.texts]
                result = await loop.run_in_executor(self._executor, self._infer, model, texts)
            except Exception as exc:  # answered as a 500 to exactly the requests in this batch
                log.exception("inference failed for a batch of %d request(s)", len(batch))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            start = 0
            for job in batch:
                n = len(job.texts)
                if not job.future.done():  # the client may have gone away
                    job.future.set_result((model, slice_result(result, start, start + n)))
                start += n

    async def _next_batch(self) -> list[Job] | None:
        while not self._pending:
            if self._stopping:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = self._pending[0].enqueued + self.max_wait_s
        while self._queued_texts < self.max_batch and not self._stopping:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                break
        batch, n = [], 0
        while self._pending and (not batch or n + len(self._pending[0].texts) <= self.max_batch):
            job = self._pending.popleft()
            batch.append(job)
            n += len(job.texts)
        self._queued_texts -= n
        self.metrics.queue_depth.set(self._queued_texts)
        return batch

    def _infer(self, model: ServedModel, texts: list[str]) -> BatchResult:
        """On the inference thread: one ONNX call per ``max_batch`` texts."""
        parts = []
        for i in range(0, len(texts), self.max_batch):
            chunk = texts[i:i + self.max_batch]
            start = time.perf_counter()
            parts.append(model.predict(chunk))
            self.metrics.inference.observe(time.perf_counter() - start)
            self.metrics.batch_size.observe(len(chunk))
        if len(parts) == 1:
            return parts[0]
        return BatchResult(
            probs=np.concatenate([p.probs for p in parts]),
            n_tokens=[n for p in parts for n in p.n_tokens],
            truncated=[t for p in parts for t in p.truncated],
            embedding=None if parts[0].embedding is None else
            np.concatenate([p.embedding for p in parts]))


def slice_result(result: BatchResult, start: int, stop: int) -> BatchResult:
    return BatchResult(result.probs[start:stop], result.n_tokens[start:stop],
                       result.truncated[start:stop],
                       None if result.embedding is None else result.embedding[start:stop])
