"""The models the service holds, their locks, and their snapshots in the data directory.

Each model has a FIFO ``asyncio.Lock`` so updates are applied one batch at a time in arrival
order, and a ``threading.Lock`` held by the worker thread while it learns or reads, so a
prediction never sees half a batch. Learning runs off the event loop (the compiled kernels
release the GIL), so a long batch for one model does not stall other models or health checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from optim import ConfigError, OnlineLogisticRegression
from service.errors import ApiError
from service.settings import Settings

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
T = TypeVar("T")


@dataclass(eq=False)
class ManagedModel:
    name: str
    model: OnlineLogisticRegression
    created_at: float = field(default_factory=time.time)
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


def write_atomically(path: Path, data: bytes) -> None:
    """Temporary file, fsync, rename, fsync of the directory: all of ``data`` or the old file."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class ModelRegistry:
    """Named models, the memory budget across them, and their snapshots under ``data_dir``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: dict[str, ManagedModel] = {}
        self.directory = Path(settings.data_dir) / "models"
        self.directory.mkdir(parents=True, exist_ok=True)

    def snapshot_path(self, name: str) -> Path:
        return self.directory / f"{name}.npz"

    def load_all(self) -> list[str]:
        """Load every snapshot in the data directory (at start-up)."""
        loaded = []
        for path in sorted(self.directory.glob("*.npz")):
            model = OnlineLogisticRegression.load(path)
            self.models[path.stem] = ManagedModel(path.stem, model)
            loaded.append(path.stem)
        return loaded

    @property
    def state_bytes(self) -> int:
        return sum(m.model.state_bytes for m in self.models.values())

    def get(self, name: str) -> ManagedModel:
        managed = self.models.get(name)
        if managed is None:
            raise ApiError(404, "model_not_found", f"no model named {name!r}", {"model": name})
        return managed

    def check_budget(
        self, optimizer: Any, dim: int, dtype: str, replacing: str | None = None
    ) -> None:
        needed = OnlineLogisticRegression.state_bytes_for(optimizer, dim, dtype)
        held = self.state_bytes - (self.models[replacing].model.state_bytes if replacing else 0)
        if held + needed > self.settings.memory_budget_bytes:
            raise ApiError(
                422,
                "over_memory_budget",
                f"the model needs {needed:,} bytes of state; {held:,} of the "
                f"{self.settings.memory_budget_bytes:,}-byte budget are in use",
                {"field": "dim"},
            )

    def create(self, name: str, config: Mapping[str, Any]) -> ManagedModel:
        if not NAME_PATTERN.fullmatch(name):
            raise ApiError(
                422, "invalid_input", "name must match [A-Za-z0-9_.-]{1,64}", {"field": "name"}
            )
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
                self.check_budget(
                    config.get("optimizer", "adagrad"), dim, config.get("dtype", "float64")
                )
        try:
            model = OnlineLogisticRegression(**config)
        except ConfigError as error:
            raise ApiError.from_adaserve(error) from None
        managed = ManagedModel(name, model)
        write_atomically(self.snapshot_path(name), model.to_bytes())
        self.models[name] = managed
        return managed

    def delete(self, name: str) -> None:
        self.get(name)
        del self.models[name]
        self.snapshot_path(name).unlink(missing_ok=True)

    def snapshot(self, managed: ManagedModel) -> Path:
        """Write the model's file atomically (call with its state lock held)."""
        path = self.snapshot_path(managed.name)
        write_atomically(path, managed.model.to_bytes())
        return path
