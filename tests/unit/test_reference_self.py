"""Sanity checks for the two test oracles: reference.py and torch_reference.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from reference import dense_reference

TORCH_OPTIMIZERS = [
    {"name": "sgd", "lr": 0.05},
    {"name": "momentum", "lr": 0.02},
    {"name": "nesterov", "lr": 0.02, "momentum": 0.8},
    {"name": "adagrad", "lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1},
    {"name": "rmsprop", "alpha": 0.9},
    {"name": "adadelta", "rho": 0.95},
    {"name": "adam", "lr": 0.01, "betas": (0.8, 0.99)},
    {"name": "adamax", "lr": 0.01},
    {"name": "nadam", "lr": 0.01, "momentum_decay": 0.01},
]
DEFAULT_OPTIMIZERS = [{"name": o["name"]} for o in TORCH_OPTIMIZERS]

RTOL = 1e-9


def sparse_stream(
    seed: int, dim: int = 20, n_rows: int = 300
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """A random sparse stream where some coordinates vanish for long stretches.

    * coordinate 0 is present in every row;
    * coordinates 1..4 are absent for rows 60..239;
    * coordinates 5..7 appear only in the first 30 rows;
    * coordinate dim-1 never appears;
    * the rest appear with probability 0.3.
    """
    rng = np.random.default_rng(seed)
    true_w = rng.normal(size=dim)
    rows = []
    labels = np.zeros(n_rows)
    for i in range(n_rows):
        present = []
        for j in range(dim - 1):
            if j == 0:
                keep = True
            elif j <= 4:
                keep = not (60 <= i < 240) and rng.random() < 0.6
            elif j <= 7:
                keep = i < 30 and rng.random() < 0.7
            else:
                keep = rng.random() < 0.3
            if keep:
                present.append(j)
        indices = rng.permutation(np.array(present, dtype=np.int64))
        values = rng.normal(size=len(indices))
        rows.append((indices, values))
        margin = float(true_w[indices] @ values) + 0.3
        labels[i] = float(rng.random() < 1.0 / (1.0 + math.exp(-margin)))
    weights = rng.uniform(0.5, 2.0, size=n_rows)
    return rows, labels, weights


def assert_same(actual: dict[str, Any], expected: dict[str, Any], rtol: float = RTOL) -> None:
    np.testing.assert_allclose(actual["probabilities"], expected["probabilities"], rtol=rtol)
    np.testing.assert_allclose(actual["weights"], expected["weights"], rtol=rtol)
    assert set(actual["slots"]) == set(expected["slots"])
    for slot in expected["slots"]:
        np.testing.assert_allclose(
            actual["slots"][slot], expected["slots"][slot], rtol=rtol, err_msg=slot
        )


@pytest.mark.parametrize("optimizer", TORCH_OPTIMIZERS + DEFAULT_OPTIMIZERS, ids=repr)
@pytest.mark.parametrize("l2", [0.0, 0.03])
@pytest.mark.parametrize("use_weights", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_dense_matches_torch_exact(
    optimizer: dict[str, Any], l2: float, use_weights: bool, fit_intercept: bool
) -> None:
    pytest.importorskip("torch")
    from torch_reference import torch_reference

    rows, labels, weights = sparse_stream(seed=7, dim=20, n_rows=300)
    config = {**optimizer, "l2": l2}
    row_weights = weights if use_weights else None
    args = (config, rows, labels, row_weights, 20)
    expected = torch_reference(*args, lazy="exact", fit_intercept=fit_intercept)
    actual = dense_reference(*args, lazy="exact", fit_intercept=fit_intercept)
    assert_same(actual, expected)
    # The stream must actually have moved the model.
    assert np.any(actual["weights"] != 0.0)
    if not fit_intercept:
        assert actual["weights"][20] == 0.0


def test_torch_reference_restores_default_dtype() -> None:
    torch = pytest.importorskip("torch")
    from torch_reference import torch_reference

    rows, labels, _ = sparse_stream(seed=1, dim=5, n_rows=10)
    before = torch.get_default_dtype()
    torch_reference({"name": "nadam"}, rows, labels, None, 5)
    assert torch.get_default_dtype() == before


@pytest.mark.parametrize("l2", [0.0, 0.03])
def test_frozen_adam_matches_sparse_adam_when_eps_is_negligible(l2: float) -> None:
    """SparseAdam puts eps elsewhere than Adam; with eps ~ 0 they must agree.

    (SparseAdam refuses eps=0, so use eps=1e-300: both placements then round
    to the same float64 denominators.)
    """
    pytest.importorskip("torch")
    from torch_reference import torch_reference

    rows, labels, weights = sparse_stream(seed=3)
    config = {"name": "adam", "lr": 0.01, "eps": 1e-300, "l2": l2}
    expected = torch_reference(config, rows, labels, weights, 20, lazy="frozen")
    actual = dense_reference(config, rows, labels, weights, 20, lazy="frozen")
    assert_same(actual, expected)


def test_frozen_adam_eps_placement_differs_from_sparse_adam() -> None:
    """Documents the SparseAdam eps placement: with a large eps they visibly differ."""
    pytest.importorskip("torch")
    from torch_reference import torch_reference

    rows, labels, weights = sparse_stream(seed=3)
    config = {"name": "adam", "lr": 0.01, "eps": 0.1}
    sparse = torch_reference(config, rows, labels, weights, 20, lazy="frozen")
    frozen = dense_reference(config, rows, labels, weights, 20, lazy="frozen")
    assert not np.allclose(sparse["weights"], frozen["weights"], rtol=1e-3)


@pytest.mark.parametrize("name", ["adam", "nadam", "adadelta", "momentum", "adamax"])
def test_frozen_leaves_absent_coordinates_alone(name: str) -> None:
    rows, labels, weights = sparse_stream(seed=5)
    exact = dense_reference({"name": name}, rows, labels, weights, 20, lazy="exact")
    frozen = dense_reference({"name": name}, rows, labels, weights, 20, lazy="frozen")
    never = 19  # never present in the stream
    assert frozen["weights"][never] == 0.0
    for slot in frozen["slots"].values():
        assert slot[never] == 0.0
    # Zero-gradient steps do move these optimizers in exact mode, so the modes differ.
    assert not np.allclose(exact["weights"], frozen["weights"], rtol=1e-6)
    # Coordinates 5..7 only occur in the first 30 rows: in frozen mode their
    # weights are final after row 29.
    upto_30 = dense_reference(
        {"name": name}, rows[:30], labels[:30], weights[:30], 20, lazy="frozen"
    )
    for j in (5, 6, 7):
        assert frozen["weights"][j] == upto_30["weights"][j]


@pytest.mark.parametrize("name", ["sgd", "adagrad", "ftrl"])
def test_frozen_equals_exact_when_zero_gradient_is_a_no_op(name: str) -> None:
    rows, labels, weights = sparse_stream(seed=11)
    config = {"name": name, "l2": 0.01}
    exact = dense_reference(config, rows, labels, weights, 20, lazy="exact")
    frozen = dense_reference(config, rows, labels, weights, 20, lazy="frozen")
    assert_same(frozen, exact, rtol=0.0)


def _two_step_stream() -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    rows = [
        (np.array([0]), np.array([1.0])),
        (np.array([1, 0]), np.array([-1.0, 2.0])),
    ]
    return rows, np.array([1.0, 0.0])


def test_adagrad_two_steps_by_hand() -> None:
    rows, labels = _two_step_stream()
    lr, decay, eps, acc0 = 0.1, 0.5, 1e-10, 0.25
    result = dense_reference(
        {
            "name": "adagrad",
            "lr": lr,
            "lr_decay": decay,
            "eps": eps,
            "initial_accumulator_value": acc0,
        },
        rows,
        labels,
        np.array([1.0, 3.0]),
        dim=3,
    )
    # Step 1 (t=1, clr=lr): p=0.5, residual = -0.5 on x0=1 and on the intercept.
    # sum = 0.25 + 0.25 = 0.5 -> w = 0.1 * 0.5 / (sqrt(0.5) + eps).
    w0 = w_b = 0.05 / (math.sqrt(0.5) + eps)
    # Absent coordinates 1 and 2 take a zero step: sum stays 0.25, w stays 0.
    # Step 2 (t=2, clr = 0.1 / 1.5), weight 3: margin = 2*w0 + w_b.
    p2 = 1.0 / (1.0 + math.exp(-(2.0 * w0 + w_b)))
    r = 3.0 * (p2 - 0.0)
    clr = 0.1 / 1.5
    g0, g1, gb = 2.0 * r, -1.0 * r, r
    s0, s1, sb = 0.5 + g0**2, 0.25 + g1**2, 0.5 + gb**2
    expected_w = [
        w0 - clr * g0 / (math.sqrt(s0) + eps),
        0.0 - clr * g1 / (math.sqrt(s1) + eps),
        0.0,
        w_b - clr * gb / (math.sqrt(sb) + eps),
    ]
    np.testing.assert_allclose(result["probabilities"], [0.5, p2], rtol=1e-15)
    np.testing.assert_allclose(result["weights"], expected_w, rtol=1e-14)
    np.testing.assert_allclose(result["slots"]["sum"], [s0, s1, 0.25, sb], rtol=1e-15)
    # Sanity of the first-step numbers themselves.
    assert w0 == pytest.approx(0.0707106781, rel=1e-9)


def test_ftrl_two_steps_by_hand() -> None:
    rows, labels = _two_step_stream()
    alpha, beta, l1, l2 = 0.5, 1.0, 0.1, 0.2
    result = dense_reference(
        {"name": "ftrl", "alpha": alpha, "beta": beta, "l1": l1, "l2": l2},
        rows,
        labels,
        None,
        dim=3,
    )
    # Step 1: all weights 0, p = 0.5, g = -0.5 for x0 and the intercept.
    # sigma = (sqrt(0.25) - 0) / 0.5 = 1; z = -0.5 - 1*0 = -0.5; n = 0.25.
    # w0 = -(z + l1) / ((1 + 0.5)/0.5 + 0.2) = 0.4 / 3.2 = 0.125
    # w_b (no l1, l2) = 0.5 / 3 = 1/6
    w0, w_b = 0.125, 1.0 / 6.0
    # Step 2: margin = 2 * 0.125 + 1/6 = 5/12.
    p2 = 1.0 / (1.0 + math.exp(-5.0 / 12.0))
    g0, g1, gb = 2.0 * p2, -p2, p2

    def coordinate(z: float, n: float, w: float, g: float, l1: float, l2: float) -> float:
        sigma = (math.sqrt(n + g * g) - math.sqrt(n)) / alpha
        z = z + g - sigma * w
        n = n + g * g
        if abs(z) <= l1:
            return 0.0
        return -(z - math.copysign(l1, z)) / ((beta + math.sqrt(n)) / alpha + l2)

    expected_w = [
        coordinate(-0.5, 0.25, w0, g0, l1, l2),
        coordinate(0.0, 0.0, 0.0, g1, l1, l2),
        0.0,
        coordinate(-0.5, 0.25, w_b, gb, 0.0, 0.0),
    ]
    expected_n = [0.25 + g0**2, g1**2, 0.0, 0.25 + gb**2]
    np.testing.assert_allclose(result["probabilities"], [0.5, p2], rtol=1e-15)
    np.testing.assert_allclose(result["weights"], expected_w, rtol=1e-14)
    np.testing.assert_allclose(result["slots"]["n"], expected_n, rtol=1e-15)
    # Coordinate 1: z = g1 = -p2 ~ -0.603, so it escapes the l1 threshold.
    assert result["weights"][1] > 0.0
    # After step 1 alone the hand numbers are exact.
    one = dense_reference(
        {"name": "ftrl", "alpha": alpha, "beta": beta, "l1": l1, "l2": l2},
        rows[:1],
        labels[:1],
        None,
        dim=3,
    )
    np.testing.assert_allclose(one["weights"], [0.125, 0.0, 0.0, 1.0 / 6.0], rtol=1e-15)
    np.testing.assert_allclose(one["slots"]["z"], [-0.5, 0.0, 0.0, -0.5], rtol=0)


def test_ftrl_l1_keeps_small_coordinates_at_zero() -> None:
    rows, labels = _two_step_stream()
    result = dense_reference({"name": "ftrl", "l1": 10.0}, rows, labels, None, dim=3)
    assert result["weights"][0] == 0.0 and result["weights"][1] == 0.0
    assert result["weights"][3] != 0.0  # the intercept is never l1-regularized


def test_rejects_unknown_hyperparameters() -> None:
    rows, labels = _two_step_stream()
    with pytest.raises(ValueError):
        dense_reference({"name": "adam", "beta1": 0.9}, rows, labels, None, dim=3)
    with pytest.raises(ValueError):
        dense_reference({"name": "lion"}, rows, labels, None, dim=3)
