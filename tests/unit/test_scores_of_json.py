"""``scores_of_json``: one compiled call from a JSON CSR body to margins and probabilities, equal
to ``decision_function`` of the batch and ``probabilities`` of those, and ``None`` for every body it
leaves to the general path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from optim import Batch, OnlineLogisticRegression
from optim.formats.json_csr import scores_of_json
from optim.metrics import probabilities
from optim.optimizers import REGISTRY

DIM = 256
LIMITS = {"max_rows": 100, "max_nnz": 1_000}


def trained(name: str, lazy: str) -> OnlineLogisticRegression:
    model = OnlineLogisticRegression(name, dim=DIM, lazy=lazy)
    rng = np.random.default_rng(3)
    X = sp.random(400, DIM, density=0.03, format="csr", random_state=3)
    model.partial_fit(X, rng.integers(0, 2, 400))
    return model


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize("lazy", ["exact", "frozen"])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_equals_decision_function_of_the_batch(name: str, lazy: str) -> None:
    model = trained(name, lazy)
    rng = np.random.default_rng(4)
    for _ in range(20):
        rows = [np.sort(rng.choice(DIM, rng.integers(0, 8), replace=False)) for _ in range(3)]
        indptr = np.cumsum([0] + [len(r) for r in rows]).tolist()
        indices = np.concatenate(rows).astype(int).tolist()
        values = np.round(rng.normal(size=len(indices)), 6).tolist()
        scores = scores_of_json(
            model, body(indptr=indptr, indices=indices, values=values), **LIMITS
        )
        expected = model.decision_function(Batch.from_arrays(indptr, indices, values, dim=DIM))
        assert scores is not None
        np.testing.assert_array_equal(scores[0], expected)
        np.testing.assert_array_equal(scores[1], probabilities(expected))


@pytest.mark.parametrize(
    "fields",
    [
        {"indptr": [0, 2], "indices": [5, 3], "values": [1.0, 2.0]},  # unsorted row
        {"indptr": [0, 2], "indices": [3, 3], "values": [1.0, 2.0]},  # repeated index
        {"indptr": [0, 1], "indices": [3], "values": [1.0], "labels": [1]},
        {"indptr": [0, 1], "indices": [3], "values": [1.0], "weights": [2.0]},
        {"indptr": [0, 1], "indices": [3], "values": [1.0], "extra": 1},
        {"indptr": [0, 1], "indices": [DIM], "values": [1.0]},  # index out of range
        {"indptr": [0, 1], "indices": [-1], "values": [1.0]},
        {"indptr": [1, 1], "indices": [3], "values": [1.0]},  # indptr not from 0
        {"indptr": [0, 2], "indices": [3], "values": [1.0]},  # indptr past nnz
        {"indptr": [0, 1], "indices": [3], "values": [1.0, 2.0]},  # length mismatch
        {"indptr": [0, 1], "indices": [3], "values": ["1"]},
        {"indptr": [0, 1], "indices": [3], "values": [0.12345678901234567]},  # not read exactly
        {"indices": [3], "values": [1.0]},
        {"rows": [{"features": {"a": 1}}]},
    ],
)
def test_anything_else_is_left_to_the_general_path(fields: dict) -> None:
    model = trained("adagrad", "exact")
    assert scores_of_json(model, body(**fields), **LIMITS) is None


def test_a_margin_that_is_not_finite_is_left_to_the_general_path() -> None:
    model = OnlineLogisticRegression({"name": "sgd", "lr": 10.0}, dim=8)
    model.partial_fit(sp.csr_matrix(([1.0], ([0], [1])), shape=(1, 8)), [1])  # weight 5
    finite = body(indptr=[0, 1], indices=[1], values=[1000.0])
    overflowing = body(indptr=[0, 1, 2], indices=[1, 1], values=[1.0, 1e308])
    assert scores_of_json(model, finite, **LIMITS) is not None
    assert scores_of_json(model, overflowing, **LIMITS) is None
    assert np.isinf(model.decision_function(sp.csr_matrix(([1e308], ([0], [1])), shape=(1, 8))))


def test_limits_are_left_to_the_general_path() -> None:
    model = trained("adagrad", "exact")
    data = body(indptr=[0, 2, 3], indices=[1, 2, 3], values=[1.0, 1.0, 1.0])
    assert scores_of_json(model, data, max_rows=2, max_nnz=3) is not None
    assert scores_of_json(model, data, max_rows=1, max_nnz=3) is None
    assert scores_of_json(model, data, max_rows=2, max_nnz=2) is None


def test_not_json_is_left_to_the_general_path() -> None:
    model = trained("adagrad", "exact")
    assert scores_of_json(model, b"", **LIMITS) is None
    assert scores_of_json(model, b'{"indptr": [0, 1], "indices": [3', **LIMITS) is None


def test_an_empty_batch_has_no_scores() -> None:
    model = trained("adagrad", "exact")
    scores = scores_of_json(model, body(indptr=[0], indices=[], values=[]), **LIMITS)
    assert scores is not None and scores[0].shape == scores[1].shape == (0,)


def test_reading_never_changes_the_model() -> None:
    model = trained("adam", "exact")
    before = (model.table.tobytes(), model.counters.tobytes(), model.step)
    scores_of_json(model, body(indptr=[0, 1], indices=[7], values=[2.0]), **LIMITS)
    assert (model.table.tobytes(), model.counters.tobytes(), model.step) == before
