"""Batch validation: every malformed input raises a BatchError that names where and why, and a
rejected batch leaves the model it was given to byte-for-byte unchanged."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optim import Batch, BatchError, FeatureHasher, OnlineLogisticRegression

DIM = 8

# A good batch: 3 rows, 5 non-zeros, canonical rows.
INDPTR = [0, 2, 3, 5]
INDICES = [0, 3, 5, 1, 7]
VALUES = [1.0, -2.0, 0.5, 3.0, 1.5]
LABELS = [1, 0, 1]


def trained_model(dim: int = DIM) -> OnlineLogisticRegression:
    model = OnlineLogisticRegression("adam", dim=dim)
    model.learn(sp.csr_array(np.eye(3, dim)), [1, 0, 1])
    return model


def snapshot(model: OnlineLogisticRegression) -> tuple[Any, ...]:
    return (
        model.table.tobytes(),
        model.counters.tobytes(),
        model.step,
        model.metrics.rows,
        model.metrics.totals.tobytes(),
        model.metrics.ring.tobytes(),
        dict(model.feature_names),
    )


def assert_rejected_unchanged(learn: Callable[[OnlineLogisticRegression], object]) -> BatchError:
    """``learn(model)`` raises a BatchError and leaves a trained model byte-identical."""
    model = trained_model()
    before = snapshot(model)
    with pytest.raises(BatchError) as error:
        learn(model)
    assert snapshot(model) == before
    return error.value


def arrays_case(
    indptr: object = INDPTR,
    indices: object = INDICES,
    values: object = VALUES,
    labels: object = LABELS,
    weights: object = None,
) -> tuple[Callable[[], Batch], Callable[[OnlineLogisticRegression], object]]:
    """The same bad arrays given to ``Batch.from_arrays`` and (as a Batch) to a model."""

    def build() -> Batch:
        return Batch.from_arrays(indptr, indices, values, labels, weights, dim=DIM)

    def learn(model: OnlineLogisticRegression) -> object:
        return model.learn(build())

    return build, learn


def check_arrays(
    row: int | None,
    field: str,
    says: str | tuple[str, ...],
    *,
    via_scipy: bool = False,
    **bad: object,
) -> BatchError:
    build, learn = arrays_case(**bad)
    with pytest.raises(BatchError) as error:
        build()
    assert error.value.row == row
    assert error.value.field == field
    for phrase in (says,) if isinstance(says, str) else says:
        assert phrase in error.value.reason, error.value.reason
    assert_rejected_unchanged(learn)
    if via_scipy:
        # The same bad data reaching the model inside (values) or beside (labels, weights) a
        # scipy matrix, the model validating it itself.
        data = np.asarray(bad.get("values", VALUES), dtype=np.float64)
        matrix = sp.csr_array((data, INDICES, INDPTR), shape=(3, DIM))
        labels, weights = bad.get("labels", LABELS), bad.get("weights")
        again = assert_rejected_unchanged(lambda m: m.learn(matrix, labels, weights))
        assert (again.row, again.field) == (error.value.row, error.value.field)
    return error.value


def test_the_good_batch_is_accepted() -> None:
    batch = Batch.from_arrays(INDPTR, INDICES, VALUES, LABELS, [1.0, 2.0, 0.0], dim=DIM)
    assert batch.n_rows == 3 and batch.nnz == 5
    assert batch.labels.tolist() == [1.0, 0.0, 1.0]
    assert batch.weights.tolist() == [1.0, 2.0, 0.0]
    model = trained_model()
    model.learn(batch)
    assert model.step == 6


# ----------------------------------------------------------------- CSR structure
def test_indptr_not_starting_at_zero() -> None:
    check_arrays(None, "indptr", ("must start at 0", "got 1"), indptr=[1, 2, 3, 5])


def test_indptr_empty() -> None:
    check_arrays(None, "indptr", "at least one entry", indptr=[])


def test_indptr_decreasing() -> None:
    error = check_arrays(1, "indptr", "must not decrease", indptr=[0, 3, 2, 5])
    assert "indptr[2]=2 < indptr[1]=3" in error.reason


def test_indptr_not_ending_at_nnz() -> None:
    check_arrays(None, "indptr", ("number of non-zeros (5)", "got 4"), indptr=[0, 2, 3, 4])


def test_indptr_ending_past_nnz() -> None:
    check_arrays(None, "indptr", ("number of non-zeros (5)", "got 6"), indptr=[0, 2, 3, 6])


def test_indices_values_length_mismatch() -> None:
    check_arrays(None, "values", "indices has 5 entries but values has 4", values=VALUES[:4])


def test_negative_index() -> None:
    error = check_arrays(1, "indices", "outside [0, 8)", indices=[0, 3, -1, 1, 7])
    assert "index -1 at position 2" in error.reason


def test_index_at_dim() -> None:
    error = check_arrays(2, "indices", "outside [0, 8)", indices=[0, 3, 5, 1, DIM])
    assert f"index {DIM} at position 4" in error.reason


def test_index_far_beyond_dim() -> None:
    check_arrays(0, "indices", "outside", indices=[2**40, 3, 5, 1, 7])


def test_non_integer_index() -> None:
    error = check_arrays(0, "indices", ("must be integers", "1.5"), indices=[0, 1.5, 5, 1, 7])
    assert "position 1" in error.reason


def test_non_integer_index_in_a_float_array() -> None:
    indices = np.array([0, 3, 5, 1, 6.5])
    check_arrays(2, "indices", ("must be integers", "6.5"), indices=indices)


def test_non_numeric_index() -> None:
    check_arrays(1, "indices", ("must be numeric", "'3'"), indices=[0, 3, "3", 1, 7])


def test_indptr_non_integer() -> None:
    check_arrays(1, "indptr", ("must be integers", "2.5"), indptr=[0, 2, 2.5, 5])


# ----------------------------------------------------------------- values
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float32("nan")])
def test_non_finite_value(bad: float) -> None:
    values = [*VALUES[:3], bad, VALUES[4]]
    error = check_arrays(
        2, "values", ("must be finite", "position 3"), values=values, via_scipy=True
    )
    assert repr(float(bad)) in error.reason or "nan" in error.reason


def test_non_finite_value_in_a_numpy_array() -> None:
    values = np.array([1.0, np.inf, 0.5, 3.0, 1.5])
    check_arrays(
        0, "values", ("must be finite", "inf", "position 1"), values=values, via_scipy=True
    )


@pytest.mark.parametrize(
    "bad, shown", [("x", "'x'"), (None, "None"), ([1.0], "[1.0]"), (1 + 2j, "(1+2j)")]
)
def test_non_numeric_value(bad: object, shown: str) -> None:
    values = [*VALUES[:4], bad]
    check_arrays(2, "values", ("must be numeric", shown, "position 4"), values=values)


def test_complex_numpy_scalar_value_is_not_silently_truncated() -> None:
    values = [*VALUES[:4], np.complex128(1 + 2j)]
    check_arrays(2, "values", "must be numeric", values=values)


def test_object_array_with_a_string_value() -> None:
    values = np.array([1.0, 2.0, "x", 3.0, 1.5], dtype=object)
    check_arrays(1, "values", ("must be numeric", "'x'"), values=values)


def test_integer_too_large_for_a_float() -> None:
    values = [1.0, 10**400, 0.5, 3.0, 1.5]
    check_arrays(0, "values", ("must be finite", "too large", "position 1"), values=values)


def test_values_not_a_list() -> None:
    check_arrays(None, "values", "must be a list", values=3.0)
    check_arrays(None, "values", "must be a list", values="12345")


def test_two_dimensional_values() -> None:
    check_arrays(None, "values", "one-dimensional", values=np.ones((5, 1)))


def test_duplicates_summing_past_the_float_range() -> None:
    indptr, indices, values = [0, 1, 3], [0, 4, 4], [1.0, 1e308, 1e308]
    check_arrays(
        1,
        "values",
        ("duplicates of index 4", "non-finite"),
        indptr=indptr,
        indices=indices,
        values=values,
        labels=[0, 1],
    )


# ----------------------------------------------------------------- labels
@pytest.mark.parametrize("bad", [2, 0.5, "yes", None, math.nan, -2, [1]])
def test_bad_label(bad: object) -> None:
    error = check_arrays(
        1,
        "labels",
        ("must be 0/1, -1/+1 or a boolean", repr(bad)),
        labels=[1, bad, 0],
        via_scipy=True,
    )
    assert error.row == 1


@pytest.mark.parametrize(
    "labels, expected",
    [
        ([-1, 1, -1], [0, 1, 0]),
        ([0, 1, 1], [0, 1, 1]),
        ([True, False, True], [1, 0, 1]),
        ([1.0, -1.0, 0.0], [1, 0, 0]),
        (np.array([-1, 1, 1]), [0, 1, 1]),
        (np.array([True, False, False]), [1, 0, 0]),
        ([np.int8(-1), np.float32(1.0), np.bool_(True)], [0, 1, 1]),
    ],
)
def test_accepted_labels_map_to_zero_one(labels: object, expected: list[int]) -> None:
    batch = Batch.from_arrays(INDPTR, INDICES, VALUES, labels, dim=DIM)
    assert batch.labels.dtype == np.float64
    assert batch.labels.tolist() == expected


def test_signed_and_zero_one_labels_learn_the_same() -> None:
    a, b = trained_model(), trained_model()
    a.learn(Batch.from_arrays(INDPTR, INDICES, VALUES, [1, -1, 1], dim=DIM))
    b.learn(Batch.from_arrays(INDPTR, INDICES, VALUES, [True, False, True], dim=DIM))
    assert snapshot(a) == snapshot(b)


@pytest.mark.parametrize("labels", [[1, 0], [1, 0, 1, 0], []])
def test_labels_length_mismatch(labels: list[int]) -> None:
    check_arrays(
        None, "labels", f"has {len(labels)} entries for 3 rows", labels=labels, via_scipy=True
    )


def test_labels_not_a_list() -> None:
    check_arrays(None, "labels", "must be a list", labels=1, via_scipy=True)
    check_arrays(None, "labels", "must be a list", labels=np.array(1))


def test_missing_labels_cannot_learn() -> None:
    error = assert_rejected_unchanged(lambda m: m.learn(sp.csr_array(np.eye(3, DIM))))
    assert error.field == "labels" and "required" in error.reason
    assert Batch.from_arrays(INDPTR, INDICES, VALUES, dim=DIM).labels is None


# ----------------------------------------------------------------- weights
@pytest.mark.parametrize("bad", [-1.0, -1e-300, -np.inf])
def test_negative_weight(bad: float) -> None:
    field, says = ("weights", "must be >= 0") if np.isfinite(bad) else ("weights", "finite")
    check_arrays(2, field, says, weights=[1.0, 2.0, bad], via_scipy=True)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weight(bad: float) -> None:
    check_arrays(
        1, "weights", ("must be finite", "position 1"), weights=[1.0, bad, 1.0], via_scipy=True
    )


def test_non_numeric_weight() -> None:
    check_arrays(
        0, "weights", ("must be numeric", "None"), weights=[None, 1.0, 1.0], via_scipy=True
    )


@pytest.mark.parametrize("weights", [[1.0, 1.0], [1.0] * 4, []])
def test_weights_length_mismatch(weights: list[float]) -> None:
    check_arrays(
        None, "weights", f"has {len(weights)} entries for 3 rows", weights=weights, via_scipy=True
    )


def test_zero_weights_are_accepted() -> None:
    batch = Batch.from_arrays(INDPTR, INDICES, VALUES, LABELS, [0, 0, 0], dim=DIM)
    assert batch.weights.tolist() == [0.0, 0.0, 0.0]


# ----------------------------------------------------------------- named rows
def check_rows(rows: object, row: int | None, field: str, says: str, labels: object = None) -> None:
    hasher = FeatureHasher(DIM)
    n = len(rows) if isinstance(rows, list) else 1
    labels = [1] * n if labels is None else labels
    with pytest.raises(BatchError) as error:
        Batch.from_rows(rows, labels, hasher=hasher)  # type: ignore[arg-type]
    assert (error.value.row, error.value.field) == (row, field)
    assert says in error.value.reason, error.value.reason
    assert_rejected_unchanged(lambda m: m.learn(rows, labels))


def test_row_that_is_not_a_mapping() -> None:
    check_rows([{"a": 1}, ["a", 1]], 1, "features", "must map feature names to values")
    check_rows([{"a": 1}, {"b": 2}, "a=1"], 2, "features", "got str")


def test_rows_that_are_a_single_mapping() -> None:
    with pytest.raises(BatchError) as error:
        Batch.from_rows({"a": 1}, [1], hasher=FeatureHasher(DIM))  # type: ignore[arg-type]
    assert error.value.field == "rows"


def test_empty_feature_name() -> None:
    check_rows([{"a": 1}, {"": 1.0}], 1, "features", "non-empty strings")


def test_non_string_feature_name() -> None:
    check_rows([{3: 1.0}], 0, "features", "non-empty strings")


@pytest.mark.parametrize("bad, why", [(None, "NoneType"), ([1, 2], "list"), ({"x": 1}, "dict")])
def test_feature_value_of_the_wrong_type(bad: object, why: str) -> None:
    check_rows([{"a": 1}, {"b": 2, "c": bad}], 1, "features.c", "must be a number or a string")
    check_rows([{"c": bad}], 0, "features.c", why)


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, -math.inf, pytest.param(10**400, id="10**400")]
)
def test_non_finite_feature_value(bad: float) -> None:
    why = "too large" if isinstance(bad, int) else "must be finite"
    check_rows([{"a": 1}, {"a": 1}, {"b": bad}], 2, "features.b", why)


def test_bad_labels_with_named_rows() -> None:
    check_rows([{"a": 1}, {"b": 2}], 0, "labels", "must be 0/1", labels=["yes", 1])


# ----------------------------------------------------------------- duplicates
def scipy_canonical(indptr: object, indices: object, values: object, dim: int) -> sp.csr_array:
    indptr = np.asarray(indptr, dtype=np.int64)
    matrix = sp.csr_array(
        (np.asarray(values, dtype=np.float64), np.asarray(indices, dtype=np.int64), indptr),
        shape=(len(indptr) - 1, dim),
    )
    matrix.sum_duplicates()
    return matrix


def assert_same_as_scipy(batch: Batch, expected: sp.csr_array) -> None:
    got = sp.csr_array((batch.values, batch.indices, batch.indptr), shape=expected.shape)
    np.testing.assert_array_equal(got.toarray(), expected.toarray())
    np.testing.assert_array_equal(batch.indptr, expected.indptr)
    np.testing.assert_array_equal(batch.indices, expected.indices)
    np.testing.assert_array_equal(batch.values, expected.data)


def test_same_index_twice_in_a_row_is_summed() -> None:
    indptr, indices, values = [0, 3, 5], [4, 1, 4, 2, 2], [1.0, 2.0, 0.25, -1.0, 1.0]
    batch = Batch.from_arrays(indptr, indices, values, [1, 0], dim=DIM)
    assert batch.indptr.tolist() == [0, 2, 3]
    assert batch.indices.tolist() == [1, 4, 2]
    assert batch.values.tolist() == [2.0, 1.25, 0.0]
    assert_same_as_scipy(batch, scipy_canonical(indptr, indices, values, DIM))


def test_duplicates_in_a_scipy_matrix_are_summed() -> None:
    raw = sp.csr_array(
        (np.array([1.0, 2.0, 3.0]), np.array([2, 2, 0]), np.array([0, 3])), shape=(1, DIM)
    )
    batch = Batch.from_scipy(raw, [1], dim=DIM)
    assert batch.indices.tolist() == [0, 2] and batch.values.tolist() == [3.0, 3.0]


def test_names_hashing_to_one_coordinate_are_summed() -> None:
    hasher = FeatureHasher(1)
    rows = [{"a": 1.5, "b": 2.0, "c": "x"}, {"IQ": 120}, {}]
    batch = Batch.from_rows(rows, [1, 0, 1], hasher=hasher)
    assert batch.indptr.tolist() == [0, 1, 2, 2]
    assert batch.indices.tolist() == [0, 0]
    assert batch.values.tolist() == [4.5, 120.0]
    indptr, indices, values, _ = hasher.hash_rows(rows)
    assert_same_as_scipy(batch, scipy_canonical(indptr, indices, values, 1))
    assert batch.feature_names == {"a": 0, "b": 0, "c=x": 0, "IQ": 0}


def test_summed_duplicates_learn_like_one_entry() -> None:
    a, b = trained_model(), trained_model()
    a.learn(Batch.from_arrays([0, 3], [2, 5, 2], [1.0, 0.5, 2.0], [1], dim=DIM))
    b.learn(Batch.from_arrays([0, 2], [2, 5], [3.0, 0.5], [1], dim=DIM))
    assert snapshot(a) == snapshot(b)


def test_unsorted_rows_are_sorted_as_scipy_does() -> None:
    indptr, indices, values = [0, 3, 3, 5], [6, 0, 3, 7, 1], [1.0, 2.0, 3.0, 4.0, 5.0]
    batch = Batch.from_arrays(indptr, indices, values, dim=DIM)
    assert_same_as_scipy(batch, scipy_canonical(indptr, indices, values, DIM))


# ----------------------------------------------------------------- scipy input
@pytest.mark.parametrize("kind", [sp.csr_matrix, sp.csr_array, sp.coo_matrix, sp.coo_array])
def test_scipy_input_formats(kind: type) -> None:
    dense = np.array([[1.0, 0, 0, 2.0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, -1.0]])
    batch = Batch.from_scipy(kind(dense), [1, 0], dim=DIM)
    assert batch.indptr.tolist() == [0, 2, 3]
    assert batch.indices.tolist() == [0, 3, 7]
    assert batch.values.tolist() == [1.0, 2.0, -1.0]


def test_coo_with_duplicates_is_summed() -> None:
    coo = sp.coo_array(([1.0, 2.0, 4.0], ([0, 0, 1], [3, 3, 0])), shape=(2, DIM))
    batch = Batch.from_scipy(coo, dim=DIM)
    assert batch.indices.tolist() == [3, 0] and batch.values.tolist() == [3.0, 4.0]


def test_fewer_columns_than_dim_are_accepted() -> None:
    batch = Batch.from_scipy(sp.csr_array(np.eye(2, 3)), dim=DIM)
    assert batch.dim == DIM and batch.indices.tolist() == [0, 1]


def check_scipy(matrix: object, field: str, says: str, labels: object = (1, 0)) -> None:
    with pytest.raises(BatchError) as error:
        Batch.from_scipy(matrix, list(labels), dim=DIM)  # type: ignore[arg-type]
    assert error.value.field == field
    assert says in error.value.reason, error.value.reason
    assert_rejected_unchanged(lambda m: m.learn(matrix, list(labels)))


def test_scipy_too_many_columns() -> None:
    check_scipy(sp.csr_array(np.eye(2, DIM + 1)), "X", f"has {DIM + 1} columns")
    check_scipy(sp.coo_matrix(np.eye(2, DIM + 1)), "X", "model has dim=8")


def test_scipy_non_finite_data() -> None:
    matrix = sp.csr_matrix(np.array([[1.0, 0, 0, 0, 0, 0, 0, 0], [0, np.nan, 0, 0, 0, 0, 0, 0]]))
    check_scipy(matrix, "values", "must be finite")


def test_scipy_bad_labels() -> None:
    check_scipy(sp.csr_array(np.eye(2, DIM)), "labels", "must be 0/1", labels=(1, 3))


def test_scipy_one_dimensional() -> None:
    with pytest.raises(BatchError) as error:
        Batch.from_scipy(sp.coo_array(np.ones(DIM)), dim=DIM)
    assert error.value.field == "X" and "two-dimensional" in error.value.reason


def test_dense_array_is_not_scipy() -> None:
    with pytest.raises(BatchError) as error:
        Batch.from_scipy(np.eye(2, DIM), dim=DIM)  # type: ignore[arg-type]
    assert error.value.field == "X" and "ndarray" in error.value.reason
    assert_rejected_unchanged(lambda m: m.learn(np.eye(2, DIM), [1, 0]))


def test_batch_for_another_dim() -> None:
    batch = Batch.from_arrays([0, 1], [0], [1.0], [1], dim=DIM + 1)
    error = assert_rejected_unchanged(lambda m: m.learn(batch))
    assert error.field == "X" and "dim=9" in error.reason


def test_error_message_names_row_and_field() -> None:
    with pytest.raises(BatchError) as error:
        Batch.from_arrays(INDPTR, INDICES, VALUES, [1, 2, 0], dim=DIM)
    assert str(error.value).startswith("row 1, field 'labels': ")
    assert error.value.where == {"row": 1, "field": "labels"}


# ----------------------------------------------------------------- properties
LABEL_VALUES = st.sampled_from([0, 1, -1, True, False])
FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=True)


@st.composite
def csr_batches(draw: st.DrawFn) -> dict[str, Any]:
    """Valid CSR arrays (duplicates and unsorted rows allowed; at most 16 entries a row, so
    scipy's std::sort is an insertion sort and sums duplicates in their given order)."""
    dim = draw(st.integers(1, 50))
    n_rows = draw(st.integers(0, 20))
    lengths = draw(st.lists(st.integers(0, 16), min_size=n_rows, max_size=n_rows))
    nnz = sum(lengths)
    indices = draw(st.lists(st.integers(0, dim - 1), min_size=nnz, max_size=nnz))
    values = draw(st.lists(FINITE, min_size=nnz, max_size=nnz))
    labels = draw(st.lists(LABEL_VALUES, min_size=n_rows, max_size=n_rows))
    weights = draw(
        st.none() | st.lists(st.floats(0, 10, allow_nan=False), min_size=n_rows, max_size=n_rows)
    )
    as_numpy = draw(st.booleans())
    indptr = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    out = {
        "dim": dim,
        "indptr": indptr if as_numpy else indptr.tolist(),
        "indices": np.array(indices, dtype=np.int64) if as_numpy else indices,
        "values": np.array(values, dtype=np.float64) if as_numpy else values,
        "labels": labels,
        "weights": weights,
    }
    return out


@settings(max_examples=150, deadline=None)
@given(csr_batches())
def test_valid_batches_build_like_scipy(case: dict[str, Any]) -> None:
    batch = Batch.from_arrays(
        case["indptr"],
        case["indices"],
        case["values"],
        case["labels"],
        case["weights"],
        dim=case["dim"],
    )
    expected = scipy_canonical(case["indptr"], case["indices"], case["values"], case["dim"])
    assert_same_as_scipy(batch, expected)
    assert batch.labels.tolist() == [float(y == 1) for y in case["labels"]]
    if case["weights"] is not None:
        assert batch.weights.tolist() == [float(w) for w in case["weights"]]


def _set(seq: list, position: int, value: object) -> list:
    out = list(seq)
    out[position] = value
    return out


CORRUPTIONS = [
    "indptr_start",
    "indptr_decrease",
    "indptr_end",
    "values_length",
    "index_negative",
    "index_dim",
    "index_fraction",
    "value_nan",
    "value_inf",
    "value_string",
    "value_none",
    "label_bad",
    "labels_length",
    "weight_negative",
    "weight_nonfinite",
    "weights_length",
]


@st.composite
def corrupted_batches(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    dim = DIM
    n_rows = draw(st.integers(1, 8))
    lengths = draw(st.lists(st.integers(0, 5), min_size=n_rows, max_size=n_rows))
    kind = draw(st.sampled_from(CORRUPTIONS))
    if kind in {"index_negative", "index_dim", "index_fraction"} or kind.startswith("value"):
        lengths[draw(st.integers(0, n_rows - 1))] += 1  # at least one entry to corrupt
    if kind == "indptr_decrease":
        lengths[draw(st.integers(0, n_rows - 1))] += 1
    nnz = sum(lengths)
    indptr = [0, *np.cumsum(lengths).tolist()]
    indices = draw(st.lists(st.integers(0, dim - 1), min_size=nnz, max_size=nnz))
    values: list[object] = draw(st.lists(FINITE, min_size=nnz, max_size=nnz))
    labels: list[object] = draw(st.lists(LABEL_VALUES, min_size=n_rows, max_size=n_rows))
    weights: list[object] = draw(
        st.lists(st.floats(0, 10, allow_nan=False), min_size=n_rows, max_size=n_rows)
    )
    entry = draw(st.integers(0, max(nnz - 1, 0)))
    row = draw(st.integers(0, n_rows - 1))
    if kind == "indptr_start":
        indptr = [p + draw(st.integers(1, 3)) for p in indptr]
    elif kind == "indptr_decrease":
        # Some row with entries gets a negative length, the total staying the same.
        i = next(i for i, n in enumerate(lengths) if n > 0)
        indptr = _set(indptr, i + 1, indptr[i] - 1 if indptr[i] > 0 else -1)
    elif kind == "indptr_end":
        indptr = _set(indptr, n_rows, nnz + draw(st.sampled_from([-1, 1, 2])))
        if nnz == 0 and indptr[-1] < 0:
            indptr[-1] = 1
    elif kind == "values_length":
        values = values[:-1] if values and draw(st.booleans()) else [*values, 1.0]
    elif kind == "index_negative":
        indices = _set(indices, entry, draw(st.integers(-(2**40), -1)))
    elif kind == "index_dim":
        indices = _set(indices, entry, draw(st.integers(dim, 2**40)))
    elif kind == "index_fraction":
        indices = _set(indices, entry, indices[entry] + 0.5)
    elif kind == "value_nan":
        values = _set(values, entry, math.nan)
    elif kind == "value_inf":
        values = _set(values, entry, draw(st.sampled_from([math.inf, -math.inf])))
    elif kind == "value_string":
        values = _set(values, entry, draw(st.text(max_size=3)))
    elif kind == "value_none":
        values = _set(values, entry, None)
    elif kind == "label_bad":
        bad = draw(st.sampled_from([2, 0.5, -0.5, "yes", None, math.nan, 3.0, "1"]))
        labels = _set(labels, row, bad)
    elif kind == "labels_length":
        labels = labels[:-1] if draw(st.booleans()) else [*labels, 1]
    elif kind == "weight_negative":
        weights = _set(weights, row, -draw(st.floats(1e-300, 1e300)))
    elif kind == "weight_nonfinite":
        weights = _set(weights, row, draw(st.sampled_from([math.nan, math.inf, -math.inf])))
    elif kind == "weights_length":
        weights = weights[:-1] if draw(st.booleans()) else [*weights, 1.0]
    as_numpy = draw(st.booleans()) and kind not in {"value_string", "value_none"}
    if as_numpy:
        indptr = np.array(indptr)
        values = np.array(values, dtype=np.float64)
    case = {
        "indptr": indptr,
        "indices": indices,
        "values": values,
        "labels": labels,
        "weights": weights,
    }
    return kind, case


SCIPY_ROUTE = {
    "value_nan",
    "value_inf",
    "label_bad",
    "labels_length",
    "weight_negative",
    "weight_nonfinite",
    "weights_length",
}


def expected_field(kind: str) -> str:
    if kind.startswith("indptr"):
        return "indptr"
    if kind.startswith("index"):
        return "indices"
    return {"value": "values", "label": "labels", "weigh": "weights"}[kind[:5]]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted_batches())
def test_one_corruption_is_always_rejected_and_changes_nothing(
    corrupted: tuple[str, dict[str, Any]],
) -> None:
    kind, case = corrupted
    model = trained_model()
    before = snapshot(model)
    with pytest.raises(BatchError) as error:
        model.learn(Batch.from_arrays(**case, dim=DIM))
    assert error.value.field == expected_field(kind), (kind, str(error.value))
    assert error.value.reason
    if kind in SCIPY_ROUTE:
        # The same corruption reaching the model inside a scipy matrix (values) or beside it.
        n_rows = len(case["indptr"]) - 1
        matrix = sp.csr_array(
            (np.asarray(case["values"], dtype=np.float64), case["indices"], case["indptr"]),
            shape=(n_rows, DIM),
        )
        with pytest.raises(BatchError) as again:
            model.learn(matrix, case["labels"], case["weights"])
        assert again.value.field == expected_field(kind)
    assert snapshot(model) == before


def _typed_or_none(data: object, dtype: type) -> np.ndarray | None:
    try:
        typed = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        return None
    return typed if typed.ndim == 1 and np.array_equal(typed, np.asarray(data)) else None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted_batches())
def test_typed_arrays_are_refused_like_lists(corrupted: tuple[str, dict[str, Any]]) -> None:
    # int64/float64 arrays (what the compiled readers make) take a one-call check whose every
    # refusal is reported by the checking path: the same error as for the lists.
    _, case = corrupted
    typed = dict(case)
    for key, dtype in (("indptr", np.int64), ("indices", np.int64), ("values", np.float64)):
        converted = _typed_or_none(case[key], dtype)
        if converted is None:
            return  # not representable as that array type: only the checking path sees it
        typed[key] = converted
    with pytest.raises(BatchError) as from_lists:
        Batch.from_arrays(**case, dim=DIM)
    with pytest.raises(BatchError) as from_arrays:
        Batch.from_arrays(**typed, dim=DIM)
    assert str(from_arrays.value) == str(from_lists.value)


def test_typed_indptr_pointing_past_the_arrays_is_refused() -> None:
    # A row range beyond nnz must be refused before any row's indices are read.
    indptr = np.array([0, 10**9, 5], dtype=np.int64)
    with pytest.raises(BatchError, match="must not decrease"):
        Batch.from_arrays(indptr, np.arange(5, dtype=np.int64), np.ones(5), dim=DIM)


def test_typed_unsorted_rows_are_summed_like_lists() -> None:
    indptr, indices, values = [0, 3, 5], [4, 1, 4, 2, 2], [1.0, 2.0, 3.0, 0.5, 0.25]
    typed = Batch.from_arrays(
        np.array(indptr), np.array(indices), np.array(values, dtype=np.float64), dim=DIM
    )
    lists = Batch.from_arrays(indptr, indices, values, dim=DIM)
    assert typed.indptr.tolist() == lists.indptr.tolist() == [0, 2, 3]
    assert typed.indices.tolist() == lists.indices.tolist() == [1, 4, 2]
    assert typed.values.tolist() == lists.values.tolist() == [2.0, 4.0, 0.75]
