"""Every optimizer x both lazy modes x l2 on/off against the plain dense reference (and torch).

The compiled lazy kernels must equal the dense algorithm to 1e-9 relative in float64, including
coordinates absent for 10,000+ steps, whatever batch boundaries the stream is cut at.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from reference import dense_reference
from streams import long_absence_stream, sparse_stream, to_csr
from torch_reference import torch_reference

from optim import REGISTRY, OnlineLogisticRegression
from optim.optimizers._series import ratio_sum

RTOL, ATOL = 1e-9, 1e-13
CUSTOM = {
    "sgd": {"lr": 0.05},
    "momentum": {"lr": 0.02, "momentum": 0.8},
    "nesterov": {"lr": 0.02, "momentum": 0.95},
    "adagrad": {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "eps": 1e-6},
    "rmsprop": {"lr": 0.005, "alpha": 0.9},
    "adadelta": {"rho": 0.95, "lr": 0.5},
    "adam": {"lr": 0.01, "betas": (0.95, 0.8)},
    "adamax": {"lr": 0.01, "betas": (0.8, 0.99)},
    "nadam": {"lr": 0.01, "momentum_decay": 0.01},
    "ftrl": {"alpha": 0.1, "beta": 0.5, "l1": 0.05, "l2": 0.1},
}


def learn_in_batches(
    model: OnlineLogisticRegression, rows, labels, weights, seed: int
) -> np.ndarray:
    """Learn the stream cut at random batch boundaries; return the progressive probabilities."""
    cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, len(rows)), 5, replace=False))
    probabilities = []
    for start, stop in zip([0, *cuts], [*cuts, len(rows)], strict=True):
        X = to_csr(rows[start:stop], model.dim)
        result = model.learn(X, labels[start:stop], weights[start:stop])
        probabilities.append(result.probabilities)
    return np.concatenate(probabilities)


def assert_matches(
    model: OnlineLogisticRegression, probabilities: np.ndarray, expected: dict
) -> None:
    state = model.state_arrays()
    np.testing.assert_allclose(probabilities, expected["probabilities"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(state["weight"], expected["weights"], rtol=RTOL, atol=ATOL)
    for slot in model.spec.slots:
        np.testing.assert_allclose(state[slot], expected["slots"][slot], rtol=RTOL, atol=ATOL)


def run_both(optimizer: dict, lazy: str, rows, labels, weights, dim: int, fit_intercept=True):
    model = OnlineLogisticRegression(optimizer, dim=dim, lazy=lazy, fit_intercept=fit_intercept)
    probabilities = learn_in_batches(model, rows, labels, weights, seed=len(rows))
    expected = dense_reference(optimizer, rows, labels, weights, dim, lazy, fit_intercept)
    return model, probabilities, expected


@pytest.mark.parametrize("l2", [0.0, 0.01])
@pytest.mark.parametrize("lazy", ["exact", "frozen"])
@pytest.mark.parametrize("hyper", ["default", "custom"])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_matches_dense_reference(name: str, hyper: str, lazy: str, l2: float) -> None:
    optimizer = {"name": name, **(CUSTOM[name] if hyper == "custom" else {})}
    if l2:
        optimizer["l2"] = l2
    rows, labels, weights = sparse_stream(seed=hash((name, hyper, lazy, l2)) % 1000)
    model, probabilities, expected = run_both(optimizer, lazy, rows, labels, weights, dim=16)
    assert_matches(model, probabilities, expected)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_without_intercept(name: str) -> None:
    rows, labels, weights = sparse_stream(seed=5)
    model, probabilities, expected = run_both(
        {"name": name, **CUSTOM[name]}, "exact", rows, labels, weights, 16, fit_intercept=False
    )
    assert_matches(model, probabilities, expected)
    assert model.state_arrays()["times_touched"][-1] == 0


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": n, **CUSTOM[n]}
        for n in ("momentum", "nesterov", "rmsprop", "adadelta", "adam", "adamax", "nadam")
    ]
    # Adam past its bias-correction phase (betas (0.9, 0.99): ~4,100 steps), where the drift is
    # the closed-form series, with eps putting sqrt(v)/eps above, below and across 1.
    + [{"name": "adam", "lr": 0.01, "betas": (0.9, 0.99), "eps": eps} for eps in (1e-8, 0.03, 3.0)]
    + [{"name": "adamax", "lr": 0.01, "betas": (0.9, 0.99)}],
    ids=lambda o: "-".join(f"{v}" for v in o.values()),
)
def test_absent_for_ten_thousand_steps(optimizer: dict) -> None:
    warmup = 4_500 if optimizer.get("betas") == (0.9, 0.99) else 20
    rows, labels, weights = long_absence_stream(seed=3, warmup=warmup, gap=10_500)
    model, probabilities, expected = run_both(optimizer, "exact", rows, labels, weights, dim=8)
    assert_matches(model, probabilities, expected)
    assert model.state_arrays()["last_touched_step"][2] == len(rows)


@pytest.mark.parametrize("b1, b2", [(0.9, 0.999), (0.9, 0.99), (0.5, 0.9999), (0.99, 0.5)])
@pytest.mark.parametrize("x", [0.0, 1e-9, 1e-3, 0.5, 3.0, 1e3, 1e9])
@pytest.mark.parametrize("r", [1, 5, 33, 400, 5_000, 10**7])
def test_ratio_sum_against_direct_sum(b1: float, b2: float, x: float, r: int) -> None:
    sb2 = math.sqrt(b2)
    negligible_after = math.ceil(45 / -math.log(b1))  # b1**i < 3e-20 beyond
    direct = math.fsum(b1**i / (1.0 + x * sb2**i) for i in range(1, min(r, negligible_after) + 1))
    fast = ratio_sum(b1, math.log(b1), sb2, math.log(sb2), x, r)
    assert fast == pytest.approx(direct, rel=1e-13)


def test_reads_do_not_mutate_state() -> None:
    rows, labels, weights = sparse_stream(seed=9)
    model = OnlineLogisticRegression("adam", dim=16)
    model.learn(to_csr(rows, 16), labels, weights)
    table, counters = model.table.copy(), model.counters.copy()
    model.decision_function(to_csr(rows[:50], 16))
    model.inspect_coordinates(indices=range(17))
    model.rate_summary()
    _ = model.coef_, model.intercept_
    assert table.tobytes() == model.table.tobytes()
    assert counters.tobytes() == model.counters.tobytes()


TORCH_NAMES = sorted(set(REGISTRY) - {"ftrl"})


@pytest.mark.parametrize("l2", [0.0, 0.01])
@pytest.mark.parametrize("hyper", ["default", "custom"])
@pytest.mark.parametrize("name", TORCH_NAMES)
def test_matches_torch_optim(name: str, hyper: str, l2: float) -> None:
    pytest.importorskip("torch")
    optimizer = {"name": name, "l2": l2, **(CUSTOM[name] if hyper == "custom" else {})}
    rows, labels, weights = sparse_stream(seed=11, n_rows=250)
    model = OnlineLogisticRegression(optimizer, dim=16)
    probabilities = learn_in_batches(model, rows, labels, weights, seed=2)
    assert_matches(model, probabilities, torch_reference(optimizer, rows, labels, weights, 16))


def test_frozen_adam_matches_sparse_adam() -> None:
    """SparseAdam adds eps before the bias correction; with a negligible eps the two agree."""
    pytest.importorskip("torch")
    optimizer = {"name": "adam", "lr": 0.01, "eps": 1e-300}
    rows, labels, weights = sparse_stream(seed=12, n_rows=250)
    model = OnlineLogisticRegression(optimizer, dim=16, lazy="frozen")
    probabilities = learn_in_batches(model, rows, labels, weights, seed=3)
    expected = torch_reference(optimizer, rows, labels, weights, 16, lazy="frozen")
    assert_matches(model, probabilities, expected)


@functools.cache
def packed_adam(params: tuple) -> np.ndarray:
    spec = REGISTRY["adam"]
    return spec.pack(spec.resolve(dict(params)))


def zero_gradient_steps(p: dict, w: float, m: float, v: float, t_last: int, t_now: int):
    """Adam's dense update with g = 0, step after step (the definition the catch-up shortcuts)."""
    b1, b2 = p["betas"]
    for s in range(t_last + 1, t_now + 1):
        m, v = b1 * m, b2 * v
        w -= p["lr"] / (1 - b1**s) * m / (math.sqrt(v) / math.sqrt(1 - b2**s) + p["eps"])
    return w, m, v


@pytest.mark.parametrize(
    "params",
    [
        {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8},
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6},
        # A bias-correction phase longer than the per-step tables (MAX_TABLE_STEPS).
        {"lr": 1e-3, "betas": (0.9, 0.99999), "eps": 1e-8},
    ],
    ids=["default", "custom", "long-bias-phase"],
)
@pytest.mark.parametrize("t_last", [1, 7, 300, 20_000, 60_000, 200_000])
@pytest.mark.parametrize("k", [1, 2, 3, 17, 65, 400, 790, 791, 30_000])
@pytest.mark.parametrize("ratio", [0.0, 1e-3, 1.0, 2.0**11 - 1, 2.0**11 + 1, 1e6, 1e13])
def test_adam_catch_up_against_step_by_step(
    params: dict, t_last: int, k: int, ratio: float
) -> None:
    """Every path of the catch-up (direct terms, the eps/sqrt(v) series from the drift tables,
    the general path, absences past the power tables) against the steps themselves, with
    sqrt(v)/eps (``ratio``) below, across and above the series' threshold."""
    spec = REGISTRY["adam"]
    hp = packed_adam(tuple(params.items()))
    m0, v0 = -0.03, (ratio * params["eps"]) ** 2
    state = np.array([m0, v0])
    w = spec.catch_up(0.0, state, t_last, t_last + k, hp)  # from 0: w is the drift itself
    expected_w, expected_m, expected_v = zero_gradient_steps(
        params, 0.0, m0, v0, t_last, t_last + k
    )
    assert w == pytest.approx(expected_w, rel=1e-11, abs=1e-300)
    assert state[0] == pytest.approx(expected_m, rel=1e-12, abs=1e-300)
    assert state[1] == pytest.approx(expected_v, rel=1e-12, abs=1e-300)


def test_adam_decay_past_a_million_steps() -> None:
    spec = REGISTRY["adam"]
    hp = spec.pack(spec.resolve({"betas": (0.9, 0.999999)}))
    for k in (2**20 - 1, 2**20, 2**20 + 12_345, 3 * 2**20 + 7):
        state = np.array([0.5, 0.25])
        spec.catch_up(0.0, state, 100, 100 + k, hp)
        assert state[1] == pytest.approx(0.25 * 0.999999**k, rel=1e-12)
        assert state[0] == 0.5 * 0.9**k
