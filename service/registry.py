"""The models the service holds, their writers, and their durable storage.

Each model has one writer at a time: its writes (batches to learn, snapshots, imports, a delete)
go into its mailbox in arrival order and a thread from a shared pool drains it
(:meth:`ManagedModel._drain`), so updates are applied one batch at a time in that order without
a hop back to the event loop between two of them. Learning runs off the event loop (the compiled
kernels release the GIL), so a long batch for one model does not stall other models or health
checks. A ``threading.Lock`` is held while the writer learns or a reader reads (or by the event
loop for a read of a few rows, when it is free), so a prediction never sees half a batch.

Every batch is written to the model's log (:mod:`service.storage`) before it is acknowledged;
one the log refuses is not applied. The batches waiting in the mailbox when the writer takes
them are logged together, one synchronized write for all (group commit), and learned with one
call of the compiled loop. A large group is logged in another thread while it and the next groups
are learned (:meth:`ManagedModel._learn_group`), and the groups learned while a log write runs
share the next one (:meth:`ManagedModel._write_log`): a prediction may see a batch whose
acknowledgement still waits for its sync; if the log refuses it, it and every group learned
after it are refused and the model is reloaded from its files.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, NoReturn, TypeVar

import anyio

from optim import Batch, ConfigError, LearnResult, OnlineLogisticRegression
from service.errors import ApiError
from service.settings import Settings
from service.storage import ModelStorage, RecordBody, StorageError

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Reads of at most this many rows + non-zeros may run on the event loop (``read(inline=True)``):
# scoring costs 3-150 ns per non-zero (exact Adam catch-up the most), so at most ~150 µs.
INLINE_READ_SIZE = 1_024
# Groups of at least this many non-zeros are logged while they are learned (_learn_group);
# below it, learning takes less than handing the log write to another thread.
OVERLAP_LOG_NNZ = 16_384
# A group of batches logged together holds at most this many non-zeros (12-16 bytes each in
# the log) unless its first batch alone is larger: a bounded write, and acknowledgements of the
# first batches are not held back long by the later ones.
GROUP_MAX_NNZ = 1 << 21
# Groups learned ahead of their log write: the writer waits for the oldest beyond this. The
# groups waiting behind a running write are written together when it ends (one synchronized
# write, see ManagedModel._write_log), so up to MAX_IN_FLIGHT - 1 groups share a write.
MAX_IN_FLIGHT = 4
# The threads that drain the models' mailboxes (one per model writing at the moment; beyond 64
# models at once, a model's writes wait for a thread) and the ones that write groups' log records.
_WRITERS = concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="adaserve-writer")
_LOG_WRITERS = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="adaserve-log")
T = TypeVar("T")
J = TypeVar("J")
# A batch's log record: the batch, the step it starts at, its record body if made beforehand.
_Record = tuple[Batch, int, RecordBody | None]
log = logging.getLogger("adaserve")


class _Drained(Generic[J]):
    """Items put from any thread, taken in order by one worker at a time: the first ``put``
    while none runs starts one in ``pool``, which hands ``take`` every item waiting, again and
    again, until none is left (a model's mailbox and its log writes)."""

    def __init__(self, pool: concurrent.futures.Executor, take: Callable[[list[J]], None]) -> None:
        self.pool, self.take = pool, take
        self.items: list[J] = []
        self.running = False
        self._lock = threading.Lock()

    def put(self, item: J, *, first: bool = False) -> None:
        """``item`` last or (``first``) before the items waiting."""
        with self._lock:
            self.items.insert(0 if first else len(self.items), item)
            start, self.running = not self.running, True
        if start:
            self.pool.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                items, self.items = self.items, []
                if not items:
                    self.running = False
                    return
            self.take(items)


@dataclass(eq=False)
class _Update:
    """A batch to log and learn (with its log record's body when made beforehand);
    ``on_learned`` runs in the writer once it is both."""

    batch: Batch
    on_learned: Callable[[ManagedModel, LearnResult], None] | None
    record: RecordBody | None = None
    done: concurrent.futures.Future[LearnResult] = field(default_factory=concurrent.futures.Future)


@dataclass(eq=False)
class _Call:
    """Any other write: ``fn(model)`` in the writer, between the batches before and after it."""

    fn: Callable[[OnlineLogisticRegression], Any]
    done: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


@dataclass(eq=False)
class _InFlight:
    """A group learned while its log write runs: acknowledged once that is done."""

    updates: list[_Update]
    results: list[LearnResult]
    logged: Future[None]


@dataclass(eq=False)
class ManagedModel:
    name: str
    model: OnlineLogisticRegression
    storage: ModelStorage
    created_at: float = field(default_factory=time.time)
    rows_since_snapshot: int = 0
    last_snapshot: float = field(default_factory=time.monotonic)
    # Held by the writer while it learns, by a thread that reads the arrays, or by the loop for
    # a small read.
    state_lock: threading.Lock = field(default_factory=threading.Lock)
    # Why writes are refused (503): a batch the log refused could not be rolled back.
    failed: str | None = None
    # Writes not taken by the writer yet, in arrival order (the writer drains it).
    _mailbox: _Drained[_Update | _Call] = field(init=False)
    # Groups learned whose log write is running (at most MAX_IN_FLIGHT), oldest first;
    # acknowledged by _logged as each write ends, refused by _settle.
    _in_flight: collections.deque[_InFlight] = field(default_factory=collections.deque)
    _in_flight_lock: threading.Lock = field(default_factory=threading.Lock)
    # Their log writes not begun yet, in order, and whether one failed (every later write is
    # refused then, until _settle has rolled back).
    _log_writes: _Drained[tuple[list[_Record], Future[None]]] = field(init=False)
    _log_broken: bool = False

    def __post_init__(self) -> None:
        self._mailbox = _Drained(_WRITERS, self._run_taken)
        self._log_writes = _Drained(_LOG_WRITERS, self._write_log)

    async def read(self, fn: Callable[[OnlineLogisticRegression], T], *, inline: bool = False) -> T:
        """Run ``fn(model)`` in a worker thread, never concurrently with a batch being learned.

        ``inline=True`` is for a computation of a few microseconds (scoring a few rows, see
        :data:`INLINE_READ_SIZE`): it runs right here on the event loop when the state lock is
        free, because the hop to a worker thread and back costs 100-200 µs of CPU, far more
        than the work. When a batch is being learned (the lock is held), it waits for it in a
        worker thread like any read: the event loop never blocks on the lock.
        """
        if inline and self.state_lock.acquire(blocking=False):
            # Held only for this synchronous call: a learner thread waits at most that long.
            try:
                return fn(self.model)
            finally:
                self.state_lock.release()

        def locked() -> T:
            with self.state_lock:
                return fn(self.model)

        return await anyio.to_thread.run_sync(locked)

    async def write(self, fn: Callable[[OnlineLogisticRegression], T]) -> T:
        """``fn(model)`` in the writer, after every earlier write of this model (under the state
        lock, like :meth:`read`)."""
        return await self._post(_Call(fn))  # type: ignore[no-any-return]

    async def learn(
        self,
        batch: Batch,
        on_learned: Callable[[ManagedModel, LearnResult], None] | None = None,
        record: RecordBody | None = None,
    ) -> LearnResult:
        """Log and learn ``batch`` after earlier writes; ``on_learned`` runs under the lock.
        ``record``: its :func:`~service.storage.record_body` if made beforehand (in a worker
        thread: otherwise the model's log writer makes it)."""
        update = _Update(batch, on_learned, record)
        return await self._post(update)  # type: ignore[no-any-return]

    async def learn_parsed(
        self,
        parse: Callable[[], tuple[Batch, RecordBody | None]],
        parser: concurrent.futures.Executor,
        on_learned: Callable[[ManagedModel, LearnResult], None] | None = None,
    ) -> LearnResult:
        """:meth:`learn` of the batch (and record body) ``parse()`` makes in ``parser``: that
        thread posts it to the mailbox itself, so the batch goes from the parser to the writer
        with no hop back to the event loop in between (a wake-up of the loop and a task step
        less a request). An error of ``parse()`` is raised here; nothing is posted then."""
        done: Future[LearnResult] = Future()

        def parse_and_post() -> None:
            try:
                batch, record = parse()
            except BaseException as exc:
                with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled
                    done.set_exception(exc)
                return
            self._mailbox.put(_Update(batch, on_learned, record, done))

        parser.submit(parse_and_post)
        return await asyncio.wrap_future(done)

    def _post(self, job: _Update | _Call) -> asyncio.Future[Any]:
        self._mailbox.put(job)
        # A request cancelled while its write waits here withdraws it (as it would have left a
        # lock's queue); once the writer has taken it, it runs to the end.
        return asyncio.wrap_future(job.done)

    def _run_taken(self, jobs: list[_Update | _Call]) -> None:
        """The writer, with the writes it took from the mailbox (:meth:`_run`)."""
        try:
            self._run(jobs)
        except BaseException as exc:  # a bug: answer the writes taken rather than hang them
            log.exception("model %s: the writer failed", self.name)
            for job in jobs:
                if not job.done.done():
                    job.done.set_exception(exc)

    def _run(self, jobs: list[_Update | _Call]) -> None:
        """The writes in order: consecutive batches in groups, anything else alone."""
        group: list[_Update] = []
        group_nnz = 0
        for job in jobs:
            if not job.done.set_running_or_notify_cancel():
                continue  # withdrawn
            if isinstance(job, _Update):
                if group and group_nnz + job.batch.nnz > GROUP_MAX_NNZ:
                    self._learn_group(group)
                    group, group_nnz = [], 0
                group.append(job)
                group_nnz += job.batch.nnz
                continue
            if group:
                self._learn_group(group)
                group, group_nnz = [], 0
            try:
                self._settle(0)  # a snapshot, import or delete sees only logged batches
                with self.state_lock:
                    result = job.fn(self.model)
            except BaseException as exc:
                job.done.set_exception(exc)
            else:
                job.done.set_result(result)
        if group:
            self._learn_group(group)

    def _learn_group(self, group: list[_Update]) -> None:
        """Log and learn batches that arrived in this order (see the module's docstring).

        A batch the model refuses (:meth:`OnlineLogisticRegression.check_batch`) is answered with
        that error and neither logged nor learned. The others are logged together, one
        synchronized write, and acknowledged only once that is done. A group under
        :data:`OVERLAP_LOG_NNZ` non-zeros is logged first, then learned (it learns in less time
        than a hand-over to another thread). A larger one is logged in another thread while it
        is learned and while the writer goes on with the next groups: :meth:`_logged`
        acknowledges it when its write ends.
        """
        overlap = sum(update.batch.nnz for update in group) >= OVERLAP_LOG_NNZ
        # The log takes records in order: a group logged here waits for every earlier write.
        self._settle(MAX_IN_FLIGHT - 1 if overlap else 0)
        with self.state_lock:
            accepted: list[_Update] = []
            records: list[_Record] = []
            step = self.model.step
            for update in group:
                try:
                    if self.failed is not None:
                        raise self._unavailable(self.failed)
                    # a batch the model would refuse is never logged
                    self.model.check_batch(update.batch, pending_rows=step - self.model.step)
                except BaseException as exc:
                    update.done.set_exception(exc)
                    continue
                accepted.append(update)
                records.append((update.batch, step, update.record))
                step += update.batch.n_rows
            if not accepted:
                return
            if overlap:
                logged = self._log_after_earlier(records)
            else:
                try:
                    self.storage.append_all(records)
                except StorageError as exc:
                    error = self._unavailable(f"the batch was not applied: {exc.strerror or exc}")
                    for update in accepted:
                        update.done.set_exception(error)
                    return
            # each checked above, with the rows before it in the group
            results = self.model.learn_batches([u.batch for u in accepted], check=False)
            self.rows_since_snapshot += step - records[0][1]
            if not overlap:
                self._acknowledge(accepted, results)
                return
            flight = _InFlight(accepted, results, logged)
            with self._in_flight_lock:
                self._in_flight.append(flight)
        flight.logged.add_done_callback(lambda _: self._logged(flight))

    def _log_after_earlier(self, records: list[_Record]) -> Future[None]:
        """Write ``records`` to the log in a log writer thread, after every earlier group's."""
        logged: Future[None] = Future()
        self._log_writes.put((records, logged))
        return logged

    def _write_log(self, waiting: list[tuple[list[_Record], Future[None]]]) -> None:
        """The log writer, with the groups waiting when a write begins: written together, in
        order, one synchronized write for all (all of them or none); once a write has failed,
        every later group is refused without a write (it would follow a hole in the log)."""
        error: BaseException | None = None
        if self._log_broken:
            error = StorageError(0, "an earlier batch was not logged")
        else:
            try:
                self.storage.append_all([r for records, _ in waiting for r in records])
            except BaseException as exc:
                error = exc
                self._log_broken = True
        for _, logged in waiting:
            if error is None:
                logged.set_result(None)
            else:
                logged.set_exception(error)

    def _logged(self, flight: _InFlight) -> None:
        """A group's log write has ended (in the log thread): acknowledge the group, or have the
        writer refuse it and every later group in flight (:meth:`_settle`)."""
        with self._in_flight_lock:
            if flight not in self._in_flight:
                return  # refused by a roll-back already
            if flight.logged.exception() is None:
                self._in_flight.remove(flight)
        if flight.logged.exception() is None:
            self._acknowledge(flight.updates, flight.results)
        else:
            # before the writes waiting: the writer settles before any call
            self._mailbox.put(_Call(lambda _: None), first=True)

    def _acknowledge(self, updates: list[_Update], results: list[LearnResult]) -> None:
        for update, result in zip(updates, results, strict=True):
            try:
                if update.on_learned is not None:
                    update.on_learned(self, result)
            except BaseException as exc:
                update.done.set_exception(exc)
            else:
                update.done.set_result(result)

    def _settle(self, in_flight: int) -> None:
        """Wait (in the writer) until at most ``in_flight`` groups' log writes are running; if
        one of those that ended failed, refuse it and every later group in flight, all learned
        but not logged: back to what the files hold (:meth:`_roll_back`), 503s."""
        with self._in_flight_lock:
            waiting = list(self._in_flight)
        for flight in waiting[: max(len(waiting) - in_flight, 0)]:
            if flight.logged.exception() is not None:
                break
        else:
            return
        with self._in_flight_lock:
            refused = list(self._in_flight)
            self._in_flight.clear()
        for flight in refused:
            flight.logged.exception()  # each fails after the one that failed: the log is idle
        self._log_broken = False  # every write in flight has ended: the log writer is idle
        failure = next(e for f in refused if (e := f.logged.exception()) is not None)
        with self.state_lock:
            try:
                self._roll_back(failure)
            except ApiError as error:
                for flight in refused:
                    for update in flight.updates:
                        update.done.set_exception(error)

    def _unavailable(self, detail: str) -> ApiError:
        return ApiError(503, "storage_unavailable", detail, {"model": self.name})

    def _roll_back(self, failure: BaseException) -> NoReturn:
        """The log refused a group learned meanwhile (and took its records back): reload the
        model from its files, which hold every earlier batch, and refuse the group with a 503.

        Should even that fail, memory is a group ahead of the log: every later write of this
        model is refused (503) until a restart recovers it from its files, since recovery would
        drop any record logged after the missing ones, acknowledged or not.
        """
        detail = getattr(failure, "strerror", None) or str(failure)
        try:
            recovered = self.storage.reload()
        except Exception as exc:
            self.failed = (
                f"writes refused: after the log failed ({detail}) the model could not be "
                f"reloaded from its files ({exc}); restart the service to recover it"
            )
            log.exception("model %s: %s", self.name, self.failed)
            raise self._unavailable(self.failed) from None
        log.error("model %s: the log failed (%s); reloaded from its files", self.name, detail)
        self.model = recovered.model
        self.rows_since_snapshot = recovered.replayed_rows
        raise self._unavailable(f"the batch was not applied: {detail}")

    def snapshot(self) -> Path:
        """Write the model file and start a new log (call from :meth:`write`: the model stays
        still until the file is written, so its state is not copied)."""
        return self._begin_snapshot(self.model, copy=False)[0]()

    async def snapshot_in_background(self) -> tuple[Path, int]:
        """:meth:`snapshot` holding up this model's writes only while its state is copied: the
        writer starts it after every earlier batch is logged, and the file is written in
        another thread while learning goes on (a 2**20-coordinate AdaGrad model is ~34 MB,
        ~0.25 s to serialize and fsync). The file and the step it holds."""
        finish, step, rows, when = await self.write(self._begin_snapshot)
        try:
            return await asyncio.to_thread(finish), step
        except ApiError:
            # Those rows are still only in the logs: count them again (in the writer, beside
            # the batches learned since), so the next attempt is due as if this one never began.
            def recount(_: OnlineLogisticRegression) -> None:
                self.rows_since_snapshot += rows
                self.last_snapshot = min(self.last_snapshot, when)

            with contextlib.suppress(ApiError):  # a model whose log failed: nothing to save
                await self.write(recount)
            raise

    def _begin_snapshot(
        self, model: OnlineLogisticRegression, *, copy: bool = True
    ) -> tuple[Callable[[], Path], int, int, float]:
        """In the writer: copy the state and start a new log. The function that writes the
        file, the step it holds, and the rows and time since the previous snapshot it ends."""
        if self.failed is not None:  # memory holds a batch the log refused: never save it
            raise self._unavailable(self.failed)
        try:
            finish = self.storage.begin_snapshot(model, copy=copy)
        except OSError as exc:
            raise self._snapshot_failed(exc) from None
        rows, when = self.rows_since_snapshot, self.last_snapshot
        self.rows_since_snapshot = 0
        self.last_snapshot = time.monotonic()

        def written() -> Path:
            try:
                return finish()
            except OSError as exc:  # the logs since the previous snapshot are all kept
                raise self._snapshot_failed(exc) from None

        return written, model.step, rows, when

    def _snapshot_failed(self, exc: OSError) -> ApiError:
        return ApiError(
            503, "storage_unavailable", f"the snapshot was not written: {exc}", {"model": self.name}
        )


def binary_size(count: int) -> str:
    """A byte count as people read it: ``512 bytes``, ``3.0 MiB``, ``16.0 GiB``."""
    if count < 1024:
        return f"{count:,} bytes"
    exponent = min((count.bit_length() - 1) // 10, 4)  # 1024**exponent <= count
    return f"{count / 1024**exponent:,.1f} {('KiB', 'MiB', 'GiB', 'TiB')[exponent - 1]}"


class ModelRegistry:
    """Named models, the memory budget across them, and their storage under ``data_dir``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: dict[str, ManagedModel] = {}
        self.directory = Path(settings.data_dir) / "models"
        self.directory.mkdir(parents=True, exist_ok=True)

    def _storage(self, name: str) -> ModelStorage:
        return ModelStorage(
            self.directory / name, self.settings.fsync, self.settings.fsync_interval_ms
        )

    def load_all(self) -> dict[str, list[str]]:
        """Recover every model in the data directory (at start-up): what was dropped, by model."""
        report = {}
        for path in sorted(self.directory.iterdir()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            storage = self._storage(path.name)
            recovered = storage.recover()
            managed = ManagedModel(path.name, recovered.model, storage)
            # Replayed rows are not in a snapshot yet: they count toward the next one.
            managed.rows_since_snapshot = recovered.replayed_rows
            self.models[path.name] = managed
            report[path.name] = recovered.dropped
            log.info(
                "model %s: snapshot at step %d + %d logged rows replayed%s",
                path.name, recovered.snapshot_step, recovered.replayed_rows,
                f"; dropped: {recovered.dropped}" if recovered.dropped else "",
            )  # fmt: skip
        return report

    def close(self) -> None:
        for managed in self.models.values():
            managed.storage.close()

    @property
    def state_bytes(self) -> int:
        return sum(m.model.state_bytes for m in self.models.values())

    def get(self, name: str) -> ManagedModel:
        managed = self.models.get(name)
        if managed is None:
            raise ApiError(404, "model_not_found", f"no model named {name!r}", {"model": name})
        return managed

    def check_budget(self, optimizer: Any, dim: int, dtype: str) -> None:
        needed = OnlineLogisticRegression.state_bytes_for(optimizer, dim, dtype)
        held = self.state_bytes
        if held + needed > self.settings.memory_budget_bytes:
            budget = self.settings.memory_budget_bytes
            raise ApiError(
                422,
                "over_memory_budget",
                f"the model needs {binary_size(needed)} of state; {binary_size(held)} of the "
                f"{binary_size(budget)} budget (ADASERVE_MEMORY_BUDGET_BYTES) are in use, "
                f"{binary_size(max(budget - held, 0))} free",
                {"field": "dim"},
            )

    def create(self, name: str, config: Mapping[str, Any]) -> ManagedModel:
        if not NAME_PATTERN.fullmatch(name) or name.startswith("."):
            raise ApiError(
                422, "invalid_input", "name must match [A-Za-z0-9_.-]{1,64} and not start with '.'",
                {"field": "name"},
            )  # fmt: skip
        if name in self.models:
            raise ApiError(409, "model_exists", f"a model named {name!r} exists", {"model": name})
        if len(self.models) >= self.settings.max_models:
            raise ApiError(422, "too_many_models", f"at most {self.settings.max_models} models", {})
        dim = config.get("dim")
        if config.get("hash_bits") is not None:
            bits = config["hash_bits"]
            if not isinstance(bits, int) or not 1 <= bits <= 40:
                raise ApiError(
                    422, "invalid_input", "hash_bits must be in [1, 40]", {"field": "hash_bits"}
                )
            dim = 2**bits
        if isinstance(dim, int) and dim >= 1:
            # An unknown optimizer is reported precisely by the constructor below.
            with contextlib.suppress(ConfigError):
                optimizer = config.get("optimizer", "adagrad")
                self.check_budget(optimizer, dim, config.get("dtype", "float64"))
        try:
            model = OnlineLogisticRegression(**config)
        except ConfigError as error:
            raise ApiError.from_adaserve(error) from None
        storage = self._storage(name)
        try:
            storage.create(model)
        except OSError as exc:
            raise ApiError(
                503, "storage_unavailable", f"the model was not created: {exc}", {"model": name}
            ) from None
        managed = ManagedModel(name, model, storage)
        self.models[name] = managed
        return managed

    def delete(self, name: str) -> None:
        managed = self.get(name)
        managed.storage.delete()
        del self.models[name]
