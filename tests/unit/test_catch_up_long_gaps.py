"""Every optimizer's lazy catch-up against the zero-gradient steps it stands for, over long gaps.

``catch_up(w, state, t_last, t_last + k, hp)`` must equal ``k`` dense steps with a zero gradient
(tests/reference.py's update rules) on one coordinate. The oracle here takes all ``k`` steps,
vectorized in float64 (each term from its own powers, the weight's movement added with
``math.fsum``), for gaps up to 10**6 steps starting anywhere up to step 3 * 10**6: before, across
and past every table of the catch-ups (bias corrections, Nadam's mu schedule, split powers).
A model run against the dense reference itself across a 60,000-step absence completes it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from reference import dense_reference
from streams import long_absence_stream
from test_exactness import assert_matches, run_both

from optim import REGISTRY

T_LAST = [1, 7, 300, 41_000, 45_000, 250_000, 3_000_000]
GAPS = [1, 2, 17, 791, 30_000, 10**6]
W_RTOL, STATE_RTOL = 1e-11, 1e-12


@functools.cache
def packed(name: str, params: tuple) -> np.ndarray:
    spec = REGISTRY[name]
    return spec.pack(spec.resolve(dict(params)))


def powers(base: float, k: int) -> np.ndarray:
    """``base**j`` for ``j = 1..k``."""
    return base ** np.arange(1, k + 1, dtype=np.float64)


@functools.cache
def nadam_products(b1: float, decay: float) -> np.ndarray:
    """``P_0 .. P_n`` as the dense reference keeps it (a running product), until it is below
    1e-300 (``1 - P mu`` is exactly 1 long before)."""
    products = [1.0]
    while products[-1] >= 1e-300:
        t = len(products)
        products.append(products[-1] * b1 * (1.0 - 0.5 * 0.96 ** (t * decay)))
    return np.array(products)


def dense_zero_steps(name: str, p: dict, state: list[float], t_last: int, k: int):
    """``k`` dense steps with g = 0 after step ``t_last`` from weight 0: (weight, state)."""
    s = np.arange(t_last + 1, t_last + k + 1, dtype=np.float64)  # the steps taken
    if name in ("momentum", "nesterov"):
        mu = p["momentum"]
        b = state[0] * powers(mu, k)  # the buffer after each step
        factor = mu if name == "nesterov" else 1.0
        return -math.fsum(p["lr"] * factor * b), [b[-1]]
    if name == "rmsprop":
        return 0.0, [state[0] * p["alpha"] ** k]
    if name == "adadelta":
        return 0.0, [x * p["rho"] ** k for x in state]
    b1, b2 = p["betas"]
    # Past the step where m0 b1**j underflows to 0 every term is exactly 0: stop there.
    if 0.0 < b1 < 1.0 and state[0] != 0.0:
        below = -1080 * math.log(2.0) - math.log(abs(state[0]))  # log of 2**-1080 / abs(m0)
        k_moving = min(k, math.ceil(below / math.log(b1)) + 1)
    else:
        k_moving = min(k, 1)
    s = s[:k_moving]
    m = state[0] * powers(b1, k_moving)
    assert k_moving == k or state[0] * b1**k_moving == 0.0
    final_m = state[0] * b1**k
    if name == "adamax":
        u = np.maximum(state[1] * powers(b2, k_moving), p["eps"])
        terms = p["lr"] / (1.0 - b1**s) * m / u
        return -math.fsum(terms), [final_m, max(state[1] * b2**k, p["eps"])]
    v = state[1] * powers(b2, k_moving)
    denominator = np.sqrt(v) / np.sqrt(1.0 - b2**s) + p["eps"]
    if name == "adam":
        weight = p["lr"] / (1.0 - b1**s)
    else:  # nadam
        decay = p["momentum_decay"]
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((s + 1) * decay))
        table = nadam_products(b1, decay)
        product = np.where(s < len(table), table[np.minimum(s, len(table) - 1).astype(int)], 0)
        weight = p["lr"] * mu_next / (1.0 - product * mu_next)
    return -math.fsum(weight * m / denominator), [final_m, state[1] * b2**k]


def check(name: str, params: dict, state: list[float], t_last: int, k: int) -> None:
    spec = REGISTRY[name]
    p = spec.resolve(params)
    hp = packed(name, tuple(params.items()))
    actual = np.array(state, dtype=np.float64)
    w = spec.catch_up(0.0, actual, t_last, t_last + k, hp)
    expected_w, expected_state = dense_zero_steps(name, p, state, t_last, k)
    where = f"{name} {params} state={state} t_last={t_last} k={k}"
    assert w == pytest.approx(expected_w, rel=W_RTOL, abs=1e-300), where
    assert actual.tolist() == pytest.approx(expected_state, rel=STATE_RTOL, abs=1e-300), where


@pytest.mark.parametrize("k", GAPS)
@pytest.mark.parametrize("t_last", T_LAST)
@pytest.mark.parametrize(
    "name, params",
    [
        ("momentum", {}),
        ("momentum", {"momentum": 0.999999}),
        ("momentum", {"momentum": 0.0}),
        ("nesterov", {"momentum": 0.95}),
        ("rmsprop", {}),
        ("rmsprop", {"alpha": 0.999999}),
        ("adadelta", {}),
    ],
)
def test_momentum_and_decay_catch_ups(name: str, params: dict, t_last: int, k: int) -> None:
    state = [-0.37] if REGISTRY[name].slots != ("square_avg", "acc_delta") else [0.2, 0.03]
    check(name, params, state, t_last, k)


# sqrt(v)/eps below, across and above the eps/sqrt(v) series' threshold (2**11), and v = 0.
RATIOS = [0.0, 1e-3, 1.0, 2.0**11 - 1, 2.0**11 + 1, 1e6, 1e13]
ADAM_LIKE = [
    ("adam", {}),
    ("adam", {"betas": (0.8, 0.99), "eps": 1e-6}),
    ("nadam", {}),
    ("nadam", {"momentum_decay": 0.01, "lr": 0.01}),
    ("nadam", {"momentum_decay": 0.0}),  # mu constant: b1 / 2
    ("nadam", {"momentum_decay": 0.3, "betas": (0.8, 0.99)}),  # mu near b1 from the start
    ("nadam", {"momentum_decay": 0.0005}),  # schedule longer than the split tables (2**20)
    ("nadam", {"betas": (0.99, 0.99999)}),  # tables shorter than the bias phase
]


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("k", GAPS)
@pytest.mark.parametrize("t_last", T_LAST)
@pytest.mark.parametrize("name, params", ADAM_LIKE, ids=lambda x: str(x))
def test_adam_and_nadam_catch_ups(
    name: str, params: dict, t_last: int, k: int, ratio: float
) -> None:
    eps = REGISTRY[name].resolve(params)["eps"]
    check(name, params, [-0.03, (ratio * eps) ** 2], t_last, k)


@pytest.mark.parametrize("u_over_eps", [1.0, 1.5, 1e3, 1e8, 1e14])
@pytest.mark.parametrize("k", GAPS)
@pytest.mark.parametrize("t_last", T_LAST)
@pytest.mark.parametrize(
    "params",
    [{}, {"betas": (0.8, 0.99), "lr": 0.01}, {"betas": (0.99, 0.9)}, {"betas": (0.0, 0.999)}],
    ids=str,
)
def test_adamax_catch_up(params: dict, t_last: int, k: int, u_over_eps: float) -> None:
    eps = REGISTRY["adamax"].resolve(params)["eps"]
    check("adamax", params, [0.05, u_over_eps * eps], t_last, k)


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "nadam"},
        {"name": "nadam", "lr": 0.01, "momentum_decay": 0.01},
        {"name": "adam"},
        {"name": "adamax"},
        {"name": "momentum", "lr": 0.02},
    ],
    ids=lambda o: "-".join(f"{v}" for v in o.values()),
)
def test_model_absent_past_the_tables(optimizer: dict) -> None:
    """A model whose coordinates 2..5 are absent for 60,000 steps (past the 42,000-step tables
    of Adam and Nadam at the default betas), against the dense reference itself."""
    rows, labels, weights = long_absence_stream(seed=4, warmup=30, gap=60_000, tail=30)
    model, probabilities, expected = run_both(optimizer, "exact", rows, labels, weights, dim=8)
    assert_matches(model, probabilities, expected)


def test_reference_helper_is_the_dense_reference() -> None:
    """The vectorized oracle above agrees with tests/reference.py's own steps on a short gap."""
    optimizer = {"name": "nadam", "lr": 0.01}
    rows, labels, weights = long_absence_stream(seed=5, warmup=3, gap=40, tail=0)
    state = dense_reference(optimizer, rows[:3], labels[:3], weights[:3], dim=8)
    after = dense_reference(optimizer, rows, labels, weights, dim=8)
    p = REGISTRY["nadam"].resolve({"lr": 0.01})
    coordinate = 2  # present in the first 3 rows only
    slots = [state["slots"][name][coordinate] for name in ("exp_avg", "exp_avg_sq")]
    drift, expected_slots = dense_zero_steps("nadam", p, slots, 3, 40)
    assert state["weights"][coordinate] + drift == pytest.approx(
        after["weights"][coordinate], rel=1e-13
    )
    assert expected_slots == pytest.approx(
        [after["slots"][name][coordinate] for name in ("exp_avg", "exp_avg_sq")], rel=1e-13
    )
