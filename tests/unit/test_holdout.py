"""Holdout rows (``holdout_every``, a batch's ``holdout`` mask): scored, never learned.

A model holding out every k-th row must equal one that learned only the other rows, bit for bit
in practice (1e-12 here), for every optimizer and both lazy modes: no step, no catch-up written,
no optimizer counter moved. Its holdout log-loss is the log-loss of those rows as that other
model scores them at their points in the stream.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from reference import dense_reference
from streams import sparse_stream, to_csr
from test_exactness import CUSTOM

from optim import REGISTRY, ConfigError, NonFiniteUpdate, OnlineLogisticRegression
from optim.metrics import log_losses

K = 3
TIGHT = {"rtol": 1e-12, "atol": 1e-15}


def held_positions(n_rows: int, k: int, seen: int = 0) -> np.ndarray:
    """VW's rule: the model's n-th row (1-based, counting every row it was given) is held out
    when k divides n."""
    return (seen + np.arange(1, n_rows + 1)) % k == 0


def cuts_of(n_rows: int, seed: int) -> list[tuple[int, int]]:
    cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, n_rows), 6, replace=False))
    return list(zip([0, *cuts.tolist()], [*cuts.tolist(), n_rows], strict=True))


def assert_same_state(model: OnlineLogisticRegression, other: OnlineLogisticRegression) -> None:
    assert model.step == other.step
    np.testing.assert_array_equal(model.counters, other.counters)
    np.testing.assert_allclose(model.table, other.table, **TIGHT)


@pytest.mark.parametrize("lazy", ["exact", "frozen"])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_equals_the_model_that_learned_only_the_other_rows(name: str, lazy: str) -> None:
    optimizer = {"name": name, **CUSTOM[name]}
    rows, labels, weights = sparse_stream(seed=len(name) + (lazy == "frozen"))
    held = held_positions(len(rows), K)
    model = OnlineLogisticRegression(optimizer, dim=16, lazy=lazy, holdout_every=K)
    # The model that never sees the held-out rows, scoring each of them where it comes.
    other = OnlineLogisticRegression(optimizer, dim=16, lazy=lazy)
    expected_margins = np.empty(len(rows))
    results = []
    for start, stop in cuts_of(len(rows), seed=7):
        results.append(
            model.learn(to_csr(rows[start:stop], 16), labels[start:stop], weights[start:stop])
        )
        for i in range(start, stop):
            X = to_csr(rows[i : i + 1], 16)
            expected_margins[i] = other.decision_function(X)[0]
            if not held[i]:
                other.learn(X, labels[i : i + 1], weights[i : i + 1])
    assert_same_state(model, other)
    assert model.step == (~held).sum() and model.holdout_metrics.rows == held.sum()
    margins = np.concatenate([r.margins for r in results])
    np.testing.assert_allclose(margins, expected_margins, **TIGHT)
    held_out = np.concatenate([np.zeros(r.rows, bool) if r.held_out is None else r.held_out
                               for r in results])  # fmt: skip
    np.testing.assert_array_equal(held_out, held)

    losses = log_losses(expected_margins, labels)
    holdout = model.holdout_metrics.to_dict()["overall"]["log_loss"]
    expected = np.sum(losses[held] * weights[held]) / np.sum(weights[held])
    assert holdout == pytest.approx(expected, rel=1e-12)
    progressive = model.metrics.to_dict()["overall"]["log_loss"]
    learned = ~held
    expected = np.sum(losses[learned] * weights[learned]) / np.sum(weights[learned])
    assert progressive == pytest.approx(expected, rel=1e-12)
    assert model.metrics.rows == learned.sum()

    # and the learned rows are the dense algorithm's, as for any model
    kept = [row for row, h in zip(rows, held, strict=True) if not h]
    dense = dense_reference(optimizer, kept, labels[learned], weights[learned], 16, lazy)
    np.testing.assert_allclose(
        model.state_arrays()["weight"], dense["weights"], rtol=1e-9, atol=1e-13
    )


def test_a_batch_mask_decides_for_its_rows_and_its_rows_count() -> None:
    rows, labels, weights = sparse_stream(seed=3, n_rows=60)
    X = to_csr(rows, 16)
    model = OnlineLogisticRegression("adam", dim=16, holdout_every=4)
    mask = np.zeros(30, bool)
    mask[[0, 1, 29]] = True
    first = model.to_batch(X[:30], labels[:30], weights[:30])
    result = model.learn_batch(dataclasses.replace(first, holdout=mask))
    np.testing.assert_array_equal(result.held_out, mask)
    assert model.step == 27 and model.holdout_metrics.rows == 3
    # the model's own rule goes on from the 31st row it was given: rows 32, 36, ... held out
    second = model.learn(X[30:], labels[30:], weights[30:])
    np.testing.assert_array_equal(second.held_out, held_positions(30, 4, seen=30))
    assert second.learned_rows == 30 - 8 and second.step == 27 + 22


def test_a_refused_batch_does_not_count_its_rows() -> None:
    """In one call of the kernel, the batches after a refused one are held out as if it had
    never come."""
    rows, labels, _ = sparse_stream(seed=5, n_rows=40)
    X = to_csr(rows, 16)
    model = OnlineLogisticRegression("sgd", dim=16, holdout_every=3)
    other = OnlineLogisticRegression("sgd", dim=16, holdout_every=3)
    good = [model.to_batch(X[a:b], labels[a:b]) for a, b in ((0, 5), (5, 11))]
    huge = model.to_batch(X[[0] * 4] * 1e90, labels[:4], [1e100] * 4)  # the loss limit
    outcomes = model.learn_batches([good[0], huge, good[1]])
    assert isinstance(outcomes[1], NonFiniteUpdate)
    expected = [other.learn_batch(batch) for batch in good]
    for outcome, result in zip((outcomes[0], outcomes[2]), expected, strict=True):
        np.testing.assert_array_equal(outcome.held_out, result.held_out)
        assert outcome.step == result.step
    assert_same_state(model, other)


def test_a_held_out_row_beyond_the_loss_limit_refuses_its_batch() -> None:
    model = OnlineLogisticRegression({"name": "sgd", "lr": 1e200}, dim=4, holdout_every=2)
    model.learn(to_csr([(np.array([0]), np.array([1.0]))], 4), [0])
    before = model.table.copy()
    X = to_csr([(np.array([0]), np.array([1e90])), (np.array([1]), np.array([1.0]))], 4)
    with pytest.raises(NonFiniteUpdate) as refused:
        model.learn(X, [1, 1])
    assert refused.value.row == 0  # the model's 2nd row, held out, scores beyond the limit
    np.testing.assert_array_equal(model.table, before)
    assert model.step == 1 and model.holdout_metrics.rows == 0


def test_holdout_metrics_and_period_survive_a_file() -> None:
    rows, labels, _ = sparse_stream(seed=9, n_rows=50)
    X = to_csr(rows, 16)
    model = OnlineLogisticRegression("adagrad", dim=16, holdout_every=5)
    model.learn(X[:23], labels[:23])
    buffer = io.BytesIO()
    model.save(buffer)
    loaded = OnlineLogisticRegression.load(io.BytesIO(buffer.getvalue()))
    assert loaded.config == model.config and loaded.holdout_every == 5
    assert loaded.holdout_metrics.to_dict() == model.holdout_metrics.to_dict()
    # the count goes on where it was: rows 25, 30, ... of the model
    np.testing.assert_array_equal(
        loaded.learn(X[23:], labels[23:]).held_out, held_positions(27, 5, seen=23)
    )


def test_a_file_from_before_holdout_loads_with_none_held_out() -> None:
    model = OnlineLogisticRegression("adagrad", dim=4)
    arrays = {k: v for k, v in model.file_arrays().items() if not k.startswith("holdout_")}
    loaded = OnlineLogisticRegression.from_arrays(arrays)
    assert loaded.holdout_metrics.rows == 0


@pytest.mark.parametrize("bad", [-1, True, 1.5, "3", 2**31, None])
def test_holdout_every_is_validated(bad: object) -> None:
    with pytest.raises(ConfigError) as error:
        OnlineLogisticRegression("sgd", dim=4, holdout_every=bad)  # type: ignore[arg-type]
    assert error.value.field == "holdout_every"


def test_holdout_every_one_only_scores() -> None:
    model = OnlineLogisticRegression("sgd", dim=4, holdout_every=1)
    result = model.learn(to_csr([(np.array([0]), np.array([1.0]))] * 3, 4), [1, 0, 1])
    assert model.step == 0 and result.learned_rows == 0 and np.isnan(result.log_loss)
    assert not model.table.any() and model.holdout_metrics.rows == 3
