"""The models of a Ray-served app: each owned by one actor (:class:`~service.cluster.host.
ModelHost`), reached through a proxy with the routers' model interface (:class:`RemoteModel`).

Placement (spread by memory): a new model goes to the live node with the fewest state bytes
placed on it that still has room for the model's within ``memory_budget_bytes``, which on a
cluster is the budget of each node (ties: fewer models, then the node id); none has room: 422
``over_memory_budget``. A model recovered after its owner died goes to another node when there
is one with room (the dead owner's node may be gone, or be what failed).

Recovery: the ingress keeps one call pending on each host (``until_closed``); when it fails the
host is dead (its process or its node): the model's routes answer 503 ``model_recovering`` while
a new host on another node recovers it from its files under the shared data directory (the
snapshot plus the log, as the single process does at start-up), so every acknowledged batch,
logged before it was acknowledged, is in it. Requests in flight to the dead host were not
acknowledged; they answer 503 too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    ActorUnschedulableError,
    RayActorError,
)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from optim import Batch, ConfigError, LearnResult, OnlineLogisticRegression
from service.cluster.host import Failure, ModelHost, ModelView, hosted
from service.engine.errors import (
    ModelDeleted,
    ModelNotFound,
    ModelRecovering,
    ModelUnavailable,
    OverMemoryBudget,
)
from service.engine.mailbox import Labels
from service.registry import ModelRegistry, QuarantinedModel, readable_bytes, state_bytes_needed
from service.settings import Settings
from service.storage import RecordBody, remove_leftovers

log = logging.getLogger("adaserve")
HostActor = ray.remote(ModelHost)
# Calls a host answers at once: requests in flight, the reads running beside its writer.
HOST_CONCURRENCY = 1_000
# A host that could not be started is tried again this often (another node may have room).
RECOVERY_RETRY_SECONDS = 1.0
# Views (step, metrics, state bytes for /metrics and placement) refreshed this often.
VIEW_REFRESH_SECONDS = 5.0
_LOST = (RayActorError, ActorDiedError, ActorUnavailableError)
# What starting a host may meet besides its death: its node went away before it was placed.
_NOT_STARTED = (*_LOST, ActorUnschedulableError)


@dataclass(frozen=True)
class Node:
    id: str
    address: str
    cpus: float
    memory_bytes: int


def live_nodes() -> list[Node]:
    """The cluster's live nodes (a call to Ray's control store)."""
    return [
        Node(
            n["NodeID"],
            n["NodeManagerAddress"],
            n["Resources"].get("CPU", 0.0),
            int(n["Resources"].get("memory", 0)),
        )
        for n in ray.nodes()
        if n["Alive"]
    ]


class RemoteModel:
    """A model owned by a host actor, with :class:`~service.engine.model.ManagedModel`'s
    interface as the routers use it: ``read``/``write`` run their function in the host (where
    this proxy unpickles to the host's own model), ``learn`` sends the batch. ``model`` is the
    :class:`ModelView` (configuration and last known step)."""

    def __init__(
        self, name: str, actor: Any, node: str, view: ModelView, registry: RayRegistry
    ) -> None:
        self.name, self.actor, self.node, self.model = name, actor, node, view
        self.registry = registry
        self.pid: int | None = None  # the host's process, once known
        self.created_at = time.time()

    def __reduce__(self) -> tuple[Callable[[str], Any], tuple[str]]:
        return hosted, (self.name,)

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            outcome = await getattr(self.actor, method).remote(*args)
        except _LOST:
            self.registry.lost(self)
            if self.name in self.registry.names():
                raise ModelRecovering(self.name) from None
            raise ModelDeleted(self.name) from None  # its host ended with it
        if isinstance(outcome, Failure):
            raise outcome.error
        return outcome

    async def read(self, fn: Callable[[OnlineLogisticRegression], Any], *, inline: bool = False):
        return await self._call("read", fn, inline)

    async def write(self, fn: Callable[[OnlineLogisticRegression], Any]) -> Any:
        return await self._call("write", fn)

    async def learn(
        self,
        batch: Batch,
        on_learned: Callable[[Any, LearnResult], None] | None = None,
        record: RecordBody | None = None,
    ) -> LearnResult:
        result: LearnResult = await self._call("learn", batch, record)
        self.model.step = max(self.model.step, result.step)
        if on_learned is not None:
            on_learned(self, result)
        return result

    async def learn_parsed(
        self,
        parse: Callable[[], tuple[Batch, RecordBody | None]],
        parser: Any,
        on_learned: Callable[[Any, LearnResult], None] | None = None,
    ) -> LearnResult:
        batch, record = await asyncio.get_running_loop().run_in_executor(parser, parse)
        return await self.learn(batch, on_learned, record)

    async def remember(
        self, batch: Batch, ids: list[str], reserve: Callable[[int], object]
    ) -> np.ndarray:
        """Predict with ids in the host, which counts the pending rows in its node's budget
        (``reserve``, the ingress's, is for a model in this process)."""
        return await self._call("remember", batch, ids)

    async def label(
        self, labels: Labels, on_learned: Callable[[Any, LearnResult], None] | None = None
    ) -> LearnResult:
        result: LearnResult = await self._call("label", labels)
        self.model.step = max(self.model.step, result.step)
        if on_learned is not None:
            on_learned(self, result)
        return result

    async def replace(self, model: OnlineLogisticRegression) -> Path:
        path = await self._call("replace", await asyncio.to_thread(model.to_bytes))
        self.model = ModelView.of(model)
        return path

    async def snapshot_in_background(self) -> tuple[Path, int]:
        return await self._call("snapshot_in_background")

    async def refresh(self) -> None:
        self.model = await self._call("view")


@dataclass
class Placement:
    """What the registry has placed on one node: its models and reserved bytes."""

    models: set[str] = field(default_factory=set)
    reserved: int = 0


class RayRegistry(ModelRegistry):
    """:class:`~service.registry.ModelRegistry`'s interface over host actors (see the module's
    docstring). ``quarantined`` also lists the models being recovered (``recovering``)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.models: dict[str, RemoteModel] = {}  # type: ignore[assignment]
        self.recovering: dict[str, str] = {}  # name -> the node it was lost on
        self.nodes: dict[str, Node] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._recoveries: dict[str, asyncio.Task[None]] = {}
        self._reserved_by_node: dict[str, int] = {}
        self._closing = False

    # ------------------------------------------------------------------ placement
    def _placed_bytes(self, node: str) -> int:
        held = sum(m.model.memory_bytes for m in self.models.values() if m.node == node)
        return held + self._reserved_by_node.get(node, 0)

    def _choose_node(self, needed: int, name: str, avoid: str | None = None) -> str:
        nodes = list(self.nodes.values())
        others = [n for n in nodes if n.id != avoid]
        budget = self.settings.memory_budget_bytes
        for candidates in (others, nodes):  # the node it was lost on only when no other fits
            fits = [n for n in candidates if self._placed_bytes(n.id) + needed <= budget]
            if fits:
                count = {n.id: 0 for n in fits}
                for model in self.models.values():
                    if model.node in count:
                        count[model.node] += 1
                return min(fits, key=lambda n: (self._placed_bytes(n.id), count[n.id], n.id)).id
        freest = min((self._placed_bytes(n.id) for n in nodes), default=0)
        raise OverMemoryBudget(
            name,
            f"the model needs {readable_bytes(needed)} ({needed:,} bytes); the node with the "
            f"most room has {readable_bytes(max(budget - freest, 0))} of its "
            f"{readable_bytes(budget)} budget (ADASERVE_MEMORY_BUDGET_BYTES, per node) free",
        )

    @contextlib.contextmanager
    def _claim(self, node: str, needed: int) -> Iterator[None]:
        self._reserved_by_node[node] = self._reserved_by_node.get(node, 0) + needed
        try:
            yield
        finally:
            self._reserved_by_node[node] -= needed

    async def _refresh_nodes(self) -> None:
        self.nodes = {n.id: n for n in await asyncio.to_thread(live_nodes)}

    @property
    def memory_bytes(self) -> int:
        return sum(self._placed_bytes(n) for n in self.nodes) + self.reserved_bytes

    def check_budget(
        self, needed: int, *, model: str = "", what: str = "the model", field: str = "dim"
    ) -> None:
        """Whether ``needed`` bytes fit in the budgets of all nodes together (each model is
        then placed on one node with room, :meth:`_choose_node`)."""
        budget = self.settings.memory_budget_bytes * max(len(self.nodes), 1)
        held = self.memory_bytes
        if held + needed > budget:
            raise OverMemoryBudget(
                model,
                f"{what} needs {readable_bytes(needed)} ({needed:,} bytes); "
                f"{readable_bytes(held)} of the {readable_bytes(budget)} budget of "
                f"{len(self.nodes)} node(s) (ADASERVE_MEMORY_BUDGET_BYTES each) are in use",
                field=field,
            )

    # ------------------------------------------------------------------ hosts
    def _host(self, name: str, node: str) -> Any:
        return HostActor.options(
            num_cpus=0,
            max_concurrency=HOST_CONCURRENCY,
            max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        ).remote(name, self.settings)

    async def _serve(self, name: str, actor: Any, node: str, view: ModelView) -> RemoteModel:
        remote = RemoteModel(name, actor, node, view, self)
        self.models[name] = remote
        self._watchers[name] = asyncio.create_task(self._watch(remote))
        with contextlib.suppress(*_LOST):  # else the watcher has seen it die
            remote.pid = await actor.process.remote()
        return remote

    async def _watch(self, remote: RemoteModel) -> None:
        with contextlib.suppress(*_LOST):
            await remote.actor.until_closed.remote()
            return  # closed on purpose (deleted, shut down)
        self.lost(remote)

    def lost(self, remote: RemoteModel) -> None:
        """``remote``'s host died: recover the model on another node (once per host)."""
        if self._closing or self.models.get(remote.name) is not remote:
            return
        log.error("model %s: its host on node %s died; recovering it", remote.name, remote.node)
        del self.models[remote.name]
        self.recovering[remote.name] = remote.node
        self._recoveries[remote.name] = asyncio.create_task(self._recover(remote.name))

    async def _recover(self, name: str, estimate: int = 0) -> None:
        """Start a host for ``name`` and recover it from its files, until one succeeds (a
        node with room may appear); the files cannot be recovered: quarantined."""
        while not self._closing:
            await self._refresh_nodes()
            try:
                node = self._choose_node(estimate, name, avoid=self.recovering.get(name))
            except OverMemoryBudget as error:
                log.error("model %s: not recovered yet: %s", name, error.detail)
                await asyncio.sleep(RECOVERY_RETRY_SECONDS)
                continue
            with self._claim(node, estimate):
                actor = self._host(name, node)
                try:
                    outcome = await actor.recover.remote()
                except _NOT_STARTED:
                    log.exception("model %s: its new host on node %s died", name, node)
                    await asyncio.sleep(RECOVERY_RETRY_SECONDS)
                    continue
            self.recovering.pop(name, None)
            self._recoveries.pop(name, None)
            if isinstance(outcome, Failure):
                ray.kill(actor)
                reason = getattr(outcome.error, "reason", None) or (
                    f"{type(outcome.error).__name__}: {outcome.error}"
                )
                log.error("model %s: quarantined, nothing recoverable: %s", name, reason)
                self.quarantined[name] = QuarantinedModel(name, reason)
                return
            view, dropped = outcome
            await self._serve(name, actor, node, view)
            log.info("model %s: recovered on node %s%s", name, node,
                     f"; dropped: {dropped}" if dropped else "")  # fmt: skip
            return

    # ------------------------------------------------------------------ the registry
    def load_all(self) -> dict[str, list[str]]:
        """Start recovering every model in the data directory, each on a node of its own
        (their routes answer 503 ``model_recovering`` until each is back)."""
        self.nodes = {n.id: n for n in live_nodes()}
        try:
            remove_leftovers(self.directory)
        except OSError:  # they stay; the models are recovered all the same
            log.exception("leftover temporary directories in %s", self.directory)
        for path in sorted(self.directory.iterdir()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            # Its newest snapshot's size: about the state it will hold, to spread them.
            sizes = [p.stat().st_size for p in path.glob("snapshot-*.npz")]
            self.recovering[path.name] = ""
            self._recoveries[path.name] = asyncio.get_running_loop().create_task(
                self._recover(path.name, max(sizes, default=0))
            )
        return {name: [] for name in self.recovering}

    async def wait_recovered(self) -> None:
        """Until every recovery under way has ended."""
        while self._recoveries:
            await asyncio.gather(*list(self._recoveries.values()), return_exceptions=True)

    def names(self) -> set[str]:
        return super().names() | self.recovering.keys()

    def get(self, name: str) -> RemoteModel:  # type: ignore[override]
        if name in self.recovering:
            raise ModelRecovering(name)
        return super().get(name)  # type: ignore[return-value]

    async def adopt(self, name: str, model: OnlineLogisticRegression) -> RemoteModel:  # type: ignore[override]
        """Not on a cluster yet: a model's state reaches its host by import into a model that
        exists (create it, then import), never built in the ingress."""
        raise ConfigError(
            f"no model named {name!r}: on a Ray cluster, create it first, then import into it",
            field="name",
        )

    async def create(self, name: str, config: Mapping[str, Any]) -> RemoteModel:  # type: ignore[override]
        if name in self.recovering:
            raise ModelRecovering(name)
        self.check_new(name)
        needed = state_bytes_needed(config)
        await self._refresh_nodes()
        node = self._choose_node(needed, name)
        self._held.add(name)
        try:
            with self._claim(node, needed):
                actor = self._host(name, node)
                try:
                    outcome = await actor.create.remote(dict(config))
                except _NOT_STARTED:
                    raise ModelUnavailable(name, "its host died while it was created") from None
            if isinstance(outcome, Failure):
                ray.kill(actor)
                raise outcome.error
            return await self._serve(name, actor, node, outcome)
        finally:
            self._held.discard(name)

    async def delete(self, name: str) -> None:
        if name in self.recovering:
            raise ModelRecovering(name)
        if name in self.quarantined:
            await super().delete(name)  # its files, from here (the volume is shared)
            return
        remote = self.get(name)
        await remote._call("delete")
        if self.models.get(name) is remote:
            del self.models[name]
        ray.kill(remote.actor)

    async def keep_house(self) -> None:
        """Refresh the nodes and the models' views (their hosts keep their own files)."""
        while True:
            await asyncio.sleep(VIEW_REFRESH_SECONDS)
            try:
                await self._refresh_nodes()
            except Exception:
                log.exception("the cluster's nodes could not be listed")
            for remote in list(self.models.values()):
                with contextlib.suppress(ModelRecovering, ModelNotFound, ModelDeleted):
                    await remote.refresh()

    async def shut_down(self) -> None:  # type: ignore[override]
        """Every host snapshots its model and closes; then they end."""
        self._closing = True
        for task in [*self._recoveries.values(), *self._watchers.values()]:
            task.cancel()
        remotes = list(self.models.values())
        closing = [r.actor.close.remote() for r in remotes]
        for remote, done in zip(remotes, closing, strict=True):
            try:
                await done
            except _LOST:
                log.error("model %s: its host died before its snapshot at shutdown", remote.name)
            ray.kill(remote.actor)

    def close(self) -> None:
        self.pools.shutdown()

    def cluster(self) -> dict[str, Any]:
        """The nodes, what each holds, and every model's state (``GET /v1/cluster``)."""
        states = {name: "ready" for name in self.models}
        states |= {name: "recovering" for name in self.recovering}
        states |= {name: "unavailable" for name in self.quarantined}
        return {
            "mode": "ray",
            "nodes": [
                {
                    "id": node.id,
                    "address": node.address,
                    "cpus": node.cpus,
                    "memory_bytes": node.memory_bytes,
                    "placed_bytes": self._placed_bytes(node.id),
                    "models": sorted(m.name for m in self.models.values() if m.node == node.id),
                    "replicas": [],
                }
                for node in sorted(self.nodes.values(), key=lambda n: n.id)
            ],
            "models": dict(sorted(states.items())),
            "hosts": {
                name: {"node": m.node, "pid": m.pid} for name, m in sorted(self.models.items())
            },
        }
