"""The one seam between retrainer and a distributed engine: map a function over work items.

Batch scoring needs very little from an engine: run ``fn(item)`` for many items on many
processes, hand back each result (or the error) as it finishes, and re-run an item whose worker
died. :class:`Engine` is that contract; :class:`DaskEngine` implements it on Dask ``distributed``
(a local cluster by default, a running scheduler by address) and :class:`InlineEngine` in this
process (no workers: the baseline and a debugging aid). A Ray engine is the same ~30 lines on
``ray.remote`` + ``ray.wait`` (docs/scale.md); nothing outside this module names Dask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from stages.common import StageError, get_logger

log = get_logger(__name__)


class Engine(Protocol):
    """Runs work items on workers; implementations must re-run the items of a lost worker."""

    name: str

    def describe(self) -> dict[str, Any]:
        """What the run was on (engine, address, workers), for the manifest."""
        ...

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[tuple[str, Any]]
                      ) -> Iterator[tuple[str, Any, BaseException | None]]:
        """Yield ``(key, result, error)`` per ``(key, item)`` as each finishes, in any order."""
        ...

    def close(self) -> None: ...


class InlineEngine:
    """Every item in this process, one after the other: no engine, no fault tolerance."""

    name = "inline"

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "workers": 1}

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[tuple[str, Any]]
                      ) -> Iterator[tuple[str, Any, BaseException | None]]:
        for key, item in items:
            try:
                yield key, fn(item), None
            except Exception as exc:  # reported per item, like a remote engine does
                yield key, None, exc

    def close(self) -> None:
        pass


class DaskEngine:
    """Dask ``distributed``: a LocalCluster of worker processes, or the scheduler at ``address``.

    Each worker is its own process (under a nanny that restarts it if it dies); when one dies
    mid-item the scheduler gives the item to another worker, up to ``allowed_failures`` times.
    """

    name = "dask"

    def __init__(self, address: str | None = None, workers: int = 2, threads_per_worker: int = 1,
                 memory_limit: str = "auto", allowed_failures: int = 3) -> None:
        import dask
        from distributed import Client, LocalCluster

        dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures})
        self.cluster = None
        self.address = address
        try:
            if address:
                self.client = Client(address, timeout="30s")
            else:
                # dashboard off: nothing listens beyond the scheduler's own 127.0.0.1 port
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                                            processes=True, memory_limit=memory_limit,
                                            host="127.0.0.1", dashboard_address=None,
                                            silence_logs=logging.WARNING)
                self.client = Client(self.cluster)
        except OSError as exc:
            raise StageError(f"could not reach the Dask scheduler: {exc}", where=address or "local",
                             fix="start one (`dask scheduler` + `dask worker ADDRESS`) or leave "
                             "the address empty for a local cluster") from None
        self.address = self.client.scheduler.address
        log.info("dask cluster at %s with %d worker(s)", self.address, self.worker_count())

    def worker_count(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "address": self.address, "local": self.cluster is not None,
                "workers": self.worker_count()}

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[tuple[str, Any]]
                      ) -> Iterator[tuple[str, Any, BaseException | None]]:
        from distributed import as_completed

        futures = {self.client.submit(fn, item, key=key, pure=False): key for key, item in items}
        for future in as_completed(futures):
            key = futures[future]
            try:
                yield key, future.result(), None
            except Exception as exc:  # KilledWorker (lost too often) or the item's own error
                yield key, None, exc

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def open_engine(kind: str, address: str | None = None, workers: int = 2,
                threads_per_worker: int = 1, memory_limit: str = "auto") -> Engine:
    """The engine named in ``score.engine``: dask (local cluster or ``address``) or inline."""
    if kind == "inline":
        if address:
            raise StageError("an address needs engine 'dask'", fix="drop --address or use --engine dask")
        return InlineEngine()
    if kind == "dask":
        return DaskEngine(address, workers, threads_per_worker, memory_limit)
    raise StageError(f"unknown engine {kind!r}", fix="use dask or inline")
