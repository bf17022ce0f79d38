"""Effective learning rate against times touched (optim.frequency and
``GET /v1/models/{name}/learning-rates/by-frequency``), and the top by rate's ``min_touches``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient

from optim import BatchError, OnlineLogisticRegression
from optim.frequency import MEDIAN_SAMPLE, shares
from service.app import create_app
from service.settings import Settings

GROUPS = 8  # features of group g are present every 2**g rows
PER_GROUP = 16
ROWS = 4_096


def periodic_stream(seed: int = 0) -> tuple[sp.csr_array, np.ndarray]:
    """Feature ``g * PER_GROUP + i`` is present in row ``r`` when ``(r + i) % 2**g == 0``:
    group 0 in every row (4,096 touches), group 7 in one row of 128 (32 touches); labels are
    coin flips, so every feature sees gradients of the same size whatever its frequency."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for g in range(GROUPS):
        for i in range(PER_GROUP):
            present = np.flatnonzero((np.arange(ROWS) + i) % 2**g == 0)
            rows.append(present)
            cols.append(np.full(present.size, g * PER_GROUP + i))
    r, c = np.concatenate(rows), np.concatenate(cols)
    X = sp.csr_array((np.ones(r.size), (r, c)), shape=(ROWS, GROUPS * PER_GROUP))
    return X, (rng.random(ROWS) < 0.5).astype(np.int64)


def learned(optimizer: dict, lazy: str = "exact") -> OnlineLogisticRegression:
    model = OnlineLogisticRegression(optimizer, dim=GROUPS * PER_GROUP, lazy=lazy)
    X, y = periodic_stream()
    model.learn(X, y)
    return model


def medians(model: OnlineLogisticRegression) -> tuple[list[int], list[float]]:
    bins = model.rates_by_frequency(sample=500)["bins"]
    return [b["min_touches"] for b in bins], [b["median_effective_learning_rate"] for b in bins]


def test_adagrad_rates_fall_with_touches_rmsprop_rates_do_not() -> None:
    adagrad = learned({"name": "adagrad", "lr": 0.1})
    lows, rates = medians(adagrad)
    assert lows == [32, 64, 128, 256, 512, 1024, 2048, 4096]
    assert all(a > b for a, b in itertools.pairwise(rates)), rates
    # lr / sqrt(sum g^2) with |g| ~ 1/2: 128 times the touches, about a 11th of the rate
    assert 6 < rates[0] / rates[-1] < 20, rates
    # The rare feature keeps a larger rate than a frequent one, coordinate by coordinate.
    rare, frequent = adagrad.inspect_coordinates([GROUPS * PER_GROUP - 1, 0])
    assert rare["times_touched"] == 32 and frequent["times_touched"] == 4_096
    assert rare["effective_learning_rate"] > 5 * frequent["effective_learning_rate"]

    # RMSProp scales by a moving average of g^2 over its touches ("frozen": a coordinate's state
    # is as its last touch left it): the rate does not depend on how often it was touched. (In
    # "exact" mode the dense algorithm decays an absent coordinate's average, so there a rate
    # grows with the rows since the last touch; Adam's bias correction by the global step makes
    # its frozen rates fall over the first ~1/(1 - b2) touches.)
    _, flat = medians(learned({"name": "rmsprop", "lr": 0.01}, lazy="frozen"))
    assert max(flat) / min(flat) < 2, flat
    assert not all(a > b for a, b in itertools.pairwise(flat)), flat


def test_sample_is_bounded_stratified_and_reproducible() -> None:
    model = OnlineLogisticRegression("adagrad", hash_bits=16)
    rng = np.random.default_rng(3)
    counts = np.minimum(rng.zipf(1.4, model.dim), 10**7)
    counts[rng.random(model.dim) < 0.3] = 0
    model.counters[: model.dim, 1] = counts
    model.step = int(counts.max())
    model.table[: model.dim, 1] = counts * 0.25  # AdaGrad's sum of squared gradients

    out = model.rates_by_frequency(sample=600, seed=7)
    touched = np.flatnonzero(counts)
    assert out["touched"] == touched.size and out["step"] == model.step
    points = out["points"]
    assert len(points) == 600
    indices = [p["index"] for p in points]
    assert len(set(indices)) == 600 and set(indices) <= set(touched.tolist())
    # Every non-empty bin shows up, each with its share; bins smaller than a share entirely.
    sizes = np.bincount(np.floor(np.log2(counts[touched])).astype(int))
    assert [b["coordinates"] for b in out["bins"]] == sizes[sizes > 0].tolist()
    wanted = shares(np.minimum(sizes, MEDIAN_SAMPLE), 600)
    per_bin = np.bincount(
        np.floor(np.log2([p["times_touched"] for p in points])).astype(int),
        minlength=sizes.size,
    )
    assert per_bin.tolist() == wanted.tolist()
    assert ((wanted == sizes) & (sizes > 0)).any() and (wanted < sizes).any()  # both kinds
    for b in out["bins"]:
        assert b["min_touches"] <= b["max_touches"] == 2 * b["min_touches"] - 1
        assert b["measured"] == min(b["coordinates"], MEDIAN_SAMPLE)
    # Each point is what a lookup of its coordinate gives.
    for point in points[::37]:
        (exact,) = model.inspect_coordinates([point["index"]])
        assert point["times_touched"] == exact["times_touched"]
        assert point["effective_learning_rate"] == exact["effective_learning_rate"]
        assert point["weight"] == exact["weight"]
    # The same seed gives the same points; another seed other points; a bin's median is
    # exact when the bin was measured whole.
    assert model.rates_by_frequency(sample=600, seed=7) == out
    assert model.rates_by_frequency(sample=600, seed=8)["points"] != points
    first = out["bins"][0]
    assert first["measured"] == MEDIAN_SAMPLE < first["coordinates"]
    last = out["bins"][-1]
    in_last = touched[counts[touched] >= last["min_touches"]]
    exact_median = np.median(
        [c["effective_learning_rate"] for c in model.inspect_coordinates(in_last.tolist())]
    )
    assert last["median_effective_learning_rate"] == exact_median


def test_sample_edges() -> None:
    model = OnlineLogisticRegression("adagrad", dim=10)
    assert model.rates_by_frequency() == {
        "step": 0, "touched": 0, "sample": 2_000, "seed": 0, "points": [], "bins": [],
    }  # fmt: skip
    model.learn([{"a": 1.0}], [1])
    out = model.rates_by_frequency(sample=5)
    assert [p["feature"] for p in out["points"]] == ["a"]  # the intercept is left out
    for bad in (0, 20_001, 1.5, True):
        with pytest.raises(BatchError, match="sample"):
            model.rates_by_frequency(sample=bad)
    with pytest.raises(BatchError, match="seed"):
        model.rates_by_frequency(seed=-1)


def test_shares_fill_small_groups_and_split_the_rest() -> None:
    assert shares(np.array([0, 2, 100, 100, 1]), 50).tolist() == [0, 2, 24, 23, 1]
    assert shares(np.array([3, 4]), 100).tolist() == [3, 4]
    assert shares(np.array([5, 5, 5]), 2).sum() == 2


def test_top_by_rate_leaves_out_rarely_touched() -> None:
    model = OnlineLogisticRegression("adagrad", dim=100)
    rows = [{"busy": 1.0, "rare": 1.0} if i % 25 == 0 else {"busy": 1.0} for i in range(200)]
    rows[0]["once"] = 1.0
    model.learn(rows, [i % 2 for i in range(200)])
    top = model.rate_summary(top=3)["top_by_effective_learning_rate"]
    assert [t["feature"] for t in top] == ["busy"]  # "rare" 8 times, "once" once
    top = model.rate_summary(top=3, min_touches=1)["top_by_effective_learning_rate"]
    assert [t["feature"] for t in top] == ["once", "rare", "busy"]
    assert model.rate_summary(min_touches=8)["min_touches"] == 8
    with pytest.raises(BatchError, match="min_touches"):
        model.rate_summary(min_touches=0)


# ------------------------------------------------------------------- the route
TOKENS = {"read": "r-secret", "admin": "a-secret"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    tokens = ",".join(f"{role}:{token}" for role, token in TOKENS.items())
    return Settings(data_dir=tmp_path, warm_kernels=False, tokens=tokens)


def test_route_needs_the_read_role(client: TestClient) -> None:
    path = "/v1/models/m/learning-rates/by-frequency"
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    assert client.post("/v1/models", json={"name": "m", "dim": 8}, headers=admin).status_code == 201
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    read = {"Authorization": f"Bearer {TOKENS['read']}"}
    assert client.get(path, headers=read).status_code == 200
    assert client.get("/v1/models/x/learning-rates/by-frequency", headers=read).status_code == 404


@pytest.fixture
def open_client(tmp_path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=tmp_path, warm_kernels=False))) as c:
        yield c


def test_route_answers_as_the_model(open_client: TestClient) -> None:
    client = open_client
    path = "/v1/models/m/learning-rates/by-frequency"
    missing = client.get(path)
    assert missing.status_code == 404 and missing.json()["error"] == "model_not_found"
    config = {"name": "m", "dim": GROUPS * PER_GROUP, "optimizer": {"name": "adagrad", "lr": 0.1}}
    assert client.post("/v1/models", json=config).status_code == 201
    X, y = periodic_stream()
    csr = {"indptr": X.indptr.tolist(), "indices": X.indices.tolist(),
           "values": X.data.tolist(), "labels": y.tolist()}  # fmt: skip
    assert client.post("/v1/models/m/updates", json=csr).status_code == 200
    out = client.get(path, params={"sample": 40, "seed": 3}).json()
    assert out["model"] == "m" and out["step"] == ROWS and out["touched"] == GROUPS * PER_GROUP
    assert len(out["points"]) == 40 and {p["times_touched"] for p in out["points"]} == {
        ROWS // 2**g for g in range(GROUPS)
    }
    rates = [b["median_effective_learning_rate"] for b in out["bins"]]
    assert rates == sorted(rates, reverse=True)
    touches = [ROWS // 2**g for g in reversed(range(GROUPS))]
    assert [b["median_times_touched"] for b in out["bins"]] == touches
    assert [b["min_touches"] for b in out["bins"]] == touches  # powers of two here
    assert client.get(path, params={"sample": 40, "seed": 3}).json() == out
    for params in ({"sample": 0}, {"sample": 20_001}, {"sample": "x"}, {"seed": -1}):
        bad = client.get(path, params=params)
        assert bad.status_code == 422, params
        body = bad.json()
        assert body["error"] == "invalid_input" and body["detail"], body
        assert body["where"].get("field") == next(iter(params)), body
    summary = "/v1/models/m/learning-rates/summary"
    assert client.get(summary).json()["min_touches"] == 10
    assert client.get(summary, params={"min_touches": 0}).status_code == 422
