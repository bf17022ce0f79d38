"""Watched coordinates (``/v1/models/{name}/watches``, :mod:`service.engine.watches`): sampled
at the first group boundary at or after each multiple of ``every`` rows, exactly the values a
lookup gives, bounded, durable (a restart and kill -9), rolled back and cleared with the model."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from optim import OnlineLogisticRegression
from service.app import create_app
from service.engine.watches import SAMPLES_FILE, Sample, Watches, read_samples
from service.settings import Settings

DIM = 64
COLD = {"ADASERVE_WARM_KERNELS": "false"}  # kernels compile on first use


def settings_for(path: Path, **overrides: object) -> Settings:
    return Settings(data_dir=path, warm_kernels=False, **overrides)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(tmp_path, max_watches=3))) as c:
        yield c


def create(client: TestClient | httpx.Client, name: str = "m") -> None:
    body = {"name": name, "dim": DIM, "optimizer": {"name": "adagrad", "lr": 0.5}}
    response = client.post("/v1/models", json=body)
    assert response.status_code == 201, response.text


def batch(rows: int, seed: int) -> dict:
    """``rows`` rows, each holding coordinate 3 and two random others."""
    rng = np.random.default_rng(seed)
    others = [rng.integers(4, 34, rows), rng.integers(34, DIM, rows)]
    indices = np.column_stack([np.full(rows, 3), *others]).ravel()
    return {
        "indptr": list(range(0, 3 * rows + 1, 3)),
        "indices": indices.tolist(),
        "values": rng.normal(size=3 * rows).tolist(),
        "labels": (rng.random(rows) < 0.5).astype(int).tolist(),
    }


def learn(client: TestClient | httpx.Client, rows: int, seed: int, name: str = "m") -> None:
    response = client.post(f"/v1/models/{name}/updates", json=batch(rows, seed))
    assert response.status_code == 200, response.text


def samples(client: TestClient | httpx.Client, name: str = "m") -> dict:
    response = client.get(f"/v1/models/{name}/watches/samples")
    assert response.status_code == 200, response.text
    return response.json()


def test_samples_at_group_boundaries_match_a_lookup(client: TestClient) -> None:
    create(client)
    added = client.post("/v1/models/m/watches", json={"index": 3, "every": 100})
    assert added.status_code == 201, added.text
    assert added.json()["watches"] == [{"index": 3, "feature": None}]
    assert client.post("/v1/models/m/watches", json={"feature": "IQ"}).status_code == 201
    iq = client.get("/v1/models/m/learning-rates", params={"features": "IQ"}).json()
    iq_index = iq["coordinates"][0]["index"]
    steps = []
    for k in range(12):  # 30-row batches: a sample at the first boundary at or after 100, 200, ...
        learn(client, 30, seed=k)
        steps.append(30 * (k + 1))
    expected = [0, 120, 210, 300]
    curves = samples(client)
    assert curves["every"] == 100 and curves["saved"] is True
    three, by_name = curves["curves"]
    assert three["index"] == 3 and three["steps"] == expected
    assert by_name == {**by_name, "index": iq_index, "feature": "IQ", "steps": expected}
    assert three["times_touched"] == expected  # coordinate 3 is in every row
    assert list(three["state"]) == ["sum"] and len(three["state"]["sum"]) == 4
    # a new watch is sampled at once (step 360): exactly what a lookup says
    assert client.post("/v1/models/m/watches", json={"index": 5}).status_code == 201
    five = samples(client)["curves"][2]
    lookup = client.get("/v1/models/m/learning-rates", params={"indices": "5"}).json()
    coordinate = lookup["coordinates"][0]
    assert five["steps"] == [360]
    assert five["weight"] == [coordinate["weight"]]
    assert five["effective_learning_rate"] == [coordinate["effective_learning_rate"]]
    assert {k: v[0] for k, v in five["state"].items()} == coordinate["state"]
    assert five["times_touched"] == [coordinate["times_touched"]]
    # AdaGrad: coordinate 3's rate only falls as it is touched
    rates = three["effective_learning_rate"]
    assert all(a > b for a, b in itertools.pairwise(rates)), rates


def test_watch_list_changes_and_refusals(client: TestClient) -> None:
    create(client)
    for index in (1, 2, 3):
        assert client.post("/v1/models/m/watches", json={"index": index}).status_code == 201
    again = client.post("/v1/models/m/watches", json={"index": 2})
    assert again.status_code == 201 and len(again.json()["watches"]) == 3  # no duplicate
    full = client.post("/v1/models/m/watches", json={"index": 4})
    assert full.status_code == 422 and full.json()["error"] == "too_many_watches"
    assert full.json()["where"] == {"model": "m", "field": "index"}
    assert client.delete("/v1/models/m/watches/2").status_code == 204
    gone = client.delete("/v1/models/m/watches/2")
    assert gone.status_code == 404 and gone.json()["error"] == "watch_not_found"
    both = client.post("/v1/models/m/watches", json={"index": 4, "feature": "IQ"})
    assert both.status_code == 422 and both.json()["where"]["field"] == "feature"
    outside = client.post("/v1/models/m/watches", json={"index": DIM + 1})
    assert outside.status_code == 422 and "outside" in outside.json()["detail"]
    unknown = client.post("/v1/models/m/watches", json={"index": 4, "colour": "red"})
    assert unknown.status_code == 422
    assert client.post("/v1/models/nope/watches", json={"index": 1}).status_code == 404
    every = client.put("/v1/models/m/watches", json={"every": 7})
    assert every.status_code == 200 and every.json()["every"] == 7
    listed = client.get("/v1/models/m/watches").json()
    assert [w["index"] for w in listed["watches"]] == [1, 3] and listed["every"] == 7
    # the intercept is coordinate dim
    assert client.post("/v1/models/m/watches", json={"index": DIM}).status_code == 201


def test_a_restart_keeps_the_list_and_the_samples(tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(tmp_path))) as client:
        create(client)
        client.post("/v1/models/m/watches", json={"feature": "IQ", "every": 50})
        client.post("/v1/models/m/watches", json={"index": 3})
        for k in range(5):
            learn(client, 40, seed=k)
        before = samples(client)
    with TestClient(create_app(settings_for(tmp_path))) as client:
        assert samples(client) == before
        assert len(before["curves"][1]["steps"]) == 5  # 0, 80, 120, 160, 200: one per boundary


def test_the_ring_is_bounded_and_so_is_its_log(tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(tmp_path, watch_samples=4))) as client:
        create(client)
        client.post("/v1/models/m/watches", json={"index": 3, "every": 1})
        for k in range(20):
            learn(client, 2, seed=k)
        curve = samples(client)["curves"][0]
        assert curve["steps"] == [34, 36, 38, 40]
        logged, _ = read_samples((tmp_path / "models" / "m" / SAMPLES_FILE).read_bytes())
        assert len(logged) <= 8 and [s.step for s in logged][-4:] == [34, 36, 38, 40]
    with TestClient(create_app(settings_for(tmp_path, watch_samples=4))) as client:
        assert samples(client)["curves"][0]["steps"] == [34, 36, 38, 40]


def test_loading_drops_a_torn_tail_and_samples_the_model_does_not_hold(tmp_path: Path) -> None:
    model = OnlineLogisticRegression("adagrad", dim=DIM)
    watches = Watches("m", tmp_path, limit=4, capacity=10, every=1)
    watches.add(model, 3, None)
    for step in (5, 10, 15):
        model.step = step  # only the step matters to which samples are kept
        watches.sample(model)
    with open(tmp_path / SAMPLES_FILE, "ab") as log:
        log.write(Sample(20, {3: (1.0, 1.0, 1, (1.0,))}).encode()[:-3])  # torn by a crash
    again = Watches("m", tmp_path, limit=4, capacity=10, every=99)
    again.load(model_step=10)  # the model recovered to step 10: 15 was never logged
    assert [s.step for s in again.samples] == [0, 5, 10] and again.every == 1
    logged, valid = read_samples((tmp_path / SAMPLES_FILE).read_bytes())
    assert [s.step for s in logged] == [0, 5, 10]
    assert valid == (tmp_path / SAMPLES_FILE).stat().st_size
    again.forget_after(5)  # a rollback
    assert [s.step for s in again.samples] == [0, 5]
    (tmp_path / "watches.json").write_text("{not json")
    broken = Watches("m", tmp_path, limit=4, capacity=10, every=1)
    broken.load(model_step=10)  # logged as an error: the model serves without watches
    assert broken.watches == []


def test_an_import_starts_the_samples_again(client: TestClient) -> None:
    create(client)
    client.post("/v1/models/m/watches", json={"index": 3, "every": 10})
    for k in range(3):
        learn(client, 20, seed=k)
    exported = client.get("/v1/models/m/export").content
    learn(client, 20, seed=9)
    assert samples(client)["curves"][0]["steps"] == [0, 20, 40, 60, 80]
    imported = client.post(
        "/v1/models/m/import",
        content=exported,
        headers={"Content-Type": "application/x-adaserve-model"},
    )
    assert imported.status_code == 200, imported.text
    assert samples(client)["curves"][0]["steps"] == [60]
