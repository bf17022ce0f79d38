"""One model instance, its writer and its durable storage.

Each model has one writer at a time: its writes (batches to learn, snapshots, imports, a delete)
go into its mailbox (:mod:`service.engine.mailbox`) in arrival order and a thread from the
writers' pool drains it (:meth:`ManagedModel._run`), so updates are applied one batch at a time
in that order without a hop back to the event loop between two of them. Learning runs off the
event loop (the compiled kernels release the GIL), so a long batch for one model does not stall
other models or health checks. A ``threading.Lock`` is held while the writer learns or a reader
reads (or by the event loop for a read of a few rows, when it is free), so a prediction never
sees half a batch.

Every batch is written to the model's log (:mod:`service.storage`) before it is acknowledged.
The batches waiting in the mailbox when the writer takes them are learned with one call of the
compiled loop, then those it learned (it refuses one that would make the state non-finite,
changing nothing) are logged together, one synchronized write for all (group commit). A large
group is logged in another thread while the next groups are learned
(:mod:`service.engine.log_pipeline`): a prediction may see a batch whose acknowledgement still
waits for its sync; if the log refuses a group, it and every group learned after it are refused
and the model is reloaded from its files (:meth:`ManagedModel._roll_back`).

A model with feedback (:mod:`optim.feedback`) has its pending rows changed by its writer only,
through the same path: rows predicted with ids are scored, kept and logged together
(:meth:`ManagedModel.remember`, answered once logged); labels for pending rows are batches
(:meth:`ManagedModel.label`) whose rows the writer takes from the table when it takes them, learned
and logged in their group with the change of the table; the rows due to expire are expired at the
start of each group (learned as non-clicks, or dropped, oldest first) by the wall clock.

An instance is one incarnation of a name: a request resolved to it learns into its memory and
its files only. Deleting it goes through its writer (after every write queued before, once the
groups in flight are logged) and marks it deleted; every later write to it is refused with
:class:`~service.engine.errors.ModelDeleted` and writes nothing, even if a new model of the same
name has been created since.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import anyio
import numpy as np

from optim import Batch, BatchError, LearnResult, NonFiniteUpdate, OnlineLogisticRegression
from service.engine import snapshots
from service.engine.errors import (
    FeedbackIdsRefused,
    FeedbackNotEnabled,
    ModelDeleted,
    OverMemoryBudget,
    PendingIdsConflict,
    StorageUnavailable,
    TooManyPending,
)
from service.engine.log_pipeline import LogPipeline, Record
from service.engine.mailbox import Call, Drained, Job, Labels, Remember, Update
from service.engine.tuning import Pools, Tuning
from service.engine.watches import Watches
from service.storage import ModelStorage, RecordBody, StorageError, record_body

T = TypeVar("T")
log = logging.getLogger("adaserve")


async def read_locked(
    lock: threading.Lock,
    model_of: Callable[[], OnlineLogisticRegression],
    fn: Callable[[OnlineLogisticRegression], T],
    inline: bool,
) -> T:
    """``fn(model_of())`` under ``lock``: see :meth:`ManagedModel.read` (a read replica reads
    its copy so too)."""
    if inline and lock.acquire(blocking=False):
        # Held only for this synchronous call: a learner thread waits at most that long.
        try:
            return fn(model_of())
        finally:
            lock.release()

    def locked() -> T:
        with lock:
            return fn(model_of())

    return await anyio.to_thread.run_sync(locked)


@dataclass(eq=False)
class ManagedModel:
    name: str
    model: OnlineLogisticRegression
    storage: ModelStorage
    tuning: Tuning
    pools: Pools
    # The coordinates whose curves are recorded, sampled after each group learned.
    watches: Watches
    created_at: float = field(default_factory=time.time)
    rows_since_snapshot: int = 0
    last_snapshot: float = field(default_factory=time.monotonic)
    # Held by the writer while it learns, by a thread that reads the arrays, or by the loop for
    # a small read.
    state_lock: threading.Lock = field(default_factory=threading.Lock)
    # Why writes are refused (503): a batch the log refused could not be rolled back.
    failed: str | None = None
    # Set by the writer when this instance is deleted: every later write is refused.
    deleted: bool = False
    # Held while a snapshot file is written outside the writer, and while the files are
    # deleted: no file of this instance lands in a directory deleted (or re-created) meanwhile.
    files_lock: threading.Lock = field(default_factory=threading.Lock)
    # Writes not taken by the writer yet, in arrival order (the writer drains it).
    _mailbox: Drained[Job] = field(init=False)
    _log: LogPipeline = field(init=False)

    def __post_init__(self) -> None:
        self._mailbox = Drained(self.pools.run_writer, self._run_taken)
        self._log = LogPipeline(
            self.storage,
            self.pools.run_log_writer,
            self._acknowledge,
            # before the writes waiting: the writer settles before any call
            lambda: self._mailbox.put(Call(lambda _: None), first=True),
        )

    @property
    def incarnation(self) -> str | None:
        """The identity its storage gives this instance's files, if it gives one."""
        return getattr(self.storage, "incarnation", None)

    async def read(self, fn: Callable[[OnlineLogisticRegression], T], *, inline: bool = False) -> T:
        """Run ``fn(model)`` in a worker thread, never concurrently with a batch being learned.

        ``inline=True`` is for a computation of a few microseconds (scoring a few rows, see
        ``Settings.inline_read_size``): it runs right here on the event loop when the state
        lock is free, because the hop to a worker thread and back costs 100-200 µs of CPU, far
        more than the work. When a batch is being learned (the lock is held), it waits for it
        in a worker thread like any read: the event loop never blocks on the lock.
        """
        return await read_locked(self.state_lock, lambda: self.model, fn, inline)

    def for_predictions(self) -> ManagedModel:
        """What answers a prediction: this model (one on a cluster may pick a read replica)."""
        return self

    async def write(self, fn: Callable[[OnlineLogisticRegression], T]) -> T:
        """``fn(model)`` in the writer, after every earlier write of this model (under the state
        lock, like :meth:`read`); :class:`ModelDeleted` once the instance is deleted."""
        return await self._post(Call(fn))  # type: ignore[no-any-return]

    async def learn(
        self,
        batch: Batch,
        on_learned: Callable[[ManagedModel, LearnResult], None] | None = None,
        record: RecordBody | None = None,
    ) -> LearnResult:
        """Log and learn ``batch`` after earlier writes; ``on_learned`` runs under the lock.
        ``record``: its :func:`~service.storage.record_body` if made beforehand (in a worker
        thread: otherwise the model's log writer makes it)."""
        update = Update(batch, on_learned, record)
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
            self._mailbox.put(Update(batch, on_learned, record, done))

        parser.submit(parse_and_post)
        return await asyncio.wrap_future(done)

    async def remember(
        self, batch: Batch, ids: list[str], reserve: Callable[[int], object]
    ) -> np.ndarray:
        """Score ``batch`` and keep its rows pending under ``ids`` (a model with feedback), in
        the writer after earlier writes: its margins once the rows are logged.
        :class:`PendingIdsConflict` for an id pending already, :class:`TooManyPending` when
        ``reserve`` (called with their bytes) refuses them: nothing is remembered then."""
        return await self._post(Remember(batch, ids, reserve))  # type: ignore[no-any-return]

    async def label(
        self,
        labels: Labels,
        on_learned: Callable[[ManagedModel, LearnResult], None] | None = None,
    ) -> LearnResult:
        """Learn the pending rows ``labels`` names, in its order, as a batch of :meth:`learn`
        (same group, log and acknowledgement): :class:`FeedbackIdsRefused` naming any id not
        pending, a :class:`~optim.BatchError` for bad labels; nothing is learned then."""
        return await self._post(Update(None, on_learned, labels=labels))  # type: ignore[no-any-return]

    def sweep(self) -> None:
        """Have the writer expire the pending rows due (not waited for)."""
        self._mailbox.put(Update(None, None))

    async def delete(self, forget: Callable[[], None]) -> None:
        """Delete this instance's files in its writer, after every write queued before (and
        the groups in flight logged), mark it deleted and ``forget()`` it (in the writer);
        :class:`ModelDeleted` if it already was, :class:`StorageUnavailable` if the files
        could not be removed (the model stays then)."""

        def delete_files(_: OnlineLogisticRegression) -> None:
            with self.files_lock:
                try:
                    self.storage.delete()
                except OSError as exc:
                    raise StorageUnavailable(
                        self.name, f"the model's files were not deleted: {exc}"
                    ) from None
                self.deleted = True
            forget()

        await self.write(delete_files)

    def _post(self, job: Job) -> asyncio.Future[Any]:
        self._mailbox.put(job)
        # A request cancelled while its write waits here withdraws it (as it would have left a
        # lock's queue); once the writer has taken it, it runs to the end.
        return asyncio.wrap_future(job.done)

    def _run_taken(self, jobs: list[Job]) -> None:
        """The writer, with the writes it took from the mailbox (:meth:`_run`)."""
        try:
            self._run(jobs)
        except BaseException as exc:  # a bug: answer the writes taken rather than hang them
            log.exception("model %s: the writer failed", self.name)
            for job in jobs:
                if not job.done.done():
                    job.done.set_exception(exc)

    def _run(self, jobs: list[Job]) -> None:
        """The writes in order: consecutive batches in groups, consecutive rows to remember
        together, anything else alone."""
        group: list[Update] = []
        group_nnz = 0
        remembered: list[Remember] = []
        for job in jobs:
            if not job.done.set_running_or_notify_cancel():
                continue  # withdrawn
            if isinstance(job, Remember):
                if group:
                    self._learn_group(group)
                    group, group_nnz = [], 0
                remembered.append(job)
                continue
            if remembered:
                self._remember(remembered)
                remembered = []
            if isinstance(job, Update):
                if group and group_nnz + job.nnz > self.tuning.group_max_nnz:
                    self._learn_group(group)
                    group, group_nnz = [], 0
                group.append(job)
                group_nnz += job.nnz
                continue
            if group:
                self._learn_group(group)
                group, group_nnz = [], 0
            try:
                self._settle(0)  # a snapshot, import or delete sees only logged batches
                if self.deleted:
                    raise ModelDeleted(self.name)
                with self.state_lock:
                    result = job.fn(self.model)
            except BaseException as exc:
                job.done.set_exception(exc)
            else:
                job.done.set_result(result)
        if group:
            self._learn_group(group)
        if remembered:
            self._remember(remembered)

    def _learn_group(self, group: list[Update]) -> None:
        """Learn and log batches that arrived in this order (see the module's docstring).

        A batch the model refuses (:meth:`OnlineLogisticRegression.check_batch`, or while it is
        learned: :class:`~optim.NonFiniteUpdate`, the model as if it never came) is answered
        with that error and never logged. The others are logged together, one synchronized
        write, and acknowledged only once that is done. A group under
        :attr:`Tuning.overlap_log_nnz` non-zeros is logged here once learned (a hand-over to
        another thread costs more). A larger one is logged in another thread while the writer
        goes on with the next groups: the log pipeline acknowledges it when its write ends. A
        write that fails leaves memory ahead of the log: the model is reloaded from its files.

        With feedback, the rows due to expire go first (a batch of non-clicks, or the record of
        their drop), and a batch of labels for pending rows takes its rows from the table when
        its turn comes (refused whole if one is not pending then); the table changes with the
        records logged, and the rows of a batch refused are pending again.
        """
        overlap = sum(update.nnz for update in group) >= self.tuning.overlap_log_nnz
        # The log takes records in order: a group logged here waits for every earlier write.
        self._settle(self.tuning.max_in_flight - 1 if overlap else 0)
        with self.state_lock:
            feedback = self.model.feedback
            now = feedback.now(time.time()) if feedback is not None else 0.0
            expiring, records = self._expire(now)
            accepted: list[Update] = []
            step = self.model.step
            for update in [*expiring, *group]:
                try:
                    if self.deleted:
                        raise ModelDeleted(self.name)
                    if self.failed is not None:
                        raise StorageUnavailable(self.name, self.failed)
                    if update.batch is None:
                        if update.labels is None:  # a sweep: the expiries above
                            update.done.set_result(None)
                            continue
                        update.batch = self._claim(update.labels)
                    self.model.check_batch(update.batch, pending_rows=step - self.model.step)
                except BaseException as exc:
                    self._release(update)
                    update.done.set_exception(exc)
                    continue
                accepted.append(update)
                step += update.batch.n_rows
            # each checked above, with the rows before it in the group
            seen_before = self.model.rows_seen
            outcomes = self.model.learn_batches([u.batch for u in accepted], check=False)
            learned: list[Update] = []
            results: list[LearnResult] = []
            seen = seen_before
            for update, outcome in zip(accepted, outcomes, strict=True):
                if isinstance(outcome, NonFiniteUpdate):
                    self._release(update)
                    update.done.set_exception(outcome)
                    continue
                body = update.record
                if update.labels is not None:  # the rows leave the table with this record
                    assert feedback is not None and update.batch is not None
                    labels = update.labels
                    entry = feedback.settle(labels.kind, labels.ids, update.batch, now)
                    body = record_body(update.batch, entry)
                learned.append(update)
                results.append(outcome)
                batch = update.batch
                if outcome.held_out is not None:  # logged as held out, whatever decided it
                    batch = dataclasses.replace(batch, holdout=outcome.held_out)
                records.append((batch, seen, body))
                seen += outcome.rows
            if not records:
                return
            self.rows_since_snapshot += sum(result.rows for result in results)
            self.watches.after_learning(self.model)
            if overlap and learned:
                logged = self._log.write_after_earlier(records)
            else:
                try:
                    self._log.write(records)
                except StorageError as exc:
                    try:
                        self._roll_back(exc)
                    except StorageUnavailable as error:
                        for update in learned:
                            update.done.set_exception(error)
                    return
                self._acknowledge(learned, results)
                return
        self._log.track(learned, results, logged)

    def _expire(self, now: float) -> tuple[list[Update], list[Record]]:
        """The pending rows due at ``now``, oldest first (call under the state lock): with
        ``negative``, a batch of non-clicks to learn first in the group; with ``drop``, the
        record of their removal (they are forgotten now: the group logs it first)."""
        feedback = self.model.feedback
        if feedback is None or self.deleted or self.failed is not None:
            return [], []
        due = feedback.due(now)
        if not due:
            return [], []
        if feedback.policy.on_expiry == "negative":
            expiring = Labels(due, None, kind="expire")
            return [Update(feedback.expiring(due), None, labels=expiring)], []
        entry = feedback.drop(due, now)
        nothing = Batch.from_arrays([0], [], [], [], dim=self.model.dim)
        return [], [(nothing, self.model.rows_seen, record_body(nothing, entry))]

    def _claim(self, labels: Labels) -> Batch:
        """The batch of the pending rows ``labels`` names, claimed (see :meth:`_release`)."""
        feedback = self.model.feedback
        if feedback is None:
            raise FeedbackNotEnabled(self.name)
        refused = feedback.refusals(labels.ids)
        if refused:
            raise FeedbackIdsRefused(self.name, refused)
        return feedback.claim(labels.ids, labels.labels, labels.weights)

    def _release(self, update: Update) -> None:
        """Pending rows claimed by an update not learned after all: pending again."""
        feedback = self.model.feedback
        if update.labels is not None and update.batch is not None and feedback is not None:
            feedback.release(update.labels.ids)

    def _remember(self, jobs: Sequence[Remember]) -> None:
        """Score and keep pending the rows predicted with ids, in order, then log them with one
        write and answer each with its margins (see :meth:`remember`); a refused one changes
        nothing. Logged after every earlier write, like a group learned here."""
        self._settle(0)
        with self.state_lock:
            feedback = self.model.feedback
            now = feedback.now(time.time()) if feedback is not None else 0.0
            records: list[Record] = []
            kept: list[tuple[Remember, np.ndarray]] = []
            for job in jobs:
                try:
                    if self.deleted:
                        raise ModelDeleted(self.name)
                    if self.failed is not None:
                        raise StorageUnavailable(self.name, self.failed)
                    if feedback is None:
                        raise FeedbackNotEnabled(self.name)
                    conflicts = feedback.conflicts(job.ids)
                    if conflicts:
                        raise PendingIdsConflict(self.name, conflicts)
                    try:
                        job.reserve(feedback.bytes_for(job.ids, job.batch))
                    except OverMemoryBudget as exc:
                        raise TooManyPending(
                            self.name,
                            f"{len(job.ids)} pending row(s) would exceed the memory budget: "
                            f"{exc.detail}; label or let expire the rows pending (or raise "
                            f"ADASERVE_MEMORY_BUDGET_BYTES); nothing remembered",
                        ) from None
                    margins = self.model.decision_function(job.batch)
                    if not np.isfinite(margins).all():
                        row = int(np.flatnonzero(~np.isfinite(margins))[0])
                        raise BatchError(
                            "the margin is not finite (values too large?)", row=row, field="values"
                        )
                    entry = feedback.remember(job.ids, job.batch, margins, now)
                except BaseException as exc:
                    job.done.set_exception(exc)
                    continue
                records.append((job.batch, self.model.rows_seen, record_body(job.batch, entry)))
                kept.append((job, margins))
            if not records:
                return
            # replayed after a crash like rows learned: they count toward the next snapshot
            self.rows_since_snapshot += sum(job.batch.n_rows for job, _ in kept)
            try:
                self._log.write(records)
            except StorageError as exc:
                try:
                    self._roll_back(exc)
                except StorageUnavailable as error:
                    for job, _ in kept:
                        job.done.set_exception(error)
                return
        for job, margins in kept:
            job.done.set_result(margins)

    def _acknowledge(self, updates: list[Update], results: list[LearnResult]) -> None:
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
        but not logged: back to what the files hold (:meth:`_roll_back`)."""
        refused = self._log.refused(in_flight)
        if refused is None:
            return
        flights, failure = refused
        with self.state_lock:
            try:
                self._roll_back(failure)
            except StorageUnavailable as error:
                for flight in flights:
                    for update in flight.updates:
                        update.done.set_exception(error)

    def _roll_back(self, failure: BaseException) -> NoReturn:
        """The log refused a group learned meanwhile (and took its records back): reload the
        model from its files, which hold every earlier batch, and refuse the group.

        Should even that fail, memory is a group ahead of the log: every later write of this
        model is refused until a restart recovers it from its files, since recovery would drop
        any record logged after the missing ones, acknowledged or not.
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
            raise StorageUnavailable(self.name, self.failed) from None
        log.error("model %s: the log failed (%s); reloaded from its files", self.name, detail)
        self.model = recovered.model
        self.rows_since_snapshot = recovered.replayed_rows
        self.watches.forget_after(self.model.step)
        raise StorageUnavailable(self.name, f"the batch was not applied: {detail}")

    def snapshot(self) -> Path:
        """Write the model file and start a new log (call from :meth:`write`: the model stays
        still until the file is written, so its state is not copied)."""
        return snapshots.begin(self, self.model, copy=False)[0]()

    async def replace(self, model: OnlineLogisticRegression) -> Path:
        """:func:`service.engine.snapshots.replace` in the writer, after every earlier write:
        the imported state's snapshot is durable before it serves; the watched coordinates'
        samples start again from it."""

        def replace(_: OnlineLogisticRegression) -> Path:
            path = snapshots.replace(self, model)
            self.watches.clear(model)
            return path

        return await self.write(replace)

    async def snapshot_in_background(self) -> tuple[Path, int]:
        """:func:`service.engine.snapshots.in_background`: the file and the step it holds."""
        return await snapshots.in_background(self)
