"""kill -9 the real server while rows are pending and their labels arrive: after each restart the
pending rows are still there (their labels accepted and learned), and every acknowledged label
was learned (plus, at most, the one in flight when the process died)."""

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

OPTIMIZER = {"name": "adagrad", "lr": 0.1}
DIM = 128
ROUNDS = 3
ROWS = 4_000  # more ids than a fast machine labels in three rounds of at most 1.2 s


def test_kill_minus_nine_keeps_pending_rows_and_acknowledged_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(19)
    port = free_port()
    servers: list[subprocess.Popen] = []
    try:
        run_rounds(servers, tmp_path, port, rng)
    finally:
        for server in servers:
            if server.poll() is None:
                server.kill()


def exported(url: str) -> OnlineLogisticRegression:
    return OnlineLogisticRegression.load(io.BytesIO(httpx.get(f"{url}/v1/models/m/export").content))


def run_rounds(servers: list[subprocess.Popen], tmp_path: Path, port: int, rng) -> None:
    url = f"http://127.0.0.1:{port}"
    process = start_server(tmp_path, port, "--fsync", "always", quiet=True)
    servers.append(process)
    r = httpx.post(
        f"{url}/v1/models",
        json={"name": "m", "dim": DIM, "optimizer": OPTIMIZER, "feedback": {"ttl_seconds": 3600}},
    )
    assert r.status_code == 201, r.text
    X = sp.random(ROWS, DIM, density=0.05, format="csr", random_state=rng)
    labels = rng.integers(0, 2, ROWS)
    ids = [f"imp-{k}" for k in range(ROWS)]
    body = {"indptr": X.indptr.tolist(), "indices": X.indices.tolist(),
            "values": X.data.tolist(), "ids": ids}  # fmt: skip
    r = httpx.post(f"{url}/v1/models/m/predict", json=body, timeout=120)
    assert r.status_code == 200, r.text
    replay = OnlineLogisticRegression(OPTIMIZER, dim=DIM)
    order = iter(rng.permutation(ROWS).tolist())
    labelled: set[int] = set()
    for round_ in range(ROUNDS):
        with httpx.Client(base_url=url, timeout=120) as client:
            killer = threading.Timer(rng.uniform(0.3, 1.2), os.kill, (process.pid, signal.SIGKILL))
            killer.start()
            while True:
                k = next(order, None)
                if k is None:  # every id labelled before the kill: let it come
                    killer.join()
                    break
                try:
                    r = client.post(
                        "/v1/models/m/feedback", json={"ids": [ids[k]], "labels": [int(labels[k])]}
                    )
                except httpx.TransportError:
                    break  # died with this label in flight
                assert r.status_code == 200, r.text
                replay.learn(X[[k]], labels[[k]])
                labelled.add(k)
                assert r.json()["step"] == replay.step
        killer.join()
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        process = start_server(tmp_path, port, "--fsync", "always", quiet=True)
        servers.append(process)
        served = exported(url)
        if k is not None and served.step != replay.step:  # the label in flight was logged
            replay.learn(X[[k]], labels[[k]])
            labelled.add(k)
        assert served.step == replay.step, f"round {round_}: acknowledged labels lost"
        assert served.table.tobytes() == replay.table.tobytes()
        assert sorted(served.feedback.pending) == sorted(
            ids[j] for j in range(ROWS) if j not in labelled
        )
        assert served.feedback.labelled == len(labelled)
    # after the restarts, pending rows' labels are accepted and learned
    rest = [j for j in range(ROWS) if j not in labelled][:50]
    r = httpx.post(
        f"{url}/v1/models/m/feedback",
        json={"ids": [ids[j] for j in rest], "labels": labels[rest].tolist()},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    replay.learn(X[rest], labels[rest])
    assert exported(url).table.tobytes() == replay.table.tobytes()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert len(labelled) > ROUNDS
