"""``normalized`` and ``invariant`` through REST, the client's keys and ``adaserve train``."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from test_cli import assert_same_model, reference, tiny_libsvm
from test_service import CSR, assert_error, create
from test_service import settings as test_service_settings

from service.cli import main

settings = test_service_settings  # the service tests' limits


def test_rest_creates_normalized_invariant_model_and_shows_the_scale(client: TestClient) -> None:
    info = create(client, "n", normalized=True, invariant=True)
    assert info["config"]["normalized"] is True and info["config"]["invariant"] is True
    assert client.post("/v1/models/n/updates", json=CSR).status_code == 200
    rates = client.get("/v1/models/n/learning-rates?indices=5").json()
    state = rates["coordinates"][0]["state"]
    assert set(state) == {"sum", "scale"} and state["scale"] == 2.0  # |2.0| then |-1.0|
    assert create(client, "plain")["config"]["normalized"] is False


def test_rest_refuses_invariant_adam(client: TestClient) -> None:
    body = {"name": "a", "dim": 8, "optimizer": "adam", "invariant": True}
    assert_error(client.post("/v1/models", json=body), 422, None, field="invariant")
    body = {"name": "a", "dim": 8, "optimizer": "adam", "normalized": "maybe"}
    assert client.post("/v1/models", json=body).status_code == 422


def test_train_normalized_invariant_equals_in_process_run(tmp_path: Path) -> None:
    data = tiny_libsvm(tmp_path / "tiny.libsvm")
    out = tmp_path / "n.npz"
    argv = [
        "train",
        str(data),
        "--format",
        "libsvm",
        "--dim",
        "16",
        "--optimizer",
        "adagrad",
        "--lr",
        "0.5",
    ]
    assert main([*argv, "--normalized", "--invariant", "--quiet", "-o", str(out)]) == 0
    expected = reference(
        [data], "libsvm", optimizer={"name": "adagrad", "lr": 0.5}, dim=16, normalized=True,
        invariant=True,
    )  # fmt: skip
    got = assert_same_model(out, expected)
    assert got.norm_sums.tobytes() == expected.norm_sums.tobytes() and got.norm_sums[0] == 300
