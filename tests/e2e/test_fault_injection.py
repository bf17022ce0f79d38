"""Fault injection against the real server (``loadtest/fault_rounds.py``, shared with
``bench_durability.py --faults``): kill -9 at random moments, bytes flipped in snapshots and logs,
a full disk, concurrent creates, deletes, re-creates, imports, updates and streams on several
models, hypothesis-built bad bodies; after every round each model equals the replay of exactly
what was acknowledged, or, damaged on purpose, is recovered or quarantined with its reason.

The seed is printed; ``ADASERVE_FAULT_SEED=N`` replays a run (the moments of the kills depend on
timing, the choices on the seed), ``ADASERVE_FAULT_ROUNDS`` runs more rounds.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import orjson
from datasets import loadtest_script
from servers import free_port, start_server

from optim import Batch, OnlineLogisticRegression


def load_fault_rounds() -> ModuleType:
    return loadtest_script("fault_rounds", needs_make_clicks=False)


def test_random_faults_lose_nothing_acknowledged(tmp_path: Path) -> None:
    faults = load_fault_rounds()
    seed = int(os.environ.get("ADASERVE_FAULT_SEED", "14"))
    rounds = int(os.environ.get("ADASERVE_FAULT_ROUNDS", "3"))
    print(f"fault injection seed {seed} (ADASERVE_FAULT_SEED={seed} replays it)")
    plan = faults.Plan(rounds=rounds, names=3)
    summary = faults.run(tmp_path, seed, plan)
    assert summary["violations"] == [], f"seed {seed}: {summary['violations']}"
    assert summary["rows_lost"] == 0
    assert summary["rounds"] == rounds and summary["faults"]["kill -9"] == rounds
    assert summary["acked_rows"] > 0 and summary["acknowledged_ops"]["update"] > 0
    assert summary["bad_bodies"] > 0
    assert summary["bad_bodies_refused"] == summary["bad_bodies"]


@contextlib.contextmanager
def killed_at_exit(data_dir: Path, port: int) -> Iterator[tuple[str, int]]:
    """A real server on ``data_dir`` (its URL and pid), ended by kill -9 however the block ends."""
    server = start_server(data_dir, port, quiet=True, env={"ADASERVE_WARM_KERNELS": "false"})
    try:
        yield f"http://127.0.0.1:{port}", server.pid
    finally:
        server.kill()
        server.wait(30)


def _import(url: str, model: OnlineLogisticRegression) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/models/m/import", content=model.to_bytes(), timeout=60,
        headers={"Content-Type": "application/x-adaserve-model"},
    )  # fmt: skip


def _update(url: str, rows: int, rng: np.random.Generator) -> int:
    indices = [int(i) for i in rng.integers(0, 64, rows)]
    body = {"indptr": list(range(rows + 1)), "indices": indices, "values": [1.0] * rows,
            "labels": [int(y) for y in rng.integers(0, 2, rows)]}  # fmt: skip
    response = httpx.post(f"{url}/v1/models/m/updates", content=orjson.dumps(body),
                          headers={"Content-Type": "application/json"}, timeout=60)  # fmt: skip
    assert response.status_code == 200, response.text
    return int(response.json()["step"])


def test_an_import_to_a_lower_step_survives_kill_9(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    port = free_port()
    with killed_at_exit(tmp_path, port) as (url, _):
        created = httpx.post(
            f"{url}/v1/models", json={"name": "m", "dim": 64, "optimizer": "adagrad"}, timeout=60
        )
        assert created.status_code == 201
        assert _update(url, 50, rng) == 50
        assert httpx.post(f"{url}/v1/models/m/snapshot", timeout=60).status_code == 200
        imported = OnlineLogisticRegression("adagrad", dim=64)
        imported.learn_batch(Batch.from_arrays([0, 1], [3], [1.0], [1], dim=64))
        answer = _import(url, imported)
        assert answer.status_code == 200 and answer.json()["step"] == 1
        assert _update(url, 5, rng) == 6  # acknowledged: must survive
    with killed_at_exit(tmp_path, port) as (url, _):
        served = httpx.get(f"{url}/v1/models/m/export", timeout=60).content
        assert OnlineLogisticRegression.load(io.BytesIO(served)).step == 6


def test_an_import_refused_by_a_full_disk_changes_nothing(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    port = free_port()
    with killed_at_exit(tmp_path, port) as (url, pid):
        created = httpx.post(
            f"{url}/v1/models", json={"name": "m", "dim": 64, "optimizer": "adagrad"}, timeout=60
        )
        assert created.status_code == 201
        assert _update(url, 5, rng) == 5
        imported = OnlineLogisticRegression("adagrad", dim=64)
        imported.learn_batch(Batch.from_arrays([0, 1, 2], [3, 4], [1.0, 1.0], [1, 0], dim=64))
        imported.learn_batch(Batch.from_arrays([0, 1], [5], [1.0], [1], dim=64))
        imported.learn_batch(Batch.from_arrays([0, 1], [6], [1.0], [0], dim=64))
        # The disk fills: no file of the server may grow past a few KiB (a snapshot is larger).
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (4096, 4096))
        answer = _import(url, imported)
        assert answer.status_code == 503, answer.text
        assert httpx.get(f"{url}/v1/models/m", timeout=60).json()["step"] == 5
        # Nothing of the import is left on disk, and the old model's log still takes updates.
        assert sorted(p.name for p in (tmp_path / "models" / "m").iterdir()) == [
            "incarnation", "snapshot-0.npz", "wal-0.log"
        ]  # fmt: skip
        assert _update(url, 4, rng) == 9  # acknowledged: must survive
    with killed_at_exit(tmp_path, port) as (url, _):
        served = httpx.get(f"{url}/v1/models/m/export", timeout=60)
        assert served.status_code == 200, served.text
        assert OnlineLogisticRegression.load(io.BytesIO(served.content)).step == 9
