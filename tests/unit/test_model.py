"""The in-process API: configuration errors, metrics, inspection and numerics at the extremes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from optim import REGISTRY, ConfigError, OnlineLogisticRegression
from optim.metrics import log_losses, probabilities


def test_unknown_optimizer_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as error:
        OnlineLogisticRegression("adamw", dim=4)
    assert error.value.field == "optimizer.name"
    for name in REGISTRY:
        assert name in str(error.value)


@pytest.mark.parametrize(
    "optimizer, field",
    [
        ({"name": "adam", "lr": -1}, "optimizer.lr"),
        ({"name": "adam", "betas": [0.9, 1.0]}, "optimizer.betas[1]"),
        ({"name": "adam", "betas": 0.9}, "optimizer.betas"),
        ({"name": "adam", "momentum": 0.9}, "optimizer.momentum"),
        ({"name": "rmsprop", "alpha": 1.5}, "optimizer.alpha"),
        ({"name": "ftrl", "l1": "big"}, "optimizer.l1"),
        ({"name": "adagrad", "eps": 0}, "optimizer.eps"),
        ({"name": "momentum", "momentum": 1.0}, "optimizer.momentum"),
        ({"lr": 0.1}, "optimizer"),
    ],
)
def test_bad_hyperparameters_name_the_field(optimizer: dict, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        OnlineLogisticRegression(optimizer, dim=4)
    assert error.value.field == field


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"dim": 0}, "dim"),
        ({"dim": 4, "hash_bits": 2}, "dim"),
        ({"hash_bits": 99}, "hash_bits"),
        ({"dim": 4, "lazy": "sometimes"}, "lazy"),
        ({"dim": 4, "dtype": "float16"}, "dtype"),
        ({"dim": 4, "hash_seed": -1}, "hash_seed"),
    ],
)
def test_bad_model_settings_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        OnlineLogisticRegression("sgd", **kwargs)
    assert error.value.field == field


def test_defaults_are_filled_in_config() -> None:
    model = OnlineLogisticRegression({"name": "nadam", "lr": 0.01}, hash_bits=10)
    assert model.config["optimizer"] == {
        "name": "nadam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
        "momentum_decay": 0.004, "l2": 0.0,
    }  # fmt: skip
    assert model.dim == 1024 and model.config["lazy"] == "exact"


def test_extreme_margins_stay_finite() -> None:
    margins = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    p = probabilities(margins)
    assert np.all(np.isfinite(p)) and p[0] == 0.0 and p[-1] == 1.0
    losses = log_losses(margins, np.array([1.0, 1.0, 1.0, 0.0, 0.0]))
    np.testing.assert_allclose(losses, [1000.0, 40.0, np.log(2), 40.0, 1000.0], rtol=1e-12)


def test_learning_with_huge_values_keeps_metrics_finite() -> None:
    model = OnlineLogisticRegression({"name": "sgd", "lr": 1.0}, dim=2)
    X = sp.csr_array(np.array([[1e3, 0.0], [0.0, -1e3]] * 5))
    result = model.learn(X, [0, 1] * 5)
    assert np.isfinite(result.log_loss) and np.all(np.isfinite(result.probabilities))


def test_recent_window_and_calibration() -> None:
    model = OnlineLogisticRegression("sgd", dim=2, recent_window=10)
    X = sp.csr_array(np.ones((25, 2)))
    model.learn(X, [1] * 5 + [0] * 20)
    metrics = model.metrics.to_dict()
    assert metrics["rows"] == 25 and metrics["recent"]["rows"] == 10
    assert metrics["recent"]["mean_label"] == 0.0
    assert metrics["overall"]["mean_label"] == pytest.approx(0.2)
    expected = metrics["overall"]["mean_prediction"] / 0.2
    assert metrics["overall"]["calibration"] == pytest.approx(expected)


def test_sample_weight_zero_rows_do_not_count_in_loss() -> None:
    model = OnlineLogisticRegression("adagrad", dim=2)
    X = sp.csr_array(np.eye(2))
    result = model.learn(X, [1, 0], sample_weight=[0.0, 1.0])
    assert result.log_loss == pytest.approx(np.log(2))


def test_predict_does_not_learn_and_sklearn_shapes() -> None:
    model = OnlineLogisticRegression("adagrad", dim=3)
    X = sp.csr_array(np.eye(3))
    model.partial_fit(X, [1, 0, 1])
    step = model.step
    proba = model.predict_proba(X)
    assert proba.shape == (3, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert model.coef_.shape == (1, 3) and model.intercept_.shape == (1,)
    assert list(model.predict(X)) == [int(p > 0.5) for p in proba[:, 1]]
    assert model.step == step


def test_rate_summary_over_touched_coordinates() -> None:
    model = OnlineLogisticRegression("adagrad", dim=100)
    rows = [{"busy": 1.0, "rare": 1.0} if i % 10 == 0 else {"busy": 1.0} for i in range(200)]
    model.learn(rows, [i % 2 for i in range(200)])
    summary = model.rate_summary(top=2, bins=5)
    assert summary["touched"] == 2
    assert sum(summary["effective_learning_rate"]["histogram"]["counts"]) == 2
    top = summary["top_by_effective_learning_rate"]
    assert [t["feature"] for t in top] == ["rare", "busy"]
    assert top[0]["times_touched"] == 20
    intercept = model.inspect_coordinates(indices=[100])[0]
    assert intercept["feature"] == "(intercept)" and intercept["times_touched"] == 200


def test_loss_curve_and_recent_auc() -> None:
    from optim.metrics import ProgressiveMetrics, auc

    metrics = ProgressiveMetrics(window=100, block=10, max_points=4)
    rng = np.random.default_rng(0)
    losses = rng.uniform(0, 1, 95)
    for start in range(0, 95, 7):  # batch boundaries that do not line up with blocks
        chunk = slice(start, start + 7)
        metrics.update(losses[chunk], losses[chunk], (losses[chunk] > 0.5) * 1.0, None)
    curve = metrics.loss_curve()
    # Blocks of 10 rows; past 4 points neighbours merge and blocks double: each point is the
    # loss of the rows since the previous one.
    assert [rows for rows, _ in curve] == [40, 70, 90]
    assert curve[0][1] == pytest.approx(losses[:40].mean())
    assert curve[1][1] == pytest.approx(losses[40:70].mean())
    assert curve[2][1] == pytest.approx(losses[70:90].mean())
    assert metrics.to_dict()["recent"]["auc"] == 1.0  # predictions sort the labels perfectly
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert auc(np.array([0.5]), np.array([1])) is None


@pytest.mark.parametrize("lazy", ["exact", "frozen"])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_learn_batches_is_learn_batch_on_each_in_turn(name: str, lazy: str) -> None:
    """One call of the compiled loop for several batches (the server's group commit) learns
    exactly what one call a batch does: state, steps, margins, losses and metrics, bit for bit,
    with a weighted batch among unweighted ones."""
    from optim import Batch

    rng = np.random.default_rng(7)
    X = sp.random(240, 40, density=0.15, format="csr", random_state=rng)
    y = rng.integers(0, 2, 240)
    weights = {1: rng.uniform(0.5, 2.0, 1)}  # the one-row batch is weighted
    cuts = [(0, 90), (90, 91), (91, 240)]
    batches = [
        Batch.from_scipy(X[a:b], y[a:b], weights.get(k), dim=40) for k, (a, b) in enumerate(cuts)
    ]
    one_by_one = OnlineLogisticRegression(name, dim=40, lazy=lazy)
    together = OnlineLogisticRegression(name, dim=40, lazy=lazy)
    expected = [one_by_one.learn_batch(batch) for batch in batches]
    results = together.learn_batches(batches)
    assert together.table.tobytes() == one_by_one.table.tobytes()
    assert together.counters.tobytes() == one_by_one.counters.tobytes()
    for got, want in zip(results, expected, strict=True):
        assert (got.rows, got.step, got.log_loss) == (want.rows, want.step, want.log_loss)
        assert got.margins.tobytes() == want.margins.tobytes()
        assert got.probabilities.tobytes() == want.probabilities.tobytes()
    assert together.metrics.to_dict() == one_by_one.metrics.to_dict()
    assert np.allclose(
        np.concatenate([r.probabilities for r in results]),
        probabilities(np.concatenate([r.margins for r in results])),
        rtol=0, atol=1e-15,
    )  # fmt: skip


def test_learn_batches_checks_the_group_unless_told_each_batch_was_checked() -> None:
    """A group holding a batch the model refuses: refused whole, nothing learned. With
    ``check=False`` the caller has checked each batch (the server's writer does, batch by batch)."""
    from optim import Batch, BatchError

    good = Batch.from_arrays([0, 1], [3], [1.0], [1], dim=8)
    huge = Batch.from_arrays([0, 1], [3], [1e200], [1], dim=8)  # over the float64 value limit
    model = OnlineLogisticRegression("adagrad", dim=8)
    with pytest.raises(BatchError):
        model.learn_batches([good, huge])
    assert model.step == 0 and not model.table.any()
    results = model.learn_batches([good, good], check=False)
    assert [r.step for r in results] == [1, 2] and model.step == 2
