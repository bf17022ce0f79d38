"""Holdout over REST: ``holdout_every`` on a model (counted across requests) and on a stream
(counted in the stream, overriding the model's), reported in model info, update answers and the
stream summary; held-out rows are durable: a kill -9 and a replay of the log give the same model
and the same holdout metrics."""

from __future__ import annotations

import dataclasses
import io
import os
import signal
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from servers import free_port, start_server

from optim import Batch, OnlineLogisticRegression
from optim.formats import parse_bytes
from optim.metrics import auc
from optim.portfolio import load_model, new_model
from service.app import create_app
from service.cli import main
from service.settings import Settings

DIM = 64
OPTIMIZER = {"name": "adam", "lr": 0.05}
# A single model and the portfolio (optimizer auto: its mixture scores held-out rows, no member
# learns them)
OPTIMIZERS = [pytest.param(OPTIMIZER, id="adam"), pytest.param("auto", id="auto")]


def libsvm(count: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(count):
        indices = np.sort(rng.choice(DIM, 4, replace=False))
        label = int(rng.random() < 1 / (1 + np.exp(-(indices[0] - DIM / 2) / 8)))
        lines.append(f"{label} " + " ".join(f"{j}:1" for j in indices))
    return ("\n".join(lines) + "\n").encode()


def held_every(batch: Batch, k: int, seen: int = 0) -> Batch:
    positions = np.arange(seen + 1, seen + batch.n_rows + 1)
    return dataclasses.replace(batch, holdout=positions % k == 0)


def stream(client: TestClient, text: bytes, **params: int) -> list[dict]:
    response = client.post(
        "/v1/models/m/stream",
        content=text,
        params=params,
        headers={"content-type": "text/x-libsvm"},
    )
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.text.splitlines()]


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path, warm_kernels=False, stream_batch_rows=37)
    with TestClient(create_app(settings)) as client:
        yield client


def create(client: TestClient, **config: object) -> None:
    body = {"name": "m", "dim": DIM, "optimizer": OPTIMIZER, **config}
    response = client.post("/v1/models", json=body)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_the_model_counts_its_rows_across_requests(client: TestClient, optimizer: object) -> None:
    create(client, holdout_every=4, optimizer=optimizer)
    local = new_model(optimizer, dim=DIM, holdout_every=4)
    for size, seed in ((3, 1), (10, 2), (1, 3), (30, 4)):  # rows 4, 8, 12, ... of the model
        batch = parse_bytes(libsvm(size, seed), "libsvm", dim=DIM)
        expected = local.learn_batch(batch)
        body = {
            "indptr": batch.indptr.tolist(), "indices": batch.indices.tolist(),
            "values": batch.values.tolist(), "labels": batch.labels.tolist(),
        }  # fmt: skip
        answer = client.post("/v1/models/m/updates", json=body).json()
        assert answer["step"] == expected.step and answer["holdout_rows"] == expected.holdout_rows
    info = client.get("/v1/models/m").json()
    assert info["config"]["holdout_every"] == 4
    assert info["step"] == local.step == 44 - 11
    assert info["holdout"]["rows"] == 11
    assert info["holdout"] == orjson.loads(orjson.dumps(local.holdout_metrics.to_dict()))
    assert info["metrics"]["rows"] == 33


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_stream_counts_its_own_rows_and_reports_them(
    client: TestClient, optimizer: object
) -> None:
    create(client, holdout_every=4, optimizer=optimizer)  # the stream's own period overrides it
    client.post(
        "/v1/models/m/updates",
        json={"indptr": [0, 1], "indices": [0], "values": [1.0], "labels": [1]},
    )
    text = libsvm(200, 5)
    lines = stream(client, text, holdout_every=5)
    summary = lines[-1]
    local = new_model(optimizer, dim=DIM, holdout_every=4)
    local.learn(parse_bytes(b"1 0:1\n", "libsvm", dim=DIM))
    batch = parse_bytes(text, "libsvm", dim=DIM)
    result = local.learn_batch(held_every(batch, 5))
    held = result.held_out
    assert summary["done"] and summary["error"] is None and summary["rows"] == 200
    assert summary["step"] == local.step == 1 + 160
    assert summary["holdout"]["rows"] == 40
    expected = float(result.losses[held].sum() / held.sum())
    assert summary["holdout"]["log_loss"] == pytest.approx(expected, rel=1e-12)
    assert summary["log_loss"] == pytest.approx(result.log_loss, rel=1e-12)
    expected_auc = auc(result.probabilities[held], batch.labels[held])
    assert summary["holdout"]["auc"] == pytest.approx(expected_auc, rel=1e-12)
    info = client.get("/v1/models/m").json()
    assert info["holdout"]["rows"] == 40 and info["step"] == 161

    # 0: nothing held out in this stream, whatever the model's own setting
    assert stream(client, libsvm(20, 6), holdout_every=0)[-1]["holdout"]["rows"] == 0
    assert client.get("/v1/models/m").json()["step"] == 181


@pytest.mark.parametrize("bad", ["-1", "x", str(2**31), "1.5"])
def test_a_bad_stream_holdout_every_is_refused(client: TestClient, bad: str) -> None:
    create(client)
    response = client.post(
        "/v1/models/m/stream",
        content=b"1 0:1\n",
        params={"holdout_every": bad},
        headers={"content-type": "text/x-libsvm"},
    )
    assert response.status_code == 422
    assert response.json()["where"]["field"] == "holdout_every"
    assert client.get("/v1/models/m").json()["step"] == 0


@pytest.mark.parametrize("bad", [-1, 2**31, 1.5, "x"])
def test_a_bad_model_holdout_every_is_refused(client: TestClient, bad: object) -> None:
    response = client.post(
        "/v1/models", json={"name": "m", "dim": DIM, "optimizer": "sgd", "holdout_every": bad}
    )
    assert response.status_code == 422, response.text
    assert response.json()["where"]["field"] == "holdout_every"


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_held_out_rows_survive_kill_minus_nine(tmp_path: Path, optimizer: object) -> None:
    """Model-decided and stream-decided holdout rows, a snapshot between (the second stream holds
    out every row: the step stays, the rows seen move on), then kill -9: the restarted server
    replays the log to the same state and the same holdout metrics."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(tmp_path, port, "--fsync", "always", quiet=True)
    try:
        local = new_model(optimizer, dim=DIM, holdout_every=3)
        with httpx.Client(base_url=url, timeout=120) as http:
            body = {"name": "m", "dim": DIM, "optimizer": optimizer, "holdout_every": 3}
            assert http.post("/v1/models", json=body).status_code == 201
            texts = [(libsvm(50, 7), {}), (libsvm(30, 8), {"holdout_every": 1})]
            texts += [(libsvm(40, 9), {"holdout_every": 7}), (libsvm(25, 10), {})]
            for number, (text, params) in enumerate(texts):
                response = http.post(
                    "/v1/models/m/stream", content=text, params=params,
                    headers={"content-type": "text/x-libsvm"},
                )  # fmt: skip
                assert orjson.loads(response.text.splitlines()[-1])["error"] is None
                batch = parse_bytes(text, "libsvm", dim=DIM)
                if params:
                    batch = held_every(batch, params["holdout_every"])
                local.learn_batch(batch)
                if number == 0:
                    assert http.post("/v1/models/m/snapshot").status_code == 200
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        process = start_server(tmp_path, port, quiet=True)
        served = load_model(io.BytesIO(httpx.get(f"{url}/v1/models/m/export").content))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert served.step == local.step and served.rows_seen == local.rows_seen == 145
    assert served.to_bytes() == local.to_bytes()  # every member's state too, and the mixture
    for name, array in local.holdout_metrics.state("holdout").items():
        np.testing.assert_array_equal(served.holdout_metrics.state("holdout")[name], array)
    assert served.metrics.to_dict() == local.metrics.to_dict()


def test_train_holds_out_and_reports_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "rows.libsvm"
    data.write_bytes(libsvm(300, 11))
    out = tmp_path / "m.npz"
    args = ["train", str(data), "--format", "libsvm", "--dim", str(DIM), "--optimizer", "adam"]
    assert main([*args, "--lr", "0.05", "--holdout-every", "10", "-o", str(out)]) == 0
    expected = OnlineLogisticRegression(OPTIMIZER, dim=DIM, holdout_every=10)
    expected.learn_batch(parse_bytes(data.read_bytes(), "libsvm", dim=DIM))
    trained = OnlineLogisticRegression.load(out)
    assert trained.step == expected.step == 270 and trained.holdout_metrics.rows == 30
    assert trained.table.tobytes() == expected.table.tobytes()
    err = capsys.readouterr().err
    holdout = expected.holdout_metrics.to_dict()
    line = next(line for line in err.splitlines() if line.startswith("holdout"))
    assert line == (
        f"holdout     30 rows, log-loss {holdout['overall']['log_loss']:.6f}, "
        f"AUC {holdout['recent']['auc']:.6f}"
    )
    assert main([*args, "--holdout-every", "-2", "-o", str(out)]) != 0
    assert "holdout_every" in capsys.readouterr().err

    # optimizer auto: the mixture's holdout metrics, no member learning the held-out rows
    args[args.index("adam")] = "auto"
    assert main([*args, "--holdout-every", "10", "-o", str(out)]) == 0
    expected = new_model("auto", dim=DIM, holdout_every=10)
    expected.learn_batch(parse_bytes(data.read_bytes(), "libsvm", dim=DIM))
    trained = load_model(out)
    assert trained.to_bytes() == expected.to_bytes()
    assert trained.step == 270 and trained.holdout_metrics.rows == 30
    holdout = expected.holdout_metrics.to_dict()
    line = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("holdout"))
    assert line.startswith(f"holdout     30 rows, log-loss {holdout['overall']['log_loss']:.6f}")
