"""kill -9 the real server at random moments during a stream of acknowledged updates: after each
restart on the same data directory the model equals the replay of exactly what was acknowledged
(plus, at most, the one batch that was in flight when the process died)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import numpy as np
import scipy.sparse as sp
from servers import free_port, start_server

from optim import OnlineLogisticRegression

OPTIMIZER = {"name": "adam", "lr": 0.02}
DIM = 256
ROUNDS = 4


def start(data_dir: Path, port: int) -> subprocess.Popen:
    return start_server(data_dir, port, "--fsync", "always", quiet=True)


def make_batch(rng: np.random.Generator) -> dict:
    X = sp.random(rng.integers(1, 60), DIM, density=0.05, format="csr", random_state=rng)
    y = rng.integers(0, 2, X.shape[0])
    return {"indptr": X.indptr.tolist(), "indices": X.indices.tolist(),
            "values": X.data.tolist(), "labels": y.tolist()}  # fmt: skip


def learn(model: OnlineLogisticRegression, body: dict) -> None:
    X = sp.csr_array((body["values"], body["indices"], body["indptr"]),
                     shape=(len(body["indptr"]) - 1, DIM))  # fmt: skip
    model.learn(X, body["labels"])


def test_kill_minus_nine_loses_nothing_acknowledged(tmp_path) -> None:
    rng = np.random.default_rng(2026)
    port = free_port()
    servers: list[subprocess.Popen] = []
    try:
        run_rounds(servers, tmp_path, port, rng)
    finally:
        for server in servers:  # a failed assertion must not leave a server behind
            if server.poll() is None:
                server.kill()


def run_rounds(servers: list[subprocess.Popen], tmp_path: Path, port: int, rng) -> None:
    url = f"http://127.0.0.1:{port}"
    process = start(tmp_path, port)
    servers.append(process)
    httpx.post(f"{url}/v1/models", json={"name": "m", "dim": DIM, "optimizer": OPTIMIZER})
    replay = OnlineLogisticRegression(OPTIMIZER, dim=DIM)
    acknowledged = 0
    for round_ in range(ROUNDS):
        in_flight = None
        with httpx.Client(base_url=url, timeout=120) as client:
            # One batch first: a server started cold compiles the model's kernels on its first
            # update (the warm-up waits only for those of the models on disk and the default)
            in_flight = make_batch(rng)
            response = client.post("/v1/models/m/updates", json=in_flight)
            assert response.status_code == 200, response.text
            learn(replay, in_flight)
            acknowledged += 1
            killer = threading.Timer(rng.uniform(0.3, 1.5), os.kill, (process.pid, signal.SIGKILL))
            killer.start()
            while True:
                in_flight = make_batch(rng)
                try:
                    response = client.post("/v1/models/m/updates", json=in_flight)
                except httpx.TransportError:
                    break  # the process died with this batch in flight
                assert response.status_code == 200, response.text
                learn(replay, in_flight)
                acknowledged += 1
                assert response.json()["step"] == replay.step
        killer.join()
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL

        process = start(tmp_path, port)
        servers.append(process)
        served = OnlineLogisticRegression.load(
            io.BytesIO(httpx.get(f"{url}/v1/models/m/export").content)
        )
        if served.step != replay.step:  # the in-flight batch had reached the log before the kill
            learn(replay, in_flight)
            acknowledged += 1
        assert served.step == replay.step, f"round {round_}: lost acknowledged rows"
        assert served.table.tobytes() == replay.table.tobytes()
        assert served.counters.tobytes() == replay.counters.tobytes()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert acknowledged > ROUNDS
