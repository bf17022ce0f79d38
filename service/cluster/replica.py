"""A read replica of one model (a Ray actor): a copy of its state that answers predictions.

A :class:`ModelReplica` never writes: it loads the model's newest snapshot from the shared data
directory and learns the records logged since (:class:`~service.storage.LogFollower`, the
records applied as recovery applies them, :func:`~service.storage.learn_record`), each time the
ingress asks it to catch up (:meth:`ModelReplica.refresh`; the ingress's
:class:`~service.cluster.registry.RayRegistry` decides when, and routes a prediction to it only
while it is close enough behind the owner). Reads run as the owner's do
(:func:`~service.engine.model.read_locked`): a record is learned under the state lock, so a
prediction never sees half of one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optim import OnlineLogisticRegression
from service.cluster.host import Failure, outcome_of, warm_kernels
from service.engine.model import read_locked
from service.settings import Settings
from service.storage import LogFollower, LogRecord, LostTrack, learn_record

log = logging.getLogger("adaserve")


class ModelReplica:
    """A read-only copy of model ``name`` (a Ray actor; the ingress creates it)."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.follower = LogFollower(Path(settings.data_dir) / "models" / name)
        self.model: OnlineLogisticRegression | None = None
        self.state_lock = threading.Lock()
        self._refreshing = asyncio.Lock()

    def process(self) -> int:
        """This replica's process id (``GET /v1/cluster`` shows it)."""
        return os.getpid()

    async def refresh(self, reload: bool = False) -> int | Failure:
        """Learn what the owner logged since the last refresh, or load the files anew (at
        first, when ``reload``, after an import, or when they no longer continue the copy):
        the step the copy holds."""

        async def refresh() -> int:
            async with self._refreshing:
                await asyncio.to_thread(self._refresh, reload)
                assert self.model is not None
                return self.model.step

        return await outcome_of(refresh)

    def _refresh(self, reload: bool) -> None:
        if self.model is not None and not reload:
            try:
                self.follower.follow(self._learn)
                return
            except LostTrack as why:
                log.warning("replica of %s: %s; loading its files anew", self.name, why)
        model = self.follower.load()  # the copy serving meanwhile is swapped only once ready
        self.follower.follow(lambda record: learn_record(model, record))
        if self.model is None:
            warm_kernels(model.spec.name)
        with self.state_lock:
            self.model = model

    def _learn(self, record: LogRecord) -> None:
        with self.state_lock:
            assert self.model is not None
            learn_record(self.model, record)

    async def read(self, fn: Callable[[OnlineLogisticRegression], Any], inline: bool) -> Any:
        """``fn(copy)``, as the owner's :meth:`~service.engine.model.ManagedModel.read`."""
        return await outcome_of(
            lambda: read_locked(self.state_lock, lambda: self.model, fn, inline)
        )
