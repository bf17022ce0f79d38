"""A model's write-ahead log as its writer uses it: group commit, and large groups logged in
another thread while they (and the next groups) are learned.

A group learned while its log write runs is acknowledged once that write ends
(:meth:`LogPipeline.track`); the groups learned while a write runs share the next one (one
synchronized write, :meth:`LogPipeline._write`). If a write fails, it and every later group in
flight are refused (:meth:`LogPipeline.refused`): the writer rolls the model back to its files.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from optim import Batch, LearnResult
from service.engine.mailbox import Drained, Update
from service.storage import ModelStorage, RecordBody, StorageError

# A batch's log record: the batch, the step it starts at, its record body if made beforehand.
Record = tuple[Batch, int, RecordBody | None]


@dataclass(eq=False)
class InFlight:
    """A group learned while its log write runs: acknowledged once that is done."""

    updates: list[Update]
    results: list[LearnResult]
    logged: Future[None]


class LogPipeline:
    """The log writes of one model, run with ``run`` (in a log writer thread): ``acknowledge``
    answers a group once it is logged; ``wake_writer`` has the model's writer come round to
    refuse what a failed write left."""

    def __init__(
        self,
        storage: ModelStorage,
        run: Callable[[Callable[[], None]], None],
        acknowledge: Callable[[list[Update], list[LearnResult]], None],
        wake_writer: Callable[[], None],
    ) -> None:
        self.storage = storage
        self._acknowledge, self._wake_writer = acknowledge, wake_writer
        # Groups learned whose log write is running (at most max_in_flight), oldest first;
        # acknowledged by _logged as each write ends, refused by refused().
        self._in_flight: collections.deque[InFlight] = collections.deque()
        self._in_flight_lock = threading.Lock()
        # Their log writes not begun yet, in order, and whether one failed (every later write
        # is refused then, until refused() has been called).
        self._writes: Drained[tuple[list[Record], Future[None]]] = Drained(run, self._write)
        self._broken = False

    def write(self, records: Sequence[Record]) -> None:
        """Log ``records`` now, in the calling thread (one synchronized write; raises
        :class:`~service.storage.StorageError`, nothing written then). Call it only when no
        group is in flight (``refused(0)``): the log takes records in order."""
        self.storage.append_all(records)

    def write_after_earlier(self, records: list[Record]) -> Future[None]:
        """Write ``records`` to the log in a log writer thread, after every earlier group's."""
        logged: Future[None] = Future()
        self._writes.put((records, logged))
        return logged

    def track(
        self, updates: list[Update], results: list[LearnResult], logged: Future[None]
    ) -> None:
        """A group learned while its records are written (``logged``): acknowledged once they
        are, or refused by :meth:`refused`."""
        flight = InFlight(updates, results, logged)
        with self._in_flight_lock:
            self._in_flight.append(flight)
        logged.add_done_callback(lambda _: self._logged(flight))

    def _write(self, waiting: list[tuple[list[Record], Future[None]]]) -> None:
        """The log writer, with the groups waiting when a write begins: written together, in
        order, one synchronized write for all (all of them or none); once a write has failed,
        every later group is refused without a write (it would follow a hole in the log)."""
        error: BaseException | None = None
        if self._broken:
            error = StorageError(0, "an earlier batch was not logged")
        else:
            try:
                self.storage.append_all([r for records, _ in waiting for r in records])
            except BaseException as exc:
                error = exc
                self._broken = True
        for _, logged in waiting:
            if error is None:
                logged.set_result(None)
            else:
                logged.set_exception(error)

    def _logged(self, flight: InFlight) -> None:
        """A group's log write has ended (in the log thread): acknowledge the group, or have the
        writer refuse it and every later group in flight (:meth:`refused`)."""
        with self._in_flight_lock:
            if flight not in self._in_flight:
                return  # refused by a roll-back already
            if flight.logged.exception() is None:
                self._in_flight.remove(flight)
        if flight.logged.exception() is None:
            self._acknowledge(flight.updates, flight.results)
        else:
            self._wake_writer()

    def refused(self, in_flight: int) -> tuple[list[InFlight], BaseException] | None:
        """Wait (in the writer) until at most ``in_flight`` groups' log writes are running. If
        one of those that ended failed: it and every later group in flight (all learned, none
        logged), to refuse, and the failure; the log is idle then."""
        with self._in_flight_lock:
            waiting = list(self._in_flight)
        for flight in waiting[: max(len(waiting) - in_flight, 0)]:
            if flight.logged.exception() is not None:
                break
        else:
            return None
        with self._in_flight_lock:
            refused = list(self._in_flight)
            self._in_flight.clear()
        for flight in refused:
            flight.logged.exception()  # each fails after the one that failed: the log is idle
        self._broken = False  # every write in flight has ended: the log writer is idle
        failure = next(e for f in refused if (e := f.logged.exception()) is not None)
        return refused, failure
