"""The placement policy of models on a Ray cluster (spread by memory, a budget per node),
checked on the registry alone: no cluster is started."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")

from service.cluster.registry import Node, RayRegistry
from service.engine.errors import ModelRecovering, OverMemoryBudget
from service.settings import Settings

MB = 1 << 20


def registry(tmp_path, budget: int = 100 * MB) -> RayRegistry:
    made = RayRegistry(Settings(data_dir=tmp_path, memory_budget_bytes=budget))
    made.nodes = {n: Node(n, "127.0.0.1", 1.0, 1 << 30) for n in ("a", "b", "c")}
    return made


def place(made: RayRegistry, name: str, node: str, size: int) -> None:
    made.models[name] = SimpleNamespace(  # type: ignore[assignment]
        name=name, node=node, pid=None, model=SimpleNamespace(memory_bytes=size)
    )


def test_a_new_model_goes_to_the_node_with_the_fewest_bytes_placed(tmp_path) -> None:
    made = registry(tmp_path)
    place(made, "x", "a", 50 * MB)
    place(made, "y", "b", 10 * MB)
    place(made, "z", "c", 30 * MB)
    assert made._choose_node(MB, "new") == "b"
    # ties: fewer models, then the node id
    place(made, "w", "c", 0)
    place(made, "v", "b", 20 * MB)
    assert made._choose_node(MB, "new") == "b"  # b and c: 30 MB, 2 models


def test_a_node_without_room_is_passed_over_and_none_with_room_refuses(tmp_path) -> None:
    made = registry(tmp_path)
    place(made, "x", "a", 10 * MB)
    place(made, "y", "b", 60 * MB)
    place(made, "z", "c", 70 * MB)
    assert made._choose_node(80 * MB, "big") == "a"
    with pytest.raises(OverMemoryBudget) as refused:
        made._choose_node(95 * MB, "huge")
    assert "per node" in refused.value.detail and refused.value.field == "dim"


def test_reserved_bytes_count_until_released(tmp_path) -> None:
    made = registry(tmp_path)
    with made._claim("a", 90 * MB), made._claim("b", 90 * MB):
        assert made._choose_node(20 * MB, "m") == "c"
    assert made._choose_node(20 * MB, "m") == "a"


def test_a_recovered_model_avoids_the_node_it_was_lost_on_when_another_has_room(
    tmp_path,
) -> None:
    made = registry(tmp_path)
    place(made, "x", "b", 90 * MB)
    place(made, "y", "c", 90 * MB)
    assert made._choose_node(5 * MB, "lost", avoid={"a"}) == "b"
    assert made._choose_node(50 * MB, "lost", avoid={"a"}) == "a"  # no other has room


def test_a_model_being_recovered_answers_model_recovering(tmp_path) -> None:
    made = registry(tmp_path)
    made.recovering["m"] = "a"
    with pytest.raises(ModelRecovering):
        made.get("m")
    assert "m" in made.names()
    assert made.cluster()["models"] == {"m": "recovering"}


def test_replicas_count_in_their_nodes_budget_and_answer_within_the_staleness_bound(
    tmp_path,
) -> None:
    from service.cluster.registry import ReplicaSlot

    made = registry(tmp_path)
    place(made, "x", "a", 40 * MB)
    made.models["x"].model.step = 1_000  # type: ignore[attr-defined]
    copy = ReplicaSlot("x", node="b", memory_bytes=40 * MB)
    made.replicas["x"] = [copy]
    assert made._placed_bytes("b") == 40 * MB
    assert made._choose_node(MB, "new") == "c"
    assert made.cluster()["nodes"][1]["replicas"] == ["x"]
    bound = made.settings.replica_max_rows_behind
    for step, fresh in ((None, False), (1_000 - bound - 1, False), (1_000 - bound, True)):
        copy.step = step
        assert made.fresh_replicas(made.models["x"]) == ([copy] if fresh else [])  # type: ignore[arg-type]
    info = made.cluster()["replicas"]["x"][0]
    assert (info["state"], info["rows_behind"], info["node"]) == ("ready", bound, "b")
    copy.step = 1_000 - bound - 1
    assert made.cluster()["replicas"]["x"][0]["state"] == "behind"


def test_pending_rows_count_in_their_nodes_budget_beside_the_other_models(tmp_path) -> None:
    """A host remembers rows predicted with ids only while its model and them fit in the node's
    budget beside the bytes the ingress placed there for others: else 429 too_many_pending,
    nothing remembered. The ingress tells it those bytes (its views of the node's others)."""
    import asyncio

    from optim import Batch, OnlineLogisticRegression
    from service.cluster.host import Failure, ModelHost
    from service.engine.errors import TooManyPending

    config = {"optimizer": "adagrad", "dim": 64, "feedback": {"ttl_seconds": 60}}
    model_bytes = OnlineLogisticRegression(**config).memory_bytes  # type: ignore[arg-type]
    settings = Settings(data_dir=tmp_path, memory_budget_bytes=model_bytes + 30 * 1024)
    row = Batch.from_arrays([0, 2], [1, 5], [1.0, 0.5], dim=64)
    made = registry(tmp_path)
    place(made, "other", "a", 20 * 1024)
    place(made, "m", "a", model_bytes)
    place(made, "far", "b", 40 * 1024)
    assert made.placed_elsewhere(made.models["m"]) == 20 * 1024  # type: ignore[arg-type]

    async def scenario() -> None:
        host = ModelHost("m", settings)
        await host.registry.create("m", config)
        try:
            assert not isinstance(await host.remember(row, ["a"], 0), Failure)
            refused = await host.remember(row, ["b"], 30 * 1024)
            assert isinstance(refused, Failure) and isinstance(refused.error, TooManyPending)
            assert "memory budget" in refused.error.detail
            assert not isinstance(await host.remember(row, ["c"], 20 * 1024), Failure)
            assert list(host.managed.model.feedback.pending) == ["a", "c"]
        finally:
            await host.close()

    asyncio.run(scenario())
