"""Watched coordinates survive kill -9 of the real server: every sample taken before an
acknowledgement is there after a restart (:mod:`service.engine.watches`); the client's watch
methods against it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest
from servers import free_port, start_server
from test_watches import batch  # tests/service/test_watches.py: rows with coordinate 3

from service.client import AdaserveClient, AdaserveError

DIM = 64
COLD = {"ADASERVE_WARM_KERNELS": "false"}  # kernels compile on first use


def create(client: httpx.Client, name: str = "m") -> None:
    body = {"name": name, "dim": DIM, "optimizer": {"name": "adagrad", "lr": 0.5}}
    response = client.post("/v1/models", json=body)
    assert response.status_code == 201, response.text


def learn(client: httpx.Client, rows: int, seed: int) -> None:
    response = client.post("/v1/models/m/updates", json=batch(rows, seed))
    assert response.status_code == 200, response.text


def samples(client: httpx.Client) -> dict:
    response = client.get("/v1/models/m/watches/samples")
    assert response.status_code == 200, response.text
    return response.json()


def test_samples_survive_kill_minus_nine(tmp_path: Path) -> None:
    port = free_port()
    process = start_server(tmp_path, port, env=COLD, quiet=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            create(client)
            client.post("/v1/models/m/watches", json={"index": 3, "every": 25})
            for k in range(8):
                learn(client, 25, seed=k)
            before = samples(client)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert before["curves"][0]["steps"] == [25 * k for k in range(9)]
    process = start_server(tmp_path, port, env=COLD, quiet=True)
    try:
        with AdaserveClient(f"http://127.0.0.1:{port}", timeout=60) as client:
            assert client.watch_curves("m") == before
            assert client.watch_curves("m", since_step=150)["curves"][0]["steps"] == [175, 200]
            listed = client.watch("m", feature="IQ", every=10)
            assert [w["feature"] for w in listed["watches"]] == [None, "IQ"]
            client.unwatch("m", 3)
            with pytest.raises(AdaserveError) as refused:
                client.unwatch("m", 3)
            assert refused.value.status == 404
    finally:
        process.terminate()
        process.wait(timeout=60)
