"""A validated CSR batch: what a learner eats.

``Batch`` holds ``indptr``, ``indices``, ``values``, optional ``labels`` (0/1) and optional
importance ``weights``. Every constructor validates everything before the batch exists, so a
learner never sees half-valid input, and duplicate coordinates inside a row are summed (as
``scipy.sparse`` does) so the gradient of a coordinate is taken once per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba as nb
import numpy as np

from optim.errors import BatchError
from optim.features import FeatureOptions
from optim.hashing import FeatureHasher

if TYPE_CHECKING:  # imported where used: text input (adaserve train) starts without scipy
    import scipy.sparse as sp


@nb.njit(nogil=True, cache=True)
def _rows_canonical(indptr: np.ndarray, indices: np.ndarray) -> bool:
    for i in range(indptr.shape[0] - 1):
        ok = True
        for p in range(indptr[i] + 1, indptr[i + 1]):
            ok &= indices[p] > indices[p - 1]  # no early exit: the loop vectorizes
        if not ok:
            return False
    return True


@nb.njit(nogil=True, cache=True)
def _stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="mergesort")`` (the same permutation: a stable merge sort),
    bottom-up. numba's own mergesort took ~3x as long to compile (2-8 s on a fresh install,
    which the first update of named rows waited for)."""
    n = keys.shape[0]
    order = np.arange(n)
    merged = np.empty(n, dtype=order.dtype)
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid, hi = min(lo + width, n), min(lo + 2 * width, n)
            i, j = lo, mid
            for k in range(lo, hi):
                if j >= hi or (i < mid and keys[order[i]] <= keys[order[j]]):
                    merged[k] = order[i]
                    i += 1
                else:
                    merged[k] = order[j]
                    j += 1
        order, merged = merged, order
        width *= 2
    return order


@nb.njit(nogil=True, cache=True)
def _sum_duplicates(
    indptr: np.ndarray, indices: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out_indptr = np.zeros_like(indptr)
    out_indices = np.empty_like(indices)
    out_values = np.empty_like(values)
    n = 0
    for i in range(indptr.shape[0] - 1):
        start, stop = indptr[i], indptr[i + 1]
        order = _stable_order(indices[start:stop])
        row_start = n
        for q in order:
            j = indices[start + q]
            if n > row_start and out_indices[n - 1] == j:
                out_values[n - 1] += values[start + q]
            else:
                out_indices[n] = j
                out_values[n] = values[start + q]
                n += 1
        out_indptr[i + 1] = n
    return out_indptr, out_indices[:n].copy(), out_values[:n].copy()


CANONICAL, UNSORTED, INVALID = 0, 1, 2


@nb.njit(nogil=True, cache=True)
def _csr_status(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, dim: int) -> int:
    """One compiled pass over typed CSR arrays: ``INVALID`` when anything is wrong (the checking
    path then names it), else whether every row's indices strictly increase."""
    nnz = indices.shape[0]
    if indptr.shape[0] == 0 or indptr[0] != 0 or indptr[-1] != nnz or values.shape[0] != nnz:
        return INVALID
    ok = True
    for p in range(nnz):  # no early exit: the loop vectorizes
        ok &= (indices[p] >= 0) & (indices[p] < dim) & np.isfinite(values[p])
    if not ok:
        return INVALID
    for i in range(indptr.shape[0] - 1):
        if indptr[i + 1] < indptr[i]:
            return INVALID
    # indptr now rises from 0 to nnz: every row's range lies in the arrays
    return CANONICAL if _rows_canonical(indptr, indices) else UNSORTED


def _typed(data: object, dtype: type) -> bool:
    return isinstance(data, np.ndarray) and data.dtype == dtype and data.ndim == 1


def _flat_numbers(data: object, dtype: type) -> object:
    """A flat list of numbers (as JSON bodies bring) as the array numpy makes of it, in
    ``dtype`` when that is exact (ints as float64; int64 only from ints), so the one-call check
    takes it; anything else (strings, nesting, None, huge integers) unchanged, for the checking
    path's per-entry messages, which convert lists the same way."""
    if not isinstance(data, list):
        return data
    try:
        array = np.array(data)
    except (ValueError, TypeError, OverflowError):
        return data
    if array.ndim != 1 or array.dtype.kind not in "if":
        return data
    return array.astype(dtype) if array.dtype.kind == "i" or dtype is np.float64 else array


@nb.njit(cache=True)  # holds the GIL: see optim.metrics._score
def largest_magnitude(values: np.ndarray) -> float:
    """``max(|v|)`` over the values (0 for none) in one compiled pass."""
    largest = 0.0
    for v in values:
        largest = max(largest, abs(v))
    return largest


def row_containing(indptr: np.ndarray, position: int) -> int:
    return int(np.searchsorted(indptr, position, side="right") - 1)


def _first_bad(mask: np.ndarray) -> int | None:
    if not mask.any():  # the usual answer, and much cheaper than flatnonzero on small arrays
        return None
    return int(np.flatnonzero(mask)[0])


_NUMBER = (bool, np.bool_, int, float, np.integer, np.floating)


def _as_list(name: str, data: object) -> list:
    """``data`` (a sequence or numpy array) as a list, or a BatchError if it is not one."""
    if isinstance(data, str | bytes | Mapping):
        raise BatchError(f"must be a list, got {type(data).__name__}", field=name)
    try:
        seq = data.tolist() if isinstance(data, np.ndarray) else list(data)  # type: ignore[call-overload]
    except TypeError:
        raise BatchError(f"must be a list, got {type(data).__name__}", field=name) from None
    if not isinstance(seq, list):  # a zero-dimensional array
        raise BatchError(f"must be a list, got a scalar {seq!r}", field=name)
    return seq


def _numeric(name: str, data: object, row_of: callable) -> np.ndarray:  # type: ignore[valid-type]
    """``data`` as a 1-D float64 array, or a BatchError naming the first non-numeric entry."""
    if isinstance(data, np.ndarray) and data.ndim != 1:
        raise BatchError(f"must be one-dimensional, got shape {data.shape}", field=name)
    fast = data
    if isinstance(data, list):
        # JSON bodies arrive as lists: convert in one call; anything unusual (strings, None,
        # nesting, integers past int64) gives a non-numeric dtype and takes the checking path.
        try:
            fast = np.array(data) if data else np.zeros(0)
        except (ValueError, TypeError, OverflowError):  # ragged nesting and the like
            fast = data
    if isinstance(fast, np.ndarray) and fast.ndim == 1 and fast.dtype.kind in "biuf":
        arr = fast.astype(np.float64, copy=False)
    else:
        seq = _as_list(name, data)
        floats = []
        for p, item in enumerate(seq):
            if not isinstance(item, _NUMBER):
                raise BatchError(
                    f"must be numeric, got {item!r} at position {p}", row=row_of(p), field=name
                )
            try:
                floats.append(float(item))
            except OverflowError:
                raise BatchError(
                    f"must be finite, got an integer too large for a float at position {p}",
                    row=row_of(p),
                    field=name,
                ) from None
        arr = np.asarray(floats, dtype=np.float64)
    bad = _first_bad(~np.isfinite(arr))
    if bad is not None:
        raise BatchError(
            f"must be finite, got {arr[bad]!r} at position {bad}", row=row_of(bad), field=name
        )
    return arr


def _integral(name: str, data: object, row_of: callable) -> np.ndarray:  # type: ignore[valid-type]
    if isinstance(data, np.ndarray) and data.dtype.kind in "iu" and data.ndim == 1:
        return data.astype(np.int64, copy=False)
    arr = _numeric(name, data, row_of)
    bad = _first_bad(arr != np.floor(arr))
    if bad is not None:
        raise BatchError(
            f"must be integers, got {arr[bad]!r} at position {bad}", row=row_of(bad), field=name
        )
    if arr.size and (arr.max() >= 2**62 or arr.min() <= -(2**62)):
        bad = _first_bad(np.abs(arr) >= 2**62)
        raise BatchError(f"out of range at position {bad}", row=row_of(bad), field=name)
    return arr.astype(np.int64)


def _labels(data: object, n_rows: int) -> np.ndarray:
    try:  # the common case in one vectorized step; anything else is checked one by one
        fast = np.asarray(data) if isinstance(data, list | np.ndarray) else None
    except (ValueError, TypeError, OverflowError):
        fast = None
    if fast is not None and fast.ndim == 1 and len(fast) == n_rows and fast.dtype.kind in "biuf":
        as_float = fast.astype(np.float64)
        if np.isin(as_float, (0.0, 1.0, -1.0)).all():
            return (as_float == 1.0).astype(np.float64)
    seq = _as_list("labels", data)
    if len(seq) != n_rows:
        raise BatchError(f"has {len(seq)} entries for {n_rows} rows", field="labels")
    out = np.empty(n_rows, dtype=np.float64)
    for i, y in enumerate(seq):
        if isinstance(y, bool | np.bool_):
            out[i] = float(y)
        elif isinstance(y, int | float | np.integer | np.floating) and y in (0, 1, -1):
            out[i] = 1.0 if y == 1 else 0.0
        else:
            raise BatchError(f"must be 0/1, -1/+1 or a boolean, got {y!r}", row=i, field="labels")
    return out


@dataclass(frozen=True, eq=False)
class Batch:
    """A validated CSR batch. Build it with one of the ``from_*`` constructors."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    labels: np.ndarray | None
    weights: np.ndarray | None
    dim: int
    feature_names: Mapping[str, int] | None = None
    # Which rows to hold out (score without learning), one bool a row; None: the model's
    # ``holdout_every`` decides (see ``OnlineLogisticRegression``).
    holdout: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return self.indptr.shape[0] - 1

    @property
    def nnz(self) -> int:
        return self.indices.shape[0]

    @classmethod
    def concatenated(cls, batches: Sequence[Batch]) -> Batch:
        """The rows of ``batches`` (validated, of one dim, all labelled or none) in order as one
        batch; weights of 1 for the rows of a batch without any when another has them."""
        first = batches[0]
        offsets = np.cumsum([0, *(b.nnz for b in batches[:-1])])
        pointers = [b.indptr[1:] + offset for b, offset in zip(batches, offsets, strict=True)]
        indptr = np.concatenate([first.indptr[:1], *pointers])
        labels = None if first.labels is None else np.concatenate([b.labels for b in batches])
        weights = None
        if any(b.weights is not None for b in batches):
            weights = np.concatenate(
                [np.ones(b.n_rows) if b.weights is None else b.weights for b in batches]
            )
        return cls(
            indptr, np.concatenate([b.indices for b in batches]),
            np.concatenate([b.values for b in batches]), labels, weights, first.dim,
        )  # fmt: skip

    @classmethod
    def from_arrays(
        cls,
        indptr: object,
        indices: object,
        values: object,
        labels: object | None = None,
        weights: object | None = None,
        *,
        dim: int,
        require_labels: bool = False,
    ) -> Batch:
        """Validate raw CSR arrays (lists or numpy arrays)."""
        status = INVALID
        indptr, indices = _flat_numbers(indptr, np.int64), _flat_numbers(indices, np.int64)
        values = _flat_numbers(values, np.float64)
        if _typed(indptr, np.int64) and _typed(indices, np.int64) and _typed(values, np.float64):
            # What a compiled reader gives: checked in one compiled call; any problem is
            # reported by the checking path below.
            status = _csr_status(indptr, indices, values, dim)
        if status == INVALID:
            indptr, indices, values, status = cls._checked_csr(indptr, indices, values, dim)
        n_rows = indptr.shape[0] - 1
        labels_arr = None if labels is None else _labels(labels, n_rows)
        if labels_arr is None and require_labels:
            raise BatchError("are required to learn", field="labels")
        weights_arr = None
        if weights is not None:
            weights_arr = _numeric("weights", weights, lambda p: p)
            if weights_arr.shape[0] != n_rows:
                raise BatchError(
                    f"has {weights_arr.shape[0]} entries for {n_rows} rows", field="weights"
                )
            bad = _first_bad(weights_arr < 0)
            if bad is not None:
                raise BatchError(
                    f"must be >= 0, got {weights_arr[bad]!r}", row=bad, field="weights"
                )
        if status == UNSORTED:
            indptr, indices, values = _sum_duplicates(indptr, indices, values)
            bad = _first_bad(~np.isfinite(values))
            if bad is not None:
                raise BatchError(
                    f"duplicates of index {indices[bad]} sum to a non-finite value",
                    row=row_containing(indptr, bad),
                    field="values",
                )
        return cls(indptr, indices, values, labels_arr, weights_arr, int(dim))

    @staticmethod
    def _checked_csr(
        indptr: object, indices: object, values: object, dim: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """The three arrays converted and checked one by one, raising a BatchError that names
        the first problem; with whether the rows are canonical."""
        indptr_arr = _integral("indptr", indptr, lambda p: p - 1 if p > 0 else None)
        if indptr_arr.size == 0:
            raise BatchError("must have at least one entry (0 for an empty batch)", field="indptr")
        if indptr_arr[0] != 0:
            raise BatchError(f"must start at 0, got {indptr_arr[0]}", field="indptr")
        bad = _first_bad(indptr_arr[1:] < indptr_arr[:-1])
        if bad is not None:
            raise BatchError(
                f"must not decrease: indptr[{bad + 1}]={indptr_arr[bad + 1]} < "
                f"indptr[{bad}]={indptr_arr[bad]}",
                row=bad,
                field="indptr",
            )

        def row_of(p: int) -> int:
            return row_containing(indptr_arr, p)

        indices_arr = _integral("indices", indices, row_of)
        values_arr = _numeric("values", values, row_of)
        if indices_arr.shape[0] != values_arr.shape[0]:
            raise BatchError(
                f"indices has {indices_arr.shape[0]} entries but values has {values_arr.shape[0]}",
                field="values",
            )
        if indptr_arr[-1] != indices_arr.shape[0]:
            raise BatchError(
                f"must end at the number of non-zeros ({indices_arr.shape[0]}), "
                f"got {indptr_arr[-1]}",
                field="indptr",
            )
        bad = None
        if indices_arr.size and (indices_arr.min() < 0 or indices_arr.max() >= dim):
            bad = _first_bad((indices_arr < 0) | (indices_arr >= dim))
        if bad is not None:
            raise BatchError(
                f"index {indices_arr[bad]} at position {bad} is outside [0, {dim})",
                row=row_of(bad),
                field="indices",
            )
        status = CANONICAL if _rows_canonical(indptr_arr, indices_arr) else UNSORTED
        return indptr_arr, indices_arr, values_arr, status

    @classmethod
    def from_scipy(
        cls,
        matrix: sp.spmatrix | sp.sparray,
        labels: object | None = None,
        weights: object | None = None,
        *,
        dim: int,
        require_labels: bool = False,
    ) -> Batch:
        """Validate a ``scipy.sparse`` matrix or array (any format; converted to CSR)."""
        import scipy.sparse as sp

        if not sp.issparse(matrix):
            raise BatchError(
                f"must be a scipy.sparse matrix, got {type(matrix).__name__}", field="X"
            )
        if matrix.ndim != 2:
            raise BatchError(f"must be two-dimensional, got shape {matrix.shape}", field="X")
        csr = sp.csr_array(matrix)
        if csr.shape[1] > dim:
            raise BatchError(f"has {csr.shape[1]} columns but the model has dim={dim}", field="X")
        return cls.from_arrays(
            csr.indptr,
            csr.indices,
            csr.data,
            labels,
            weights,
            dim=dim,
            require_labels=require_labels,
        )

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[Mapping[str, object]],
        labels: object | None = None,
        weights: object | None = None,
        *,
        hasher: FeatureHasher,
        require_labels: bool = False,
        features: FeatureOptions | None = None,
    ) -> Batch:
        """Hash rows of named features (``{"IQ": 120, "city": "paris"}``) into a batch (crosses
        and namespaces as ``features`` says: :mod:`optim.features`)."""
        if isinstance(rows, Mapping | str):
            raise BatchError("must be a list of rows", field="rows")
        indptr, indices, values, keys = hasher.hash_rows(rows, features)
        batch = cls.from_arrays(
            indptr, indices, values, labels, weights, dim=hasher.dim, require_labels=require_labels
        )
        return Batch(
            batch.indptr,
            batch.indices,
            batch.values,
            batch.labels,
            batch.weights,
            batch.dim,
            dict(zip(keys, indices.tolist(), strict=True)),
        )
