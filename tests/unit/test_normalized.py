"""Normalized and importance-invariant updates against the dense reference, to 1e-9.

Normalized: every optimizer x both lazy modes x l2 on/off, on raw values whose magnitudes span
five orders and grow during the stream (so scales grow and restate the state); coordinates absent
for 10,000 steps. Invariant (SGD, AdaGrad, plain and normalized): importance weights from 0.1 to
3; one row of weight 3 against a numerical integration of the paper's flow.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import dense_reference
from streams import long_absence_stream, sparse_stream, to_csr
from test_exactness import CUSTOM, assert_matches, learn_in_batches
from test_finite_guard import DIM, LIMITS, batches, learn_each, optimizers, state

from optim import REGISTRY, ConfigError, ModelFileError, NonFiniteUpdate, OnlineLogisticRegression

RTOL, ATOL = 1e-9, 1e-13


def raw_valued(rows, seed: int):
    """The stream's rows with values of magnitudes 1e-2..1e3 per coordinate, growing."""
    rng = np.random.default_rng(seed)
    magnitude = 10.0 ** rng.uniform(-2, 3, size=64)
    growth = np.linspace(0.3, 1.0, len(rows))
    return [(i, v * magnitude[i] * growth[k]) for k, (i, v) in enumerate(rows)]


def run_both(optimizer, lazy, rows, labels, weights, dim, *, invariant=False, fit_intercept=True):
    model = OnlineLogisticRegression(
        optimizer, dim=dim, lazy=lazy, fit_intercept=fit_intercept, normalized=True,
        invariant=invariant,
    )  # fmt: skip
    probabilities = learn_in_batches(model, rows, labels, weights, seed=len(rows))
    expected = dense_reference(
        optimizer, rows, labels, weights, dim, lazy, fit_intercept, normalized=True,
        invariant=invariant,
    )  # fmt: skip
    return model, probabilities, expected


def assert_normalized_matches(model, probabilities, expected) -> None:
    assert_matches(model, probabilities, expected)
    state = model.state_arrays()
    np.testing.assert_allclose(state["scale"], expected["slots"]["scale"], rtol=0, atol=0)
    np.testing.assert_allclose(model.norm_sums, expected["norm_sums"], rtol=RTOL)


@pytest.mark.parametrize("l2", [0.0, 0.01])
@pytest.mark.parametrize("lazy", ["exact", "frozen"])
@pytest.mark.parametrize("hyper", ["default", "custom"])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_normalized_matches_dense_reference(name: str, hyper: str, lazy: str, l2: float) -> None:
    optimizer = {"name": name, **(CUSTOM[name] if hyper == "custom" else {})}
    if l2:
        optimizer["l2"] = l2
    seed = hash((name, hyper, lazy, l2)) % 1000
    rows, labels, weights = sparse_stream(seed=seed)
    rows = raw_valued(rows, seed)
    model, probabilities, expected = run_both(optimizer, lazy, rows, labels, weights, dim=16)
    assert "scale" in model.slots and "scale" in model.inspect_coordinates([0])[0]["state"]
    assert_normalized_matches(model, probabilities, expected)


@pytest.mark.parametrize("name", ["momentum", "nesterov", "rmsprop", "adadelta", "adam", "nadam"])
def test_normalized_absent_for_ten_thousand_steps(name: str) -> None:
    rows, labels, weights = long_absence_stream(seed=3, warmup=20, gap=10_500)
    rows = raw_valued(rows, 4)
    model, probabilities, expected = run_both(
        {"name": name, **CUSTOM[name]}, "exact", rows, labels, weights, dim=8
    )
    assert_normalized_matches(model, probabilities, expected)


def test_normalized_without_intercept() -> None:
    rows, labels, weights = sparse_stream(seed=5)
    rows = raw_valued(rows, 5)
    model, probabilities, expected = run_both(
        {"name": "adam", **CUSTOM["adam"]}, "exact", rows, labels, weights, 16,
        fit_intercept=False,
    )  # fmt: skip
    assert_normalized_matches(model, probabilities, expected)


@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("l2", [0.0, 0.01])
@pytest.mark.parametrize("optimizer", [{"name": "sgd", "lr": 0.3}, {"name": "adagrad", "lr": 0.5}])
def test_invariant_matches_dense_reference(optimizer: dict, l2: float, normalized: bool) -> None:
    rows, labels, _ = sparse_stream(seed=21)
    if normalized:
        rows = raw_valued(rows, 21)
    weights = np.random.default_rng(2).choice([0.1, 0.5, 1.0, 3.0], size=len(rows))
    optimizer = {**optimizer, "l2": l2}
    model = OnlineLogisticRegression(optimizer, dim=16, normalized=normalized, invariant=True)
    probabilities = learn_in_batches(model, rows, labels, weights, seed=7)
    expected = dense_reference(
        optimizer, rows, labels, weights, 16, normalized=normalized, invariant=True
    )
    assert_matches(model, probabilities, expected)


def margin_flow(margin: float, label: float, ppu: float, h: float, steps: int = 20_000) -> float:
    """The margin after flowing ``dm/dh = -(sigmoid(m) - label) * ppu`` from 0 to ``h``
    (Karampatziakis & Langford 2011, the limit of ever smaller importance steps), by classical
    Runge-Kutta: its error is O((h/steps)**4)."""

    def slope(m: float) -> float:
        return -(1.0 / (1.0 + math.exp(-m)) - label) * ppu

    dh = h / steps
    m = margin
    for _ in range(steps):
        k1 = slope(m)
        k2 = slope(m + dh * k1 / 2)
        k3 = slope(m + dh * k2 / 2)
        k4 = slope(m + dh * k3)
        m += dh * (k1 + 2 * k2 + 2 * k3 + k4) / 6
    return m


@pytest.mark.parametrize("label", [0.0, 1.0])
@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("name", ["sgd", "adagrad"])
def test_weight_three_is_the_limit_of_the_flow(name: str, normalized: bool, label: float) -> None:
    """After a few rows, one row of weight 3: its coordinates move along their rates (fixed by
    the row, as the paper's limit holds them) so that the margin is the flow's after h = 3."""
    rows, labels, weights = sparse_stream(seed=8, n_rows=50)
    model = OnlineLogisticRegression(
        {"name": name, "lr": 0.4}, dim=16, normalized=normalized, invariant=True
    )
    model.learn(to_csr(rows, 16), labels, weights)
    indices = np.array([0, 3, 9])
    values = np.array([0.5, -0.8, 0.3])  # within the scales seen: no rescale
    assert not normalized or (model.state_arrays()["scale"][indices] >= np.abs(values)).all()
    row = to_csr([(indices, values)], 16)
    margin = float(model.decision_function(row)[0])
    before = model.state_arrays()["weight"]
    model.learn(row, [label], [3.0])
    after = model.state_arrays()
    coordinates = np.append(indices, 16)
    x = np.append(values, 1.0)
    rates = after["effective_learning_rate"][coordinates]
    ppu = float(rates @ x**2)
    moved = margin_flow(margin, label, ppu, 3.0) - margin
    assert abs(moved) > 0.05  # a real move, far from its first-order approximation
    expected = before[coordinates] + rates * x * moved / ppu
    np.testing.assert_allclose(after["weight"][coordinates], expected, rtol=1e-9, atol=1e-13)
    first_order = -(1 / (1 + math.exp(-margin)) - label) * 3.0 * ppu
    assert abs(first_order - moved) > 1e-3  # so the test tells the closed form from one step


def test_invariant_exists_for_sgd_and_adagrad_only() -> None:
    with pytest.raises(ConfigError) as error:
        OnlineLogisticRegression("adam", dim=4, invariant=True)
    assert error.value.field == "invariant"
    with pytest.raises(ConfigError):
        OnlineLogisticRegression("adagrad", dim=4, normalized="yes")


def test_normalized_model_file_round_trip_and_validation() -> None:
    rows, labels, weights = sparse_stream(seed=9)
    rows = raw_valued(rows, 9)
    model = OnlineLogisticRegression("ftrl", dim=16, normalized=True)
    model.learn(to_csr(rows[:200], 16), labels[:200], weights[:200])
    loaded = OnlineLogisticRegression.load(io.BytesIO(model.to_bytes()))
    assert loaded.config == model.config and loaded.config["normalized"] is True
    np.testing.assert_array_equal(loaded.norm_sums, model.norm_sums)
    for m in (model, loaded):
        m.learn(to_csr(rows[200:], 16), labels[200:], weights[200:])
    assert loaded.table.tobytes() == model.table.tobytes()
    assert loaded.norm_sums.tobytes() == model.norm_sums.tobytes()

    arrays = model.file_arrays(copy=True)
    arrays["table"][3, -1] = -1.0
    with pytest.raises(ModelFileError, match="negative ftrl scale"):
        OnlineLogisticRegression.from_arrays(arrays)
    arrays = model.file_arrays(copy=True)
    arrays["norm_sums"][1] = math.nan
    with pytest.raises(ModelFileError) as error:
        OnlineLogisticRegression.from_arrays(arrays)
    assert error.value.member == "norm_sums"
    arrays = model.file_arrays(copy=True)
    del arrays["norm_sums"]
    with pytest.raises(ModelFileError) as error:
        OnlineLogisticRegression.from_arrays(arrays)
    assert error.value.member == "norm_sums"


@pytest.mark.parametrize("invariant", [False, True])
def test_refused_batch_restores_scales_and_sums(invariant: bool) -> None:
    model = OnlineLogisticRegression(
        {"name": "sgd", "lr": 1e300}, dim=4, normalized=True, invariant=invariant
    )
    model.learn(to_csr([(np.array([0]), np.array([1e-3]))], 4), [1.0], [1e-300])
    table, sums = model.table.copy(), model.norm_sums.copy()
    # The first row grows scales and the sums; the second cannot be learned: both refused.
    bad = to_csr([(np.array([0, 1]), np.array([2.0, 3.0])), (np.array([0]), np.array([1.0]))], 4)
    with pytest.raises(NonFiniteUpdate) as error:
        model.learn(bad, [1.0, 0.0], [1.0, 1e50])
    assert error.value.row == 1
    assert model.table.tobytes() == table.tobytes()
    assert model.norm_sums.tobytes() == sums.tobytes()


@pytest.mark.parametrize("lazy", ["exact", "frozen"])
@pytest.mark.parametrize("name", sorted(REGISTRY))
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(data=st.data())
def test_normalized_guard_keeps_state_finite(name: str, lazy: str, data: st.DataObject) -> None:
    """test_finite_guard's extremes (values 5e-324 to 1e100, weights 0 to 1e100, any
    hyperparameters) on normalized models: every accepted batch leaves the state, the scales
    and the sums finite, a refused one leaves them bit for bit, and the file loads back."""
    optimizer = data.draw(optimizers(name), label="optimizer")
    dtype = data.draw(st.sampled_from(["float64", "float32"]), label="dtype")
    invariant = REGISTRY[name].accumulate is not None and data.draw(st.booleans())
    group = data.draw(st.lists(batches(LIMITS[dtype]), min_size=1, max_size=6), label="batches")
    try:
        model = OnlineLogisticRegression(
            optimizer, dim=DIM, lazy=lazy, dtype=dtype, normalized=True, invariant=invariant
        )
    except ConfigError as error:  # an initial state beyond float32's range
        assert dtype == "float32" and error.field == "optimizer"
        return
    learn_each(model, group)
    assert np.isfinite(model.norm_sums).all() and (model.table[:, -1] >= 0).all()
    loaded = OnlineLogisticRegression.load(io.BytesIO(model.to_bytes()))
    assert state(loaded) == state(model)
