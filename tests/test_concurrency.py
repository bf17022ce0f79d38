"""Many concurrent clients: updates apply one batch at a time in arrival order, predictions never
see half a batch, and each model ends equal to the serial replay of its acknowledged batches."""

from __future__ import annotations

import asyncio
import io

import httpx
import numpy as np
import pytest
import scipy.sparse as sp

from optim import OnlineLogisticRegression
from service.app import create_app
from service.settings import Settings

OPTIMIZERS = {"a": {"name": "adam", "lr": 0.05}, "b": {"name": "ftrl", "alpha": 0.5}}
DIM = 32
PROBE = {"indptr": [0, 3], "indices": [0, 1, 2], "values": [1.0, 1.0, 1.0]}


def make_batches(seed: int, count: int) -> list[tuple[sp.csr_array, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        X = sp.random(20 + 5 * (i % 4), DIM, density=0.2, format="csr", random_state=rng)
        out.append((X, rng.integers(0, 2, X.shape[0])))
    return out


def body(X: sp.csr_array, y: np.ndarray) -> dict:
    return {"indptr": X.indptr.tolist(), "indices": X.indices.tolist(),
            "values": X.data.tolist(), "labels": y.tolist()}  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_concurrent_updates_predictions_and_inspections(tmp_path, seed: int) -> None:
    app = create_app(Settings(data_dir=tmp_path, warm_kernels=False))
    batches = {name: make_batches(seed * 10 + i, 25) for i, name in enumerate(OPTIMIZERS)}

    async def scenario() -> tuple[dict, dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for name, optimizer in OPTIMIZERS.items():
                r = await client.post(
                    "/v1/models", json={"name": name, "dim": DIM, "optimizer": optimizer}
                )
                assert r.status_code == 201

            async def update(name: str, i: int) -> tuple[str, int, int]:
                r = await client.post(f"/v1/models/{name}/updates", json=body(*batches[name][i]))
                assert r.status_code == 200, r.text
                return name, i, r.json()["step"]

            async def predict(name: str) -> tuple[str, float]:
                r = await client.post(f"/v1/models/{name}/predict", json=PROBE)
                assert r.status_code == 200, r.text
                return name, r.json()["margins"][0]

            async def inspect(name: str) -> None:
                r = await client.get(f"/v1/models/{name}/learning-rates?indices=0,1,2")
                assert r.status_code == 200, r.text

            jobs = []
            for i in range(25):
                for name in OPTIMIZERS:
                    jobs += [update(name, i), predict(name), inspect(name)]
            rng = np.random.default_rng(seed)
            results = await asyncio.gather(*[jobs[k] for k in rng.permutation(len(jobs))])
            finals = {}
            for name in OPTIMIZERS:
                finals[name] = (await client.get(f"/v1/models/{name}/export")).content
            return results, finals

    results, finals = asyncio.run(scenario())
    acknowledged = {name: [] for name in OPTIMIZERS}
    margins = {name: [] for name in OPTIMIZERS}
    for result in results:
        if result is None:
            continue  # an inspection
        if len(result) == 3:
            name, i, step = result
            acknowledged[name].append((step, i))
        else:
            margins[result[0]].append(result[1])
    probe = sp.csr_array(([1.0, 1.0, 1.0], [0, 1, 2], [0, 3]), shape=(1, DIM))
    for name, optimizer in OPTIMIZERS.items():
        replay = OnlineLogisticRegression(optimizer, dim=DIM)
        boundary_margins = {float(replay.decision_function(probe)[0])}
        for step, i in sorted(acknowledged[name]):
            X, y = batches[name][i]
            assert replay.learn(X, y).step == step  # acknowledged steps are consecutive batches
            boundary_margins.add(float(replay.decision_function(probe)[0]))
        served = OnlineLogisticRegression.load(io.BytesIO(finals[name]))
        assert served.table.tobytes() == replay.table.tobytes()
        assert served.counters.tobytes() == replay.counters.tobytes()
        assert set(margins[name]) <= boundary_margins  # never half a batch
