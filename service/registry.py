"""The models the service holds, their locks, and their durable storage.

Each model has a FIFO ``asyncio.Lock`` so updates are applied one batch at a time in arrival
order, and a ``threading.Lock`` held by the worker thread while it learns or reads, so a
prediction never sees half a batch. Learning runs off the event loop (the compiled kernels
release the GIL), so a long batch for one model does not stall other models or health checks.
Every batch is written to the model's log (:mod:`service.storage`) before it is applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from optim import Batch, ConfigError, LearnResult, OnlineLogisticRegression
from service.errors import ApiError
from service.settings import Settings
from service.storage import ModelStorage, StorageError

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
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
    # Held by the thread that learns or reads the arrays.
    state_lock: threading.Lock = field(default_factory=threading.Lock)

    async def read(self, fn: Callable[[OnlineLogisticRegression], T]) -> T:
        """Run ``fn(model)`` in a worker thread, never concurrently with a batch being learned."""

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
        """
        self.model.check_batch(batch)  # a batch the model would refuse is never logged
        try:
            self.storage.append(batch, self.model.step)
        except StorageError as exc:
            raise ApiError(
                503, "storage_unavailable",
                f"the batch was not applied: {exc.strerror or exc}", {"model": self.name},
            ) from None  # fmt: skip
        result = self.model.learn_batch(batch)
        self.rows_since_snapshot += result.rows
        return result

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
