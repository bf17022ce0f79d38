"""The models the service holds by name: their storage under the data directory, the memory
budget across them, and the ones that could not be recovered at start-up (quarantined).

One model instance and its writer are :class:`~service.engine.model.ManagedModel`; this module
creates, recovers and deletes them. Creating and deleting run off the event loop (a model of
2**22 coordinates takes a while to allocate and write).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from optim import ConfigError, OnlineLogisticRegression
from optim.portfolio import is_auto, memory_bytes_for, new_model
from service.engine.errors import (
    EngineError,
    ModelDeleted,
    ModelExists,
    ModelNotFound,
    ModelUnavailable,
    OverMemoryBudget,
    StorageUnavailable,
    TooManyModels,
)
from service.engine.model import ManagedModel
from service.engine.tuning import Pools, Tuning
from service.engine.watches import Watches
from service.settings import Settings
from service.storage import ModelStorage, Recovered, remove_leftovers

__all__ = ["NAME_PATTERN", "ManagedModel", "ModelRegistry", "QuarantinedModel"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
log = logging.getLogger("adaserve")


@dataclass(frozen=True)
class QuarantinedModel:
    """A model directory nothing could be recovered from at start-up: listed as unavailable
    with ``reason``, its files left as they are for an operator until it is deleted."""

    name: str
    reason: str


def readable_bytes(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps it at least 1 (``1.5 GiB``)."""
    size, unit = float(n), "bytes"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, larger
    return f"{n:,} bytes" if unit == "bytes" else f"{size:,.1f} {unit}"


def state_bytes_needed(config: Mapping[str, Any]) -> int:
    """The state bytes a model of ``config`` will hold (0 when its optimizer or ``dim`` are
    not valid: the constructor then reports them precisely); ``hash_bits`` checked here."""
    dim = config.get("dim")
    if config.get("hash_bits") is not None:
        bits = config["hash_bits"]
        if not isinstance(bits, int) or not 1 <= bits <= 40:
            raise ConfigError("hash_bits must be in [1, 40]", field="hash_bits")
        dim = 2**bits
    if not isinstance(dim, int) or dim < 1:
        return 0
    try:  # a portfolio (``"optimizer": "auto"``) counts every member
        return memory_bytes_for(
            config.get("optimizer", "auto"), dim,
            config.get("dtype", "float64"), config.get("recent_window", 10_000),
            config.get("normalized", False) is True, config.get("feedback") is not None,
            config.get("holdout_every", 0),
        )  # fmt: skip
    except ConfigError:
        return 0


class ModelRegistry:
    """Named models, the memory budget across them, and their storage under ``data_dir``.

    ``models`` holds the instances that serve, ``quarantined`` the names whose files could not
    be recovered at start-up (:class:`QuarantinedModel`). The engine's knobs and thread pools
    come from ``settings``; :meth:`close` shuts the pools down (the app's lifespan).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tuning = Tuning.from_settings(settings)
        self.pools = Pools.from_settings(settings)
        self.models: dict[str, ManagedModel] = {}
        self.quarantined: dict[str, QuarantinedModel] = {}
        # Names held by a create or by a quarantined model's delete under way in a worker thread.
        self._held: set[str] = set()
        # Bytes claimed by creations and imports in progress (see reservation).
        self.reserved_bytes = 0
        self._budget_lock = threading.Lock()
        self.directory = Path(settings.data_dir) / "models"
        self.directory.mkdir(parents=True, exist_ok=True)

    def _storage(self, name: str) -> ModelStorage:
        return ModelStorage(
            self.directory / name, self.settings.fsync, self.settings.fsync_interval_ms
        )

    def _managed(
        self, name: str, model: OnlineLogisticRegression, storage: ModelStorage
    ) -> ManagedModel:
        watches = Watches(
            name,
            self.directory / name,
            limit=self.settings.max_watches,
            capacity=self.settings.watch_samples,
            every=self.settings.watch_every_rows,
        )
        watches.load(model.step)
        return ManagedModel(name, model, storage, self.tuning, self.pools, watches)

    def load_all(self) -> dict[str, list[str]]:
        """Recover every model in the data directory (at start-up): what was dropped, by model.

        A model nothing can be recovered from, whatever the error, is quarantined (logged as an
        error, its files untouched); the others serve. Leftover temporary directories are
        removed first (each logged by :func:`~service.storage.remove_leftovers`)."""
        try:
            remove_leftovers(self.directory)
        except OSError:  # they stay; the models are recovered all the same
            log.exception("leftover temporary directories in %s", self.directory)
        report = {}
        for path in sorted(self.directory.iterdir()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            try:
                recovered = self.recover(path.name)
            except Exception as exc:
                reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
                log.error("model %s: quarantined, nothing recoverable: %s", path.name, reason)
                self.quarantined[path.name] = QuarantinedModel(path.name, reason)
                report[path.name] = [f"quarantined: {reason}"]
                continue
            report[path.name] = recovered.dropped
        return report

    def recover(self, name: str) -> Recovered:
        """Recover model ``name`` from its files (snapshot plus log) and serve it; what fails
        is raised, its files untouched (a cluster host recovers one model this way)."""
        storage = self._storage(name)
        try:
            recovered = storage.recover()
        except BaseException:
            with contextlib.suppress(OSError):
                storage.close()
            raise
        managed = self._managed(name, recovered.model, storage)
        # Replayed rows are not in a snapshot yet: they count toward the next one.
        managed.rows_since_snapshot = recovered.replayed_rows
        self.models[name] = managed
        log.info(
            "model %s: snapshot at step %d + %d logged rows replayed%s",
            name, recovered.snapshot_step, recovered.replayed_rows,
            f"; dropped: {recovered.dropped}" if recovered.dropped else "",
        )  # fmt: skip
        return recovered

    async def keep_house(self) -> None:
        """Interval fsyncs of the logs, and snapshots every N rows or T seconds."""
        settings = self.settings
        while True:
            await asyncio.sleep(min(settings.fsync_interval_ms / 1000, 1.0))
            for managed in list(self.models.values()):
                try:
                    if settings.fsync == "interval":
                        await anyio.to_thread.run_sync(managed.storage.sync_if_due)
                    due = managed.rows_since_snapshot >= settings.snapshot_every_rows or (
                        managed.rows_since_snapshot
                        and time.monotonic() - managed.last_snapshot
                        >= settings.snapshot_every_seconds
                    )
                    if due:
                        await managed.snapshot_in_background()
                    feedback = managed.model.feedback
                    expiry = feedback.next_expiry() if feedback is not None else None
                    if expiry is not None and expiry <= time.time():
                        managed.sweep()  # the writer expires the rows due (README: delayed labels)
                except ModelDeleted:
                    pass  # deleted since the loop began: nothing to keep
                except Exception:  # keep housekeeping alive; the failure is logged
                    log.exception("housekeeping of model %s failed", managed.name)

    async def refresh_views(self) -> None:
        """Before ``/metrics`` is scraped: the models here are read as they are (a cluster's
        registry asks each host for its model's view)."""

    async def shut_down(self) -> None:
        """Snapshot every model, after the writes queued before (then :meth:`close`)."""
        for managed in list(self.models.values()):
            try:
                await managed.write(lambda _, m=managed: m.snapshot())
            except EngineError as error:  # e.g. its log failed: its files stay as they are
                log.error("model %s: no snapshot at shutdown: %s", managed.name, error.detail)

    def close(self) -> None:
        """Close every log and end the engine's threads (after the last writes)."""
        self.pools.shutdown()
        for managed in self.models.values():
            managed.storage.close()

    def cluster(self) -> dict[str, Any]:
        """This process as the one node holding every model (``GET /v1/cluster``)."""
        states = dict.fromkeys(self.models, "ready")
        states |= dict.fromkeys(self.quarantined, "unavailable")
        return {
            "mode": "embedded",
            "nodes": [
                {
                    "id": "local", "address": self.settings.host, "cpus": os.cpu_count() or 1,
                    "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                    "placed_bytes": self.memory_bytes, "models": sorted(self.models),
                    "replicas": [],
                }
            ],
            "models": dict(sorted(states.items())),
            "hosts": {name: {"node": "local", "pid": os.getpid()} for name in sorted(self.models)},
        }  # fmt: skip

    @property
    def memory_bytes(self) -> int:
        """What the memory budget counts: every model's ``memory_bytes`` and the reservations."""
        # a copy first: a writer thread may add or remove a model meanwhile
        held = sum(m.model.memory_bytes for m in list(self.models.values()))
        return held + self.reserved_bytes

    def get(self, name: str) -> ManagedModel:
        """The model that serves under ``name``: :class:`ModelNotFound`, or
        :class:`ModelUnavailable` for a quarantined one."""
        managed = self.models.get(name)
        if managed is None:
            quarantined = self.quarantined.get(name)
            if quarantined is not None:
                raise ModelUnavailable(name, quarantined.reason)
            raise ModelNotFound(name)
        return managed

    def check_budget(
        self, needed: int, *, model: str = "", what: str = "the model", field: str = "dim"
    ) -> None:
        """:class:`OverMemoryBudget` if ``needed`` more bytes do not fit in the budget left."""
        held, budget = self.memory_bytes, self.settings.memory_budget_bytes
        if held + needed > budget:
            raise OverMemoryBudget(
                model,
                f"{what} needs {readable_bytes(needed)} ({needed:,} bytes); "
                f"{readable_bytes(held)} of the {readable_bytes(budget)} budget "
                f"(ADASERVE_MEMORY_BUDGET_BYTES) are in use, "
                f"{readable_bytes(max(budget - held, 0))} free",
                field=field,
            )
        return needed

    @contextlib.contextmanager
    def reservation(
        self, *, model: str = "", what: str = "the model", field: str = "dim"
    ) -> Iterator[Callable[[int], None]]:
        """A claim on the budget for a model being made (created or imported): the callable
        checks and reserves bytes before they are allocated; all of them are released at exit,
        when the model, if it was made, counts itself."""
        claimed = 0

        def claim(needed: int) -> None:
            nonlocal claimed
            with self._budget_lock:
                self.check_budget(needed, model=model, what=what, field=field)
                self.reserved_bytes += needed
                claimed += needed

        try:
            yield claim
        finally:
            with self._budget_lock:
                self.reserved_bytes -= claimed

    def names(self) -> set[str]:
        """Every model's name: those that serve and the quarantined ones."""
        return self.models.keys() | self.quarantined.keys()

    def check_new(self, name: str) -> None:
        """What refuses a new model's name: its pattern, a model holding it, the model limit."""
        if not NAME_PATTERN.fullmatch(name) or name.startswith("."):
            raise ConfigError(
                "name must match [A-Za-z0-9_.-]{1,64} and not start with '.'", field="name"
            )
        if name in self.models or name in self.quarantined or name in self._held:
            raise ModelExists(name)
        held = len(self.models) + len(self.quarantined) + len(self._held)
        if held >= self.settings.max_models:
            raise TooManyModels(name, self.settings.max_models)

    @contextlib.contextmanager
    def holding_new(self, name: str) -> Iterator[None]:
        """Hold ``name`` for a model being made (:meth:`check_new` first); released at exit."""
        self.check_new(name)
        self._held.add(name)
        try:
            yield
        finally:
            self._held.discard(name)

    async def adopt(self, name: str, model: OnlineLogisticRegression) -> ManagedModel:
        """A new model holding ``model`` (an imported file's state), written in a worker
        thread; call it while :meth:`holding_new` the name, with ``model``'s bytes reserved."""
        if name not in self._held:
            raise RuntimeError(f"adopt({name!r}) outside holding_new")
        return await anyio.to_thread.run_sync(self._build, name, lambda: model)

    async def create(
        self, name: str, config: Mapping[str, Any], read_replicas: int = 0
    ) -> ManagedModel:
        """A new model: checked here, then allocated and written in a worker thread (the event
        loop answers meanwhile), its name held and its bytes reserved from the start. Read
        replicas are a cluster's (:class:`~service.cluster.registry.RayRegistry`): one process
        holds one copy, so more than 0 is refused rather than ignored."""
        if read_replicas:
            raise ConfigError(
                "read_replicas needs a Ray cluster (adaserve serve --ray): the single process "
                "holds one copy of each model",
                field="read_replicas",
            )
        with self.holding_new(name):
            needed = state_bytes_needed(config)
            what = "the model"
            if is_auto(config.get("optimizer")):  # say why it is several models' size
                what = (
                    "the model (optimizer auto: its members side by side, each a model of this "
                    "dim, ~6x one model with the default members; give a smaller dim or "
                    "hash_bits, or a single optimizer such as adagrad)"
                )
            with self.reservation(model=name, what=what) as claim:
                if needed:
                    claim(needed)
                # Registered by the worker thread itself: a request cancelled meanwhile leaves a
                # model that is both on disk and served, never one only on disk.
                return await anyio.to_thread.run_sync(
                    self._build, name, lambda: new_model(**config)
                )  # ConfigError: 422 naming the field

    def _build(self, name: str, make: Callable[[], Any]) -> ManagedModel:
        model = make()
        storage = self._storage(name)
        try:
            storage.create(model)
        except OSError as exc:
            raise StorageUnavailable(name, f"the model was not created: {exc}") from None
        managed = self._managed(name, model, storage)
        self.models[name] = managed
        return managed

    async def delete(self, name: str) -> None:
        """Delete the model and its files: through its writer, after the writes queued before
        (see :meth:`ManagedModel.delete`); a quarantined one's files in a worker thread."""
        if name in self.quarantined:
            quarantined = self.quarantined.pop(name)
            self._held.add(name)
            try:
                await anyio.to_thread.run_sync(self._storage(name).delete)
            except OSError as exc:
                self.quarantined[name] = quarantined
                raise StorageUnavailable(
                    name, f"the model's files were not deleted: {exc}"
                ) from None
            finally:
                self._held.discard(name)
            return
        managed = self.get(name)

        def forget() -> None:
            if self.models.get(name) is managed:
                del self.models[name]

        await managed.delete(forget)
