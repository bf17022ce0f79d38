"""``POST /v1/models/{name}/import``: into a name no model has, the model is created from the
file's configuration; into an existing model, a configuration that differs is refused naming
each differing value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from optim import OnlineLogisticRegression
from service.app import create_app
from service.routers.persistence import config_differences
from service.settings import Settings

MODEL_FILE = {"Content-Type": "application/x-adaserve-model"}
CSR = {"indptr": [0, 2, 3], "indices": [1, 5, 5], "values": [1.0, 2.0, -1.0], "labels": [1, 0]}


def settings_for(path: Path, **overrides: object) -> Settings:
    return Settings(data_dir=path, warm_kernels=False, **overrides)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(tmp_path, max_models=2))) as c:
        yield c


def trained_file(**config: object) -> tuple[OnlineLogisticRegression, bytes]:
    model = OnlineLogisticRegression(
        config.pop("optimizer", {"name": "adam", "lr": 0.01}), dim=32, **config
    )
    model.learn([{"a": 1.0, "b": 2.0}, {"c": 1.0}], [1, 0])
    return model, model.to_bytes()


def test_an_import_into_a_new_name_creates_the_model_from_the_file(tmp_path: Path) -> None:
    model, data = trained_file(lazy="frozen", hash_seed=7)
    with TestClient(create_app(settings_for(tmp_path))) as client:
        imported = client.post("/v1/models/fresh/import", content=data, headers=MODEL_FILE)
        assert imported.status_code == 201, imported.text
        assert imported.json() == {"model": "fresh", "step": 2, "bytes": len(data), "created": True}
        info = client.get("/v1/models/fresh").json()
        # (the route's config also spells out the options left at their defaults)
        assert {key: info["config"][key] for key in model.config} == model.config
        assert info["step"] == 2
        assert client.get("/v1/models/fresh/export").content == data
        assert client.post("/v1/models/fresh/updates", json=CSR).status_code == 200
        again = client.post("/v1/models/fresh/import", content=data, headers=MODEL_FILE)
        assert again.status_code == 200 and again.json()["created"] is False
        assert client.get("/v1/models/fresh").json()["step"] == 2
        assert client.post("/v1/models/fresh/updates", json=CSR).status_code == 200
    with TestClient(create_app(settings_for(tmp_path))) as client:  # durable as created
        assert client.get("/v1/models/fresh").json()["step"] == 4


def test_a_refused_import_into_a_new_name_creates_nothing(client: TestClient) -> None:
    _, data = trained_file()
    bad = client.post("/v1/models/fresh/import", content=b"not a model", headers=MODEL_FILE)
    assert bad.status_code == 422 and bad.json()["where"]["field"] == "file"
    named = client.post("/v1/models/.hidden/import", content=data, headers=MODEL_FILE)
    assert named.status_code == 422 and named.json()["where"]["field"] == "name"
    assert client.get("/v1/models").json()["models"] == []
    assert client.post("/v1/models/one/import", content=data, headers=MODEL_FILE).status_code == 201
    assert client.post("/v1/models/two/import", content=data, headers=MODEL_FILE).status_code == 201
    third = client.post("/v1/models/three/import", content=data, headers=MODEL_FILE)
    assert third.status_code == 422 and third.json()["error"] == "too_many_models"
    assert [m["name"] for m in client.get("/v1/models").json()["models"]] == ["one", "two"]


def test_an_import_over_the_budget_into_a_new_name_creates_nothing(tmp_path: Path) -> None:
    _, data = trained_file()
    with TestClient(create_app(settings_for(tmp_path, memory_budget_bytes=1_000))) as client:
        refused = client.post("/v1/models/fresh/import", content=data, headers=MODEL_FILE)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "over_memory_budget"
        assert refused.json()["where"]["field"] == "file"
        assert client.get("/v1/models").json()["models"] == []
    assert not (tmp_path / "models" / "fresh").exists()


def test_a_mismatch_names_each_differing_value(client: TestClient) -> None:
    body = {"name": "m", "dim": 32, "optimizer": {"name": "adam", "lr": 0.05}}
    assert client.post("/v1/models", json=body).status_code == 201
    _, data = trained_file(optimizer={"name": "adam", "lr": 0.1}, fit_intercept=False)
    refused = client.post("/v1/models/m/import", content=data, headers=MODEL_FILE)
    assert refused.status_code == 422 and refused.json()["error"] == "config_mismatch"
    detail = refused.json()["detail"]
    assert "optimizer.lr: 0.1 in the file, 0.05 here" in detail
    assert "fit_intercept: false in the file, true here" in detail
    assert refused.json()["where"] == {
        "field": "optimizer", "settings": ["optimizer.lr", "fit_intercept"],
    }  # fmt: skip
    assert client.get("/v1/models/m").json()["step"] == 0


def test_config_differences_of_settings_on_one_side_only() -> None:
    assert config_differences({"a": {"x": 1}}, {"a": {"x": 1, "y": [2, 3]}, "b": "s"}) == [
        ("a.y", "a.y: absent in the file, [2, 3] here"),
        ("b", 'b: absent in the file, "s" here'),
    ]
    assert config_differences({"a": 1, "z": None}, {"a": 1}) == [
        ("z", "z: null in the file, absent here")
    ]
