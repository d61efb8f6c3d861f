"""Dynamic micro-batching: concurrent requests share ONNX calls.

Texts wait in one queue; each free inference thread takes the oldest text plus queued texts that
keep padding within ``max_pad_share``, up to ``max_batch`` (waiting up to ``max_wait_ms``). A
batch-dependent model (dynamic int8) gets one text per call. Queued texts finish on the model that
was serving when they arrived, so each answer comes from one version.
More: docs/serving.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from serve.metrics import ServeMetrics
from serve.model import BatchResult, ServedModel
from stages.common import get_logger

if TYPE_CHECKING:
    from tokenizers import Encoding

log = get_logger(__name__)

TOKENISE_INLINE_CHARS = 4096  # longer requests are tokenised off the event loop
SCAN_TEXTS = 1024             # how far into the queue a call looks for texts of a similar length


@dataclass
class Job:
    """One request: its texts' encodings and the answer being assembled for it."""

    model: ServedModel
    encodings: list[Encoding]
    future: asyncio.Future
    probs: np.ndarray
    embedding: np.ndarray | None = None
    out_of_scope: np.ndarray | None = None  # allocated when the model has a detector
    oos_score: np.ndarray | None = None
    remaining: int = 0
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def live(self) -> bool:  # False once answered, failed, or the client went away
        return not self.future.done()


@dataclass
class Text:
    job: Job
    index: int   # in job.encodings
    length: int  # tokens


class MicroBatcher:
    def __init__(self, current_model: Callable[[], ServedModel | None], max_batch: int,
                 max_wait_ms: float, metrics: ServeMetrics, max_pad_share: float = 1.0,
                 workers: int = 1) -> None:
        self.current_model = current_model  # read per request: a reload swaps it between them
        self.max_batch, self.max_wait_s = max_batch, max_wait_ms / 1000
        self.max_pad_share, self.workers = max_pad_share, workers
        self.metrics = metrics
        self._pending: list[Text] = []
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="onnx-inference")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def submit(self, texts: list[str]) -> tuple[ServedModel, BatchResult]:
        """The model that answered and its result for ``texts`` (in order)."""
        model = self.current_model()
        if model is None:
            raise RuntimeError("no model is loaded")
        if sum(map(len, texts)) > TOKENISE_INLINE_CHARS:
            encodings = await asyncio.to_thread(model.encode, texts)
        else:  # ~45 us per short text: cheaper here than a thread hop
            encodings = model.encode(texts)
        job = Job(model, encodings, asyncio.get_running_loop().create_future(),
                  np.empty((len(texts), len(model.labels)), dtype=np.float32),
                  remaining=len(texts))
        if model.onnx.oos is not None:
            job.out_of_scope = np.zeros(len(texts), dtype=bool)
            job.oos_score = np.zeros(len(texts), dtype=np.float64)
        self._pending.extend(Text(job, i, len(e.ids)) for i, e in enumerate(encodings))
        self.metrics.queue_depth.set(len(self._pending))
        self._wakeup.set()
        await job.future
        return model, BatchResult.of(encodings, job.probs, job.embedding, job.out_of_scope,
                                     job.oos_score)

    async def stop(self) -> None:
        """Answer everything queued, then stop (SIGTERM: uvicorn has stopped taking requests)."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        """Form a call whenever an inference thread is free; answer it when it is done."""
        free = asyncio.Semaphore(self.workers)
        running: set[asyncio.Task] = set()
        while True:
            await free.acquire()  # select only when a thread can run the call at once
            call = await self._next_call()
            if call is None:
                break
            task = asyncio.get_running_loop().create_task(self._answer(call))
            running.add(task)
            task.add_done_callback(lambda t: (running.discard(t), free.release()))
        await asyncio.gather(*running)

    async def _answer(self, call: list[Text]) -> None:
        model = call[0].job.model
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._infer, model, [t.job.encodings[t.index] for t in call])
        except Exception as exc:  # answered as a 500 to exactly the requests in this call
            log.exception("inference failed for %d text(s)", len(call))
            for text in call:
                if text.job.live:
                    text.job.future.set_exception(exc)
            return
        for row, text in enumerate(call):
            job = text.job
            job.probs[text.index] = result.probs[row]
            if result.embedding is not None:
                if job.embedding is None:
                    job.embedding = np.empty((len(job.encodings), result.embedding.shape[1]),
                                             dtype=np.float32)
                job.embedding[text.index] = result.embedding[row]
            if job.out_of_scope is not None and job.oos_score is not None:
                job.out_of_scope[text.index] = result.out_of_scope[row]
                job.oos_score[text.index] = result.oos_score[row]
            job.remaining -= 1
            if job.remaining == 0 and job.live:
                job.future.set_result(None)

    async def _next_call(self) -> list[Text] | None:
        """The texts of the next ONNX call (None: stopping and nothing is left)."""
        while True:
            self._pending = [t for t in self._pending if t.job.live]
            if not self._pending:
                if self._stopping:
                    return None
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            limit = self._pending[0].job.model.onnx.texts_per_call(self.max_batch)
            call = select_call(self._pending, limit, self.max_pad_share)
            wait = self._pending[0].job.enqueued + self.max_wait_s - time.monotonic()
            if len(call) >= limit or wait <= 0 or self._stopping:
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)
        chosen = {id(t) for t in call}
        self._pending = [t for t in self._pending if id(t) not in chosen]
        self.metrics.queue_depth.set(len(self._pending))
        return call

    def _infer(self, model: ServedModel, encodings: list[Encoding]) -> BatchResult:
        """On the inference thread: one ONNX call, padded to its longest text."""
        began = time.perf_counter()
        result = model.run(encodings)
        self.metrics.inference.observe(time.perf_counter() - began)
        self.metrics.batch_size.observe(len(encodings))
        return result


def select_call(queue: list[Text], max_batch: int, max_pad_share: float) -> list[Text]:
    """The texts of the next call: the oldest queued text, then, oldest first, each text of the
    same model that keeps the call's padding (to its longest text) within ``max_pad_share`` of
    its tokens, up to ``max_batch`` texts."""
    oldest = queue[0]
    call, tokens, longest = [oldest], oldest.length, oldest.length
    for text in queue[1:SCAN_TEXTS]:
        if len(call) == max_batch:
            break
        if text.job.model is not oldest.job.model:
            continue
        width = max(longest, text.length)
        if 1 - (tokens + text.length) / ((len(call) + 1) * width) <= max_pad_share:
            call.append(text)
            tokens, longest = tokens + text.length, width
    return call
