"""The experiment registry raises domain errors; service/errors.py alone maps them to the same
status codes and bodies the web layer answered before (issue 14's leftover)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service import experiments
from service.app import create_app
from service.settings import Settings

OPTIMIZERS = [{"optimizer": "sgd"}, {"optimizer": "adagrad"}]


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    with TestClient(create_app(Settings(data_dir=tmp_path, warm_kernels=False))) as client:
        yield client


def post(client: TestClient, **body: object) -> tuple[int, dict]:
    response = client.post("/v1/experiments", json={"dim": 8, **body})
    return response.status_code, response.json()


def test_each_refusal_keeps_its_status_and_body(client: TestClient) -> None:
    assert post(client, name="e", models=OPTIMIZERS)[0] == 201
    assert post(client, name="e", models=OPTIMIZERS) == (409, {
        "error": "experiment_exists", "detail": "an experiment named 'e' exists",
        "where": {"experiment": "e"},
    })  # fmt: skip
    assert post(client, name="bad/name", models=OPTIMIZERS) == (422, {
        "error": "invalid_input", "detail": "name must match [A-Za-z0-9_.-]{1,64}",
        "where": {"field": "name"},
    })  # fmt: skip
    assert post(client, name="f", models=[]) == (422, {
        "error": "invalid_input", "detail": "an experiment has 1 to 32 models",
        "where": {"field": "models"},
    })  # fmt: skip
    same = [{"name": "x", "optimizer": "sgd"}, {"name": "x", "optimizer": "sgd"}]
    assert post(client, name="f", models=same) == (422, {
        "error": "invalid_input", "detail": "member names must differ",
        "where": {"field": "models"},
    })  # fmt: skip
    status, body = post(client, name="f", models=[{"optimizer": "sgd"}, {"optimizer": "nope"}])
    assert status == 422 and body["error"] == "invalid_input"
    assert body["where"] == {"field": "optimizer.name", "member": 1}
    assert "f.0" not in {m["name"] for m in client.get("/v1/models").json()["models"]}
    missing = client.get("/v1/experiments/none")
    assert (missing.status_code, missing.json()) == (404, {
        "error": "experiment_not_found", "detail": "no experiment named 'none'",
        "where": {"experiment": "none"},
    })  # fmt: skip


def test_the_experiment_registry_holds_no_http() -> None:
    source = Path(experiments.__file__).read_text()
    assert "ApiError" not in source and "service.errors" not in source
