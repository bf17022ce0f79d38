"""Experiments: several optimizers learn one stream, parsed once, in the same order."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient

from optim import OnlineLogisticRegression
from service.app import create_app
from service.settings import Settings

MEMBERS = [
    {"optimizer": {"name": "adagrad", "lr": 0.3}},
    {"optimizer": "adam", "lazy": "frozen"},
    {"optimizer": {"name": "ftrl", "alpha": 0.2}, "name": "ftrl-member"},
]


def data(seed: int = 0, rows: int = 600, dim: int = 32):
    X = sp.random(rows, dim, density=0.2, format="csr", random_state=seed)
    y = np.random.default_rng(seed).integers(0, 2, rows)
    return X, y


def test_create_update_stream_and_leaderboard(client: TestClient) -> None:
    created = client.post("/v1/experiments", json={"name": "cmp", "dim": 32, "models": MEMBERS})
    assert created.status_code == 201, created.text
    assert [m["model"] for m in created.json()["members"]] == ["cmp.0", "cmp.1", "ftrl-member"]
    X, y = data()
    body = {"indptr": X.indptr.tolist(), "indices": X.indices.tolist(),
            "values": X.data.tolist(), "labels": y.tolist()}  # fmt: skip
    update = client.post("/v1/experiments/cmp/updates", json=body).json()
    assert update["rows"] == 600 and set(update["members"]) == {"cmp.0", "cmp.1", "ftrl-member"}
    lines = []
    for i, label in enumerate(y):
        row = X[[i]]
        pairs = " ".join(f"{j}:{float(v)!r}" for j, v in zip(row.indices, row.data, strict=True))
        lines.append(f"{label} {pairs}\n")
    text = "".join(lines)
    streamed = client.post("/v1/experiments/cmp/stream", content=text.encode(),
                           headers={"Content-Type": "text/x-libsvm"})  # fmt: skip
    summary = orjson.loads(streamed.text.splitlines()[-1])
    assert summary["error"] is None and summary["rows"] == 600
    assert set(summary["members"]) == {"cmp.0", "cmp.1", "ftrl-member"}
    # Each member equals its own in-process model fed the same rows twice.
    for member, spec in zip(["cmp.0", "cmp.1", "ftrl-member"], MEMBERS, strict=True):
        optimizer = spec["optimizer"]
        local = OnlineLogisticRegression(optimizer, dim=32, lazy=spec.get("lazy", "exact"))
        local.learn(X, y)
        second = local.learn(X, y)
        served = client.get(f"/v1/models/{member}").json()
        assert served["step"] == 1200
        assert summary["members"][member]["log_loss"] == pytest.approx(second.log_loss)
    board = client.get("/v1/experiments/cmp").json()
    losses = {m["model"]: m["log_loss"] for m in board["members"]}
    assert board["leaderboard"] == sorted(losses, key=losses.get)
    for member in board["members"]:
        assert member["auc"] is not None and member["curve"] and member["calibration"] > 0
    assert [e["name"] for e in client.get("/v1/experiments").json()["experiments"]] == ["cmp"]


def test_experiment_errors_and_delete(client: TestClient, tmp_path) -> None:
    bad = {"name": "e", "dim": 8, "models": [{"optimizer": "adagrad"}, {"optimizer": "nope"}]}
    response = client.post("/v1/experiments", json=bad)
    assert response.status_code == 422 and response.json()["where"]["member"] == 1
    assert client.get("/v1/models").json()["models"] == []  # the first member was rolled back
    ok = {"name": "e", "dim": 8, "models": [{"optimizer": "sgd"}]}
    assert client.post("/v1/experiments", json=ok).status_code == 201
    assert client.post("/v1/experiments", json=ok).status_code == 409
    assert client.get("/v1/experiments/zzz").json()["error"] == "experiment_not_found"
    assert client.post("/v1/experiments/e/updates", json={"indptr": [0]}).status_code == 422
    assert client.delete("/v1/experiments/e").status_code == 204
    assert client.get("/v1/models").json()["models"] == []


def test_experiments_survive_a_restart(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, warm_kernels=False)
    with TestClient(create_app(settings)) as c:
        c.post("/v1/experiments", json={"name": "keep", "dim": 8, "models": MEMBERS[:2]})
    with TestClient(create_app(settings)) as c:
        assert [m["model"] for m in c.get("/v1/experiments/keep").json()["members"]] == [
            "keep.0", "keep.1",
        ]  # fmt: skip
