"""The engine's knobs (from :class:`~service.settings.Settings`) and its thread pools, which the
app's lifespan owns: made with the app (their threads start with the first write) and shut down
after the last snapshot at shutdown."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass

from service.settings import Settings


@dataclass(frozen=True)
class Tuning:
    """How a model's writer groups and overlaps its log writes (see
    :mod:`service.engine.model`); the defaults are :class:`~service.settings.Settings`'."""

    # Groups of at least this many non-zeros are logged while they are learned; below it,
    # learning takes less than handing the log write to another thread.
    overlap_log_nnz: int
    # A group of batches logged together holds at most this many non-zeros (12-16 bytes each
    # in the log) unless its first batch alone is larger: a bounded write, and
    # acknowledgements of the first batches are not held back long by the later ones.
    group_max_nnz: int
    # Groups learned ahead of their log write: the writer waits for the oldest beyond this.
    # The groups waiting behind a running write are written together when it ends (one
    # synchronized write), so up to max_in_flight - 1 groups share a write.
    max_in_flight: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Tuning:
        return cls(
            overlap_log_nnz=settings.overlap_log_nnz,
            group_max_nnz=settings.group_max_nnz,
            max_in_flight=settings.max_in_flight,
        )


class Pools:
    """The threads that drain the models' mailboxes (one per model writing at the moment;
    beyond ``writers`` models at once, a model's writes wait for a thread) and the ones that
    write groups' log records while they are learned. Each pool starts with its first task
    (again after a :meth:`shutdown`, should an app be started again)."""

    def __init__(self, writers: int, log_writers: int) -> None:
        self._sizes = {"writer": writers, "log": log_writers}
        self._pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Pools:
        return cls(settings.writer_threads, settings.log_writer_threads)

    def _pool(self, kind: str) -> concurrent.futures.ThreadPoolExecutor:
        pool = self._pools.get(kind)
        if pool is None:
            with self._lock:
                pool = self._pools.get(kind)
                if pool is None:
                    pool = concurrent.futures.ThreadPoolExecutor(
                        self._sizes[kind], thread_name_prefix=f"adaserve-{kind}"
                    )
                    self._pools[kind] = pool
        return pool

    def run_writer(self, fn: Callable[[], None]) -> None:
        """``fn()`` in a writer thread (a model's mailbox being drained)."""
        self._pool("writer").submit(fn)

    def run_log_writer(self, fn: Callable[[], None]) -> None:
        """``fn()`` in a log writer thread."""
        self._pool("log").submit(fn)

    def shutdown(self) -> None:
        """Wait for the writes under way, then end the threads."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=True)
