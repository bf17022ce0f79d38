"""The Ray actor that owns one model: the single-process engine, unchanged, in its own process.

A :class:`ModelHost` holds a :class:`~service.registry.ModelRegistry` with exactly one model, a
:class:`~service.engine.model.ManagedModel` (its mailbox, group commit, write-ahead log and
snapshots), created or recovered from its files under the shared data directory, and runs the
same housekeeping as the single process (interval fsyncs, snapshots every N rows or T seconds).

The ingress sends it the functions the routers give ``read`` and ``write`` (cloudpickled by
Ray). A function that mentions the model's proxy (:class:`~service.cluster.registry.RemoteModel`)
gets, once unpickled here, this process's own model (:func:`hosted`), so the routers' closures
run unchanged next to the state. Errors come back as :class:`Failure`: exceptions whose
constructor takes other arguments than their ``args`` (most of the engine's) do not unpickle.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optim import Batch, LearnResult, OnlineLogisticRegression
from optim.portfolio import load_model
from service.engine.errors import ModelNotFound
from service.engine.mailbox import Labels
from service.registry import ManagedModel, ModelRegistry
from service.settings import Settings
from service.storage import RecordBody
from service.warmup import learn_loop, one_call_predict, read_loops

log = logging.getLogger("adaserve")
# This process's host (one actor a process): what a model proxy unpickles to.
_HOST: ModelHost | None = None


def hosted(name: str) -> ManagedModel:
    """The model ``name`` of this process's host (a proxy unpickled in its actor)."""
    if _HOST is None:
        raise ModelNotFound(name)
    return _HOST.registry.get(name)


def _failure(kind: type[BaseException], args: tuple, state: dict[str, Any]) -> Failure:
    error = kind.__new__(kind, *args)
    error.args = args
    error.__dict__.update(state)
    return Failure(error)


@dataclass
class Failure:
    """An exception raised in the host, carried back whole (its class, args and attributes)."""

    error: BaseException

    def __reduce__(self) -> tuple:
        return _failure, (type(self.error), self.error.args, dict(vars(self.error)))


@dataclass(frozen=True)
class FeedbackView:
    """A model's delayed labels as of its view: the summary ``/metrics`` reports (the pending
    rows themselves live in the host only)."""

    summary_of_host: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return self.summary_of_host


@dataclass
class ModelView:
    """What the ingress knows of a model without asking its host: its configuration (to parse
    and check requests), its step after the last batch acknowledged to this ingress, and its
    metrics, delayed labels and size as of the last refresh (``/metrics``, placement)."""

    config: dict[str, Any]
    dim: int
    hasher: Any
    spec: Any
    lazy: bool
    step: int
    memory_bytes: int
    metrics: Any
    features: Any  # the feature options rows are read with (interactions, ignore, keep)
    feedback: FeedbackView | None

    @classmethod
    def of(cls, model: OnlineLogisticRegression) -> ModelView:
        feedback = None if model.feedback is None else FeedbackView(model.feedback.summary())
        return cls(
            model.config, model.dim, model.hasher, model.spec, model.lazy, model.step,
            model.memory_bytes, model.metrics, model.features, feedback,
        )  # fmt: skip


def warm_kernels(optimizer: str) -> None:
    """Load (or compile) a model's kernels before its first request needs them: a host's or a
    replica's process is new, numba's cache on disk makes it milliseconds once the ingress
    compiled."""
    learn_loop(optimizer)
    read_loops(optimizer)
    one_call_predict(optimizer)


async def outcome_of(work: Callable[[], Awaitable[Any]]) -> Any:
    """What ``work()`` gives, or its error as a :class:`Failure` (the model's lookup too)."""
    try:
        return await work()
    except Exception as error:
        return Failure(error)


class NodeRegistry(ModelRegistry):
    """A host's registry: its one model counts in its node's memory budget beside
    ``elsewhere_bytes``, what the ingress has placed on the node for other models and replicas
    (as of its views of them; told with each prediction with ids)."""

    elsewhere_bytes = 0

    @property
    def memory_bytes(self) -> int:
        return super().memory_bytes + self.elsewhere_bytes


class ModelHost:
    """One model's owner (a Ray actor; the ingress creates it with ``ray.remote``)."""

    def __init__(self, name: str, settings: Settings) -> None:
        global _HOST
        self.name = name
        self.settings = settings
        self.registry = NodeRegistry(settings)
        self._housekeeping: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        _HOST = self

    @property
    def managed(self) -> ManagedModel:
        return self.registry.get(self.name)

    def _start_housekeeping(self) -> None:
        self._housekeeping = asyncio.get_running_loop().create_task(self.registry.keep_house())

    def process(self) -> int:
        """This host's process id (``GET /v1/cluster`` shows it: an operator's handle)."""
        return os.getpid()

    async def _serving(self, managed: ManagedModel) -> ModelView:
        """A model made here: its kernels loaded and its housekeeping started."""
        await asyncio.to_thread(warm_kernels, managed.model.spec.name)
        self._start_housekeeping()
        return ModelView.of(managed.model)

    async def create(self, config: dict[str, Any]) -> ModelView | Failure:
        async def create() -> ModelView:
            return await self._serving(await self.registry.create(self.name, config))

        return await outcome_of(create)

    async def adopt(self, model_file: bytes) -> ModelView | Failure:
        """A new model holding the state of ``model_file`` (an import into a new name)."""

        async def adopt() -> ModelView:
            model = await asyncio.to_thread(load_model, io.BytesIO(model_file))
            with self.registry.holding_new(self.name):
                managed = await self.registry.adopt(self.name, model)
            return await self._serving(managed)

        return await outcome_of(adopt)

    async def recover(self) -> tuple[ModelView, list[str]] | Failure:
        """The model from its files (snapshot plus log), as the single process at start-up."""

        async def recover() -> tuple[ModelView, list[str]]:
            recovered = await asyncio.to_thread(self.registry.recover, self.name)
            return await self._serving(self.managed), recovered.dropped

        return await outcome_of(recover)

    async def view(self) -> ModelView | Failure:
        return await outcome_of(lambda: self.managed.read(ModelView.of))

    async def read(self, fn: Callable[[OnlineLogisticRegression], Any], inline: bool) -> Any:
        return await outcome_of(lambda: self.managed.read(fn, inline=inline))

    async def write(self, fn: Callable[[OnlineLogisticRegression], Any]) -> Any:
        return await outcome_of(lambda: self.managed.write(fn))

    async def learn(self, batch: Batch, record: RecordBody | None) -> LearnResult | Failure:
        return await outcome_of(lambda: self.managed.learn(batch, None, record))

    async def remember(self, batch: Batch, ids: list[str], elsewhere: int) -> np.ndarray | Failure:
        """Predict with ids (delayed labels): the pending rows count in this node's budget,
        where the ingress has placed ``elsewhere`` bytes for other models and replicas."""
        self.registry.elsewhere_bytes = elsewhere

        def reserve(needed: int) -> None:
            self.registry.check_budget(
                needed, model=self.name, what="the pending rows", field="ids"
            )

        return await outcome_of(lambda: self.managed.remember(batch, ids, reserve))

    async def label(self, labels: Labels) -> LearnResult | Failure:
        return await outcome_of(lambda: self.managed.label(labels))

    async def replace(self, model_file: bytes) -> Path | Failure:
        """The state of ``model_file`` (a model's bytes: arrays Ray hands over are read-only)."""

        async def replace() -> Path:
            model = await asyncio.to_thread(load_model, io.BytesIO(model_file))
            return await self.managed.replace(model)

        return await outcome_of(replace)

    async def snapshot_in_background(self) -> tuple[Path, int] | Failure:
        return await outcome_of(lambda: self.managed.snapshot_in_background())

    async def delete(self) -> Failure | None:
        async def delete() -> None:
            await self.registry.delete(self.name)
            await self._stop()

        return await outcome_of(delete)

    async def close(self) -> None:
        """Snapshot the model (after the writes queued before), close its log and threads."""
        await self.registry.shut_down()
        await self._stop()

    async def _stop(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        await asyncio.to_thread(self.registry.close)
        self._closed.set()

    async def until_closed(self) -> None:
        """Returns when the host closes; raises in the caller (an actor error) when it dies:
        the ingress keeps one call pending to learn of a death at once."""
        await self._closed.wait()
