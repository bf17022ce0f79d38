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

Read replicas (a model's ``read_replicas``, kept in ``replicas.json`` beside its files): each is
an actor (:class:`~service.cluster.replica.ModelReplica`) placed as a model is, away from the
nodes that hold the model's owner and its other replicas when one of them has room, and counted
in its node's budget. The ingress has each catch up with the model's files every
``replica_refresh_seconds``, and at once when the rows acknowledged since put it
``replica_max_rows_behind / 2`` behind; a prediction goes to the owner and the replicas in turn,
to a replica only while it misses at most ``replica_max_rows_behind`` of the rows acknowledged
(the staleness bound). A replica that dies is made again; the owner answers meanwhile.
Everything else (inspection, updates, streams, export, predictions with ids) goes to the owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping
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

from optim import Batch, LearnResult, OnlineLogisticRegression
from service.cluster.host import Failure, ModelHost, ModelView, hosted
from service.cluster.replica import ModelReplica
from service.engine.errors import (
    ModelDeleted,
    ModelNotFound,
    ModelRecovering,
    ModelUnavailable,
    OverMemoryBudget,
    StorageUnavailable,
)
from service.engine.mailbox import Labels
from service.registry import ModelRegistry, QuarantinedModel, readable_bytes, state_bytes_needed
from service.settings import Settings
from service.storage import RecordBody, remove_leftovers, write_atomically

log = logging.getLogger("adaserve")
HostActor = ray.remote(ModelHost)
ReplicaActor = ray.remote(ModelReplica)
# A model's read_replicas, beside its files (a restart makes them again).
REPLICAS_FILE = "replicas.json"
# Calls a host answers at once: requests in flight, the reads running beside its writer.
HOST_CONCURRENCY = 1_000
# A host that could not be started is tried again this often (another node may have room).
RECOVERY_RETRY_SECONDS = 1.0
# Views (step, metrics, state bytes for /metrics and placement) refreshed this often.
VIEW_REFRESH_SECONDS = 5.0
# How long /metrics waits for a host's view before it reports the last one.
VIEW_WAIT_SECONDS = 2.0
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
        self._turn = 0  # whose turn a prediction is: the owner's (0) or a replica's

    def for_predictions(self) -> RemoteModel | ReplicaReader:
        """The owner and the replicas within the staleness bound, in turn."""
        fresh = self.registry.fresh_replicas(self)
        if not fresh:
            return self
        self._turn = (self._turn + 1) % (len(fresh) + 1)
        return self if self._turn == 0 else ReplicaReader(fresh[self._turn - 1], self)

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
        self.registry.acknowledged(self)
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
        beside the bytes placed there for others (``reserve``, the ingress's, is for a model in
        this process)."""
        return await self._call("remember", batch, ids, self.registry.placed_elsewhere(self))

    async def label(
        self, labels: Labels, on_learned: Callable[[Any, LearnResult], None] | None = None
    ) -> LearnResult:
        result: LearnResult = await self._call("label", labels)
        self.model.step = max(self.model.step, result.step)
        self.registry.acknowledged(self)
        if on_learned is not None:
            on_learned(self, result)
        return result

    async def replace(self, model: OnlineLogisticRegression) -> Path:
        path = await self._call("replace", await asyncio.to_thread(model.to_bytes))
        self.model = ModelView.of(model)
        self.registry.replaced(self.name)
        return path

    async def snapshot_in_background(self) -> tuple[Path, int]:
        return await self._call("snapshot_in_background")

    async def refresh(self) -> None:
        self.model = await self._call("view")


@dataclass(eq=False)
class ReplicaSlot:
    """One of a model's read replicas as the ingress knows it: its actor and node (None while
    it is placed), its process, the model's step it holds (None while it is made or loaded
    anew: it answers nothing then) and the predictions it answered."""

    model: str
    actor: Any = None
    node: str | None = None
    pid: int | None = None
    step: int | None = None
    memory_bytes: int = 0
    predictions: int = 0
    reload: bool = False  # load the files anew at the next refresh (an import replaced them)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # refresh now
    task: asyncio.Task[None] | None = None

    def forget_actor(self) -> None:
        self.actor = self.node = self.pid = self.step = None
        self.wake.set()


class ReplicaReader:
    """A prediction's read sent to a replica; the owner answers it when the replica died."""

    def __init__(self, slot: ReplicaSlot, owner: RemoteModel) -> None:
        self.slot, self.owner = slot, owner

    async def read(
        self, fn: Callable[[OnlineLogisticRegression], Any], *, inline: bool = False
    ) -> Any:
        slot = self.slot
        try:
            outcome = await slot.actor.read.remote(fn, inline)
        except _LOST:
            if slot.actor is not None:
                log.error("model %s: its replica on node %s died", slot.model, slot.node)
                slot.forget_actor()  # made again by its keeper (RayRegistry._keep_replica)
            return await self.owner.read(fn, inline=inline)
        if isinstance(outcome, Failure):
            raise outcome.error
        slot.predictions += 1
        return outcome


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
        self.replicas: dict[str, list[ReplicaSlot]] = {}
        self._closing = False

    # ------------------------------------------------------------------ placement
    def _placed_bytes(self, node: str) -> int:
        held = sum(m.model.memory_bytes for m in self.models.values() if m.node == node)
        held += sum(s.memory_bytes for s in self._replica_slots() if s.node == node)
        return held + self._reserved_by_node.get(node, 0)

    def placed_elsewhere(self, remote: RemoteModel) -> int:
        """The bytes on ``remote``'s node of other models and replicas, and being placed."""
        return self._placed_bytes(remote.node) - remote.model.memory_bytes

    def _replica_slots(self) -> Iterator[ReplicaSlot]:
        return (slot for slots in list(self.replicas.values()) for slot in slots)

    def _choose_node(self, needed: int, name: str, avoid: Collection[str | None] = ()) -> str:
        nodes = list(self.nodes.values())
        others = [n for n in nodes if n.id not in avoid]
        budget = self.settings.memory_budget_bytes
        for candidates in (others, nodes):  # a node to avoid only when no other fits
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
    def _start_actor(self, actor_class: Any, name: str, node: str) -> Any:
        """A host (or a replica) of ``name`` on ``node``."""
        return actor_class.options(
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
                node = self._choose_node(estimate, name, avoid={self.recovering.get(name)})
            except OverMemoryBudget as error:
                log.error("model %s: not recovered yet: %s", name, error.detail)
                await asyncio.sleep(RECOVERY_RETRY_SECONDS)
                continue
            with self._claim(node, estimate):
                actor = self._start_actor(HostActor, name, node)
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
                self._stop_replicas(name)
                return
            view, dropped = outcome
            await self._serve(name, actor, node, view)
            self._start_replicas(name, await asyncio.to_thread(self._replicas_wanted, name))
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

    async def _new_host(self, name: str, needed: int, method: str, *args: Any) -> RemoteModel:
        """A host for the new model ``name`` (about ``needed`` bytes), placed by memory, that
        makes it with its ``method``; served once made."""
        node = self._choose_node(needed, name)
        with self._claim(node, needed):
            actor = self._start_actor(HostActor, name, node)
            try:
                outcome = await getattr(actor, method).remote(*args)
            except _NOT_STARTED:
                raise ModelUnavailable(name, "its host died while it was created") from None
        if isinstance(outcome, Failure):
            ray.kill(actor)
            raise outcome.error
        return await self._serve(name, actor, node, outcome)

    async def adopt(self, name: str, model: OnlineLogisticRegression) -> RemoteModel:  # type: ignore[override]
        """A new model holding ``model``'s state (an import into a new name): its host loads
        the file and writes the model's files (call it while :meth:`holding_new` the name)."""
        if name not in self._held:
            raise RuntimeError(f"adopt({name!r}) outside holding_new")
        await self._refresh_nodes()
        model_file = await asyncio.to_thread(model.to_bytes)
        return await self._new_host(name, model.memory_bytes, "adopt", model_file)

    async def create(  # type: ignore[override]
        self, name: str, config: Mapping[str, Any], read_replicas: int = 0
    ) -> RemoteModel:
        if name in self.recovering:
            raise ModelRecovering(name)
        self.check_new(name)
        needed = state_bytes_needed(config)
        await self._refresh_nodes()
        if read_replicas:  # the copies' bytes too, across the nodes (each is placed later)
            self.check_budget(
                needed * (1 + read_replicas), model=name, field="read_replicas",
                what=f"the model and its {read_replicas} read replicas",
            )  # fmt: skip
        self._held.add(name)
        try:
            remote = await self._new_host(name, needed, "create", dict(config))
        finally:
            self._held.discard(name)
        if read_replicas:
            try:
                await asyncio.to_thread(self._keep_replicas_wanted, name, read_replicas)
            except OSError as exc:
                await self.delete(name)
                raise StorageUnavailable(name, f"the model was not created: {exc}") from None
            self._start_replicas(name, read_replicas)
        return remote

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
        self._stop_replicas(name)

    async def keep_house(self) -> None:
        """Refresh the nodes and the models' views (their hosts keep their own files; a scrape
        of /metrics refreshes the views too)."""
        while True:
            await asyncio.sleep(VIEW_REFRESH_SECONDS)
            try:
                await self._refresh_nodes()
            except Exception:
                log.exception("the cluster's nodes could not be listed")
            await self.refresh_views()

    async def refresh_views(self) -> None:
        """Every model's view from its host, at once; a host that does not answer within
        ``VIEW_WAIT_SECONDS`` (busy with a large import, say) leaves its last view."""

        async def refresh(remote: RemoteModel) -> None:
            with contextlib.suppress(ModelRecovering, ModelNotFound, ModelDeleted, TimeoutError):
                await asyncio.wait_for(remote.refresh(), VIEW_WAIT_SECONDS)

        await asyncio.gather(*(refresh(remote) for remote in list(self.models.values())))

    async def shut_down(self) -> None:  # type: ignore[override]
        """Every host snapshots its model and closes; then they end."""
        self._closing = True
        for task in [*self._recoveries.values(), *self._watchers.values()]:
            task.cancel()
        for name in list(self.replicas):
            self._stop_replicas(name)
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
                    "replicas": sorted(s.model for s in self._replica_slots() if s.node == node.id),
                }
                for node in sorted(self.nodes.values(), key=lambda n: n.id)
            ],
            "models": dict(sorted(states.items())),
            "hosts": {
                name: {"node": m.node, "pid": m.pid} for name, m in sorted(self.models.items())
            },
            "replicas": {
                name: [self._replica_info(slot) for slot in slots]
                for name, slots in sorted(self.replicas.items())
            },
        }

    # ------------------------------------------------------------------ read replicas
    def _replicas_wanted(self, name: str) -> int:
        """The model's ``read_replicas`` (0 when it has none, or their file is unreadable: the
        model serves all the same, from its owner)."""
        path = self.directory / name / REPLICAS_FILE
        try:
            return int(json.loads(path.read_text())["read_replicas"])
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.error("model %s: no read replicas, %s is unreadable: %s", name, path, error)
            return 0

    def _keep_replicas_wanted(self, name: str, count: int) -> None:
        body = json.dumps({"read_replicas": count}).encode()
        write_atomically(self.directory / name / REPLICAS_FILE, body)

    def _start_replicas(self, name: str, count: int) -> None:
        """Keep ``count`` replicas of ``name`` (those it has stay: its owner was recovered)."""
        if not count or name in self.replicas or self._closing:
            return
        slots = self.replicas[name] = [ReplicaSlot(name) for _ in range(count)]
        for slot in slots:
            slot.task = asyncio.create_task(self._keep_replica(slot))

    def _stop_replicas(self, name: str) -> None:
        for slot in self.replicas.pop(name, []):
            if slot.task is not None:
                slot.task.cancel()
            if slot.actor is not None:
                ray.kill(slot.actor)

    def fresh_replicas(self, remote: RemoteModel) -> list[ReplicaSlot]:
        """``remote``'s replicas within the staleness bound: each misses at most
        ``replica_max_rows_behind`` of the rows acknowledged so far."""
        bound = self.settings.replica_max_rows_behind
        return [
            slot
            for slot in self.replicas.get(remote.name, ())
            if slot.step is not None and remote.model.step - slot.step <= bound
        ]

    def acknowledged(self, remote: RemoteModel) -> None:
        """Rows were acknowledged: a replica half the bound behind catches up now."""
        half = self.settings.replica_max_rows_behind // 2
        for slot in self.replicas.get(remote.name, ()):
            if slot.step is not None and remote.model.step - slot.step >= half:
                slot.wake.set()

    def replaced(self, name: str) -> None:
        """An import replaced the model's state and files: its replicas load them anew and
        answer nothing until then."""
        for slot in self.replicas.get(name, ()):
            slot.step, slot.reload = None, True
            slot.wake.set()

    async def _keep_replica(self, slot: ReplicaSlot) -> None:
        """Place ``slot``'s replica (again, when it died), then have it catch up every
        ``replica_refresh_seconds`` or when woken (:meth:`acknowledged`, :meth:`replaced`)."""
        while not self._closing:
            try:
                await self._refresh_replica(slot)
            except Exception:  # never leave the replica unkept: start it again
                log.exception("model %s: its replica on node %s failed", slot.model, slot.node)
                if slot.actor is not None:
                    ray.kill(slot.actor)
                slot.forget_actor()
                await asyncio.sleep(RECOVERY_RETRY_SECONDS)

    async def _refresh_replica(self, slot: ReplicaSlot) -> None:
        if slot.actor is None:
            try:
                await self._place_replica(slot)
            except (OverMemoryBudget, *_NOT_STARTED) as error:
                log.error("model %s: a read replica not placed yet: %s", slot.model, error)
                if slot.actor is not None:  # its node went away before it started
                    ray.kill(slot.actor)
                slot.forget_actor()
                await asyncio.sleep(RECOVERY_RETRY_SECONDS)
                return
        reload, slot.reload = slot.reload, False
        slot.wake.clear()
        try:
            outcome = await slot.actor.refresh.remote(reload)
        except _LOST:
            if slot.actor is not None:
                log.error("model %s: its replica on node %s died", slot.model, slot.node)
                slot.forget_actor()
            return
        if isinstance(outcome, Failure):
            log.error("model %s: a replica did not catch up: %s", slot.model, outcome.error)
        elif not slot.reload:  # else an import came meanwhile: load again first
            slot.step = outcome
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(slot.wake.wait(), self.settings.replica_refresh_seconds)

    async def _place_replica(self, slot: ReplicaSlot) -> None:
        await self._refresh_nodes()
        owner = self.models.get(slot.model)
        if owner is not None:
            slot.memory_bytes = owner.model.memory_bytes
        holding = {s.node for s in self.replicas.get(slot.model, ()) if s is not slot}
        node = self._choose_node(
            slot.memory_bytes, slot.model, avoid={owner.node if owner else None, *holding}
        )
        slot.node, slot.actor = node, self._start_actor(ReplicaActor, slot.model, node)
        slot.pid = await slot.actor.process.remote()
        log.info("model %s: a read replica on node %s", slot.model, node)

    def _replica_info(self, slot: ReplicaSlot) -> dict[str, Any]:
        owner = self.models.get(slot.model)
        behind = None
        if owner is not None and slot.step is not None:
            behind = max(owner.model.step - slot.step, 0)
        state = "starting" if slot.step is None else "ready"
        if behind is not None and behind > self.settings.replica_max_rows_behind:
            state = "behind"
        return {
            "node": slot.node, "pid": slot.pid, "state": state, "step": slot.step,
            "rows_behind": behind, "predictions": slot.predictions,
        }  # fmt: skip
