"""Mixed, realistic traffic for the service: a Locust file (loopback only, bounded in time).

    adaserve serve --port 8080 &
    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8080 \\
        --users 32 --spawn-rate 8 --run-time 60s --csv loadtest/out/locust

Each user predicts single rows (most of the traffic), learns small batches of labelled rows,
and now and then reads learning rates, as a click-prediction front end and its trainer would.
The model (``locust-clicks``, AdaGrad over 2**20 hashed features) is created if missing.
"""

from __future__ import annotations

import random

from locust import HttpUser, between, events, task

MODEL = "locust-clicks"
CATEGORIES = [f"C{j}" for j in range(1, 27)]


def click_row(rng: random.Random) -> dict:
    features: dict[str, object] = {f"I{i}": rng.expovariate(0.3) for i in range(1, 14)}
    for column in CATEGORIES:
        features[column] = f"{int(rng.paretovariate(1.2)) % 10_000:04x}"
    return features


@events.test_start.add_listener
def create_model(environment, **_: object) -> None:
    import httpx

    body = {"name": MODEL, "hash_bits": 20, "optimizer": {"name": "adagrad", "lr": 0.1}}
    response = httpx.post(f"{environment.host}/v1/models", json=body, timeout=60)
    if response.status_code not in (201, 409):
        raise RuntimeError(f"could not create {MODEL}: {response.status_code} {response.text}")


class ClickTraffic(HttpUser):
    wait_time = between(0.0, 0.01)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task(20)
    def predict_one(self) -> None:
        self.client.post(
            f"/v1/models/{MODEL}/predict",
            json={"rows": [{"features": click_row(self.rng)}]},
            name="predict 1 row",
        )

    @task(5)
    def learn_batch(self) -> None:
        rows = [
            {"features": click_row(self.rng), "label": int(self.rng.random() < 0.2)}
            for _ in range(50)
        ]
        self.client.post(f"/v1/models/{MODEL}/updates", json={"rows": rows}, name="update 50 rows")

    @task(1)
    def inspect(self) -> None:
        self.client.get(
            f"/v1/models/{MODEL}/learning-rates?features=I1,I2,C1=0001", name="learning-rates"
        )
