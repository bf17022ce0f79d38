"""The models the service holds, their locks, and their durable storage.

Each model has a FIFO ``asyncio.Lock`` so updates are applied one batch at a time in arrival
order, and a ``threading.Lock`` held by the worker thread while it learns or reads (or by the
event loop for a read of a few rows, when it is free), so a prediction never sees half a batch.
Learning runs off the event loop (the compiled kernels release the GIL), so a long batch for one
model does not stall other models or health checks.
Every batch is written to the model's log (:mod:`service.storage`) before it is acknowledged;
one the log refuses is not applied (a large one is logged while it is learned, see ``apply``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import anyio

from optim import Batch, ConfigError, LearnResult, OnlineLogisticRegression
from service.errors import ApiError
from service.settings import Settings
from service.storage import ModelStorage, StorageError

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Reads of at most this many rows + non-zeros may run on the event loop (``read(inline=True)``):
# scoring costs 3-150 ns per non-zero (exact Adam catch-up the most), so at most ~150 µs.
INLINE_READ_SIZE = 1_024
# Batches of at least this many non-zeros are logged while they are learned (ManagedModel.apply);
# below it, learning takes less than handing the log write to another thread.
OVERLAP_LOG_NNZ = 16_384
# Where those log writes run: one at a time per model (under its writers lock).
_LOG_WRITERS = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="adaserve-log")
T = TypeVar("T")
log = logging.getLogger("adaserve")


@dataclass(eq=False)
class ManagedModel:
    name: str
    model: OnlineLogisticRegression
    storage: ModelStorage
    created_at: float = field(default_factory=time.time)
    rows_since_snapshot: int = 0
    last_snapshot: float = field(default_factory=time.monotonic)
    # Serializes writers in arrival order (asyncio locks are FIFO).
    writers: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Held by the thread that learns or reads the arrays (or by the loop for a small read).
    state_lock: threading.Lock = field(default_factory=threading.Lock)
    # Why writes are refused (503): a batch the log refused could not be rolled back.
    failed: str | None = None

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
        """Like :meth:`read`, after every earlier writer of this model has finished."""
        async with self.writers:
            return await self.read(fn)

    def apply(self, batch: Batch) -> LearnResult:
        """Log, then learn, a validated batch (call from :meth:`write`).

        A batch that cannot be logged raises ApiError 503 and is not learned.

        A large batch (a stream's) is logged in another thread while it is learned: writing
        and fsyncing its record take about as long as learning it. This returns (the batch is
        acknowledged) only after both, so what was acknowledged is in the log as before. Should
        the log refuse the record, the model is rolled back to what its files hold, which is
        the state before this batch (:meth:`_roll_back`): it is not learned, as before.
        """
        if self.failed is not None:
            raise self._unavailable(self.failed)
        self.model.check_batch(batch)  # a batch the model would refuse is never logged
        if batch.nnz < OVERLAP_LOG_NNZ:
            try:
                self.storage.append(batch, self.model.step)
            except StorageError as exc:
                raise self._unavailable(
                    f"the batch was not applied: {exc.strerror or exc}"
                ) from None
            result = self.model.learn_batch(batch)
        else:
            logged = _LOG_WRITERS.submit(self.storage.append, batch, self.model.step)
            try:
                result = self.model.learn_batch(batch)
            finally:
                failure = logged.exception()  # waits: nothing is acknowledged before it is logged
            if failure is not None:
                self._roll_back(failure)
        self.rows_since_snapshot += result.rows
        return result

    def _unavailable(self, detail: str) -> ApiError:
        return ApiError(503, "storage_unavailable", detail, {"model": self.name})

    def _roll_back(self, failure: BaseException) -> NoReturn:
        """The log refused a batch learned meanwhile (and took its record back): reload the model
        from its files, which hold every earlier batch, and refuse the batch with a 503.

        Should even that fail, memory is a batch ahead of the log: every later write of this
        model is refused (503) until a restart recovers it from its files, since recovery would
        drop any record logged after the missing one, acknowledged or not.
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

    async def learn(
        self, batch: Batch, on_learned: Callable[[ManagedModel, LearnResult], None] | None = None
    ) -> LearnResult:
        """Log and learn ``batch`` after earlier writers; ``on_learned`` runs under the lock."""

        def work(_: OnlineLogisticRegression) -> LearnResult:
            result = self.apply(batch)
            if on_learned is not None:
                on_learned(self, result)
            return result

        return await self.write(work)

    def snapshot(self) -> Path:
        """Write the model file and start a new log (call from :meth:`write`)."""
        if self.failed is not None:  # memory holds a batch the log refused: never save it
            raise self._unavailable(self.failed)
        try:
            path = self.storage.snapshot(self.model)
        except OSError as exc:
            raise ApiError(
                503, "storage_unavailable", f"the snapshot was not written: {exc}",
                {"model": self.name},
            ) from None  # fmt: skip
        self.rows_since_snapshot = 0
        self.last_snapshot = time.monotonic()
        return path


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
            raise ApiError(
                422,
                "over_memory_budget",
                f"the model needs {needed:,} bytes of state; {held:,} of the "
                f"{self.settings.memory_budget_bytes:,}-byte budget are in use",
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
