"""Dynamic micro-batching: concurrent requests share one ONNX call.

Each request's texts wait in one queue. The batcher takes the queue's front as soon as it holds
``max_batch`` texts, or when the oldest text has waited ``max_wait_ms``, and runs them as one
call on a single inference thread; while that call runs, the next batch gathers. A request with
more than ``max_batch`` texts runs alone, in ``max_batch`` chunks. ``max_batch: 1`` is one call
per text (micro-batching off, the benchmark's baseline).

A call is padded to its longest text. Texts of mixed lengths make that costly (on 2 CPU cores
an unsorted batch of 32 test texts ran slower per text than one text per call), so a batch's
texts are ordered by length and cut into calls wherever more than ``max_pad_share`` of a call's
tokens would be padding; ``max_pad_share: 1`` is always one call.
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
                 max_wait_ms: float, metrics: ServeMetrics, max_pad_share: float = 1.0) -> None:
        self.current_model = current_model  # read at each batch: a reload swaps it between calls
        self.max_batch, self.max_wait_s = max_batch, max_wait_ms / 1000
        self.max_pad_share = max_pad_share
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
        """On the inference thread: tokenise, then one ONNX call per group of similar lengths."""
        encodings = model.encode(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        probs = np.empty((len(texts), len(model.labels)), dtype=np.float32)
        n_tokens, truncated = [0] * len(texts), [False] * len(texts)
        embedding = None
        lengths = [len(encodings[i].ids) for i in order]
        for start, stop in length_groups(lengths, self.max_batch, self.max_pad_share):
            idx = order[start:stop]
            began = time.perf_counter()
            part = model.run([encodings[i] for i in idx])
            self.metrics.inference.observe(time.perf_counter() - began)
            self.metrics.batch_size.observe(len(idx))
            probs[idx] = part.probs
            if part.embedding is not None:
                if embedding is None:
                    embedding = np.empty((len(texts), part.embedding.shape[1]), dtype=np.float32)
                embedding[idx] = part.embedding
            for row, i in enumerate(idx):
                n_tokens[i], truncated[i] = part.n_tokens[row], part.truncated[row]
        return BatchResult(probs, n_tokens, truncated, embedding)


def length_groups(lengths: list[int], max_batch: int, max_pad_share: float) -> list[tuple[int, int]]:
    """Cut ascending ``lengths`` into [start, stop) calls of at most ``max_batch`` texts whose
    padding (to the call's longest) stays within ``max_pad_share`` of the call's tokens."""
    groups, start, total = [], 0, 0
    for i, length in enumerate(lengths):
        n = i - start + 1
        if n > 1 and (n > max_batch or 1 - (total + length) / (n * length) > max_pad_share):
            groups.append((start, i))
            start, total = i, 0
        total += length
    if lengths:
        groups.append((start, len(lengths)))
    return groups


def slice_result(result: BatchResult, start: int, stop: int) -> BatchResult:
    return BatchResult(result.probs[start:stop], result.n_tokens[start:stop],
                       result.truncated[start:stop],
                       None if result.embedding is None else result.embedding[start:stop])
