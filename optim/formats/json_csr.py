"""A JSON CSR body: ``{"indptr": [...], "indices": [...], "values": [...], "labels": [...],
"weights": [...]}`` (labels and weights optional or null, keys in any order), read by a compiled
fast path (see :mod:`optim.formats._json_tokens` for what it accepts; anything else is ``None``,
and the caller reads the body with ``orjson``).

:func:`read_csr` gives the arrays. :func:`scores_of_json` is predict's fused path: for a body of a
few rows, reading, checking and scoring are one compiled call, ``scores_of_json`` of the model's
generated kernels (:mod:`optim.kernels`), composed from the template
:mod:`optim.formats._json_scores` and the model's own scoring loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba as nb
import numpy as np

from optim.formats._json_tokens import (
    ENABLED,
    EXACT_INT,
    K_INDICES,
    K_INDPTR,
    K_LABELS,
    K_VALUES,
    K_WEIGHTS,
    floats,
    ints,
    is_ws,
    literal,
    load8,
    word_key,
)

if TYPE_CHECKING:
    from optim.model import OnlineLogisticRegression

# the keys of a body of features only, the one shape predict's fused path scores
CSR_ARRAYS_ONLY = (1 << K_INDPTR) | (1 << K_INDICES) | (1 << K_VALUES)


@nb.njit(nogil=True, cache=True)
def _key(buf, p, first, last, nl):
    """The key whose opening quote is at ``p`` (among keys ``first..last``), then its ':' and
    whitespace: (key or -1, position of its value)."""
    if buf[p] != 34 or p + 9 > buf.shape[0]:
        return -1, p
    key, m = word_key(load8(buf, p + 1), first, last)
    if key < 0:
        return -1, p
    p += m + 1
    c = buf[p]
    while is_ws(c, nl):
        p += 1
        c = buf[p]
    if c != 58:
        return -1, p
    p += 1
    c = buf[p]
    while is_ws(c, nl):
        p += 1
        c = buf[p]
    return key, p


@nb.njit(nogil=True, cache=True)
def _open_array(buf, p):
    """Past the '[' at ``p`` and whitespace: (p, whether the array is empty: p past its ']')."""
    p += 1
    c = buf[p]
    while is_ws(c, True):
        p += 1
        c = buf[p]
    if c == 93:
        return p + 1, True
    return p, False


@nb.njit(nogil=True, cache=True)
def _capacity(p, end, hint):
    """Room for an array from ``p``: ``hint`` (its expected length) if plausible (numbers take
    2 bytes or more), else a guess (the array grows)."""
    if 0 <= hint <= (end - p) // 2:
        return max(hint, 16)
    return min(max(16, (end - p) // 2), 1 << 12)


@nb.njit(nogil=True, cache=True)
def _int_array(buf, p, end, hint):
    """The integers of the array whose '[' is at ``p``: (handled, array, p past its ']')."""
    p, empty = _open_array(buf, p)
    out = np.empty(_capacity(p, end, hint), dtype=np.int64)
    if empty:
        return True, out[:0], p
    k = 0
    while True:
        code, k, p = ints(buf, p, out, k, EXACT_INT, True)
        if code != 2:
            break
        grown = np.empty(2 * out.shape[0], dtype=np.int64)
        grown[:k] = out[:k]
        out = grown
    if code != 0:
        return False, out[:0], p
    return True, (out[:k].copy() if 2 * k < out.shape[0] else out[:k]), p


@nb.njit(nogil=True, cache=True)
def _float_array(buf, p, end, exact, hint):
    """The numbers of the array whose '[' is at ``p``: (handled, array, p past its ']', fixups:
    rows of (position, token start, token end) to re-read exactly)."""
    p, empty = _open_array(buf, p)
    out = np.empty(_capacity(p, end, hint), dtype=np.float64)
    fixes = np.empty((16, 3), dtype=np.int64)
    if empty:
        return True, out[:0], p, fixes[:0]
    k = 0
    nfix = 0
    while True:
        code, k, p, nfix = floats(buf, p, out, k, exact, True, fixes, nfix)
        if code == 2:
            grown = np.empty(2 * out.shape[0], dtype=np.float64)
            grown[:k] = out[:k]
            out = grown
        elif code == 3:
            grown_fixes = np.empty((2 * nfix, 3), dtype=np.int64)
            grown_fixes[:nfix] = fixes[:nfix]
            fixes = grown_fixes
        else:
            break
    if code != 0:
        return False, out[:0], p, fixes[:0]
    return True, (out[:k].copy() if 2 * k < out.shape[0] else out[:k]), p, fixes[:nfix]


@nb.njit(nogil=True, cache=True)
def csr_body(buf):
    """(handled, indptr, indices, values, labels, weights, present, fixes): ``present`` has the
    bit of each key given an array (not null); ``fixes`` rows are (key, position, token start,
    token end) of the approximate values."""
    empty_i = np.empty(0, dtype=np.int64)
    empty_f = np.empty(0, dtype=np.float64)
    all_fixes = np.empty((0, 4), dtype=np.int64)
    indptr, indices, values, labels, weights = empty_i, empty_i, empty_f, empty_f, empty_f
    end = buf.shape[0] - 1
    while end >= 0 and is_ws(buf[end], True):
        end -= 1
    # buf[end] == '}' stops every scan: nothing reads past it but whole-word loads
    if end < 1 or buf[end] != 125:
        return False, indptr, indices, values, labels, weights, 0, all_fixes
    p = 0
    while is_ws(buf[p], True):
        p += 1
    if buf[p] != 123:
        return False, indptr, indices, values, labels, weights, 0, all_fixes
    p += 1
    while is_ws(buf[p], True):
        p += 1
    seen = 0
    present = 0
    ok = True
    n_rows = -1  # unknown (until indptr is read)
    nnz = -1
    while True:
        key, p = _key(buf, p, K_INDPTR, K_WEIGHTS, True)
        if key < 0 or seen & (1 << key):
            ok = False
            break
        seen |= 1 << key
        if buf[p] != 91:
            code, m = literal(buf, p)
            if code != 2 or key < K_LABELS:  # null: absent (labels and weights only)
                ok = False
                break
            p += m
        elif key <= K_INDICES:
            ok, arr, p = _int_array(buf, p, end, nnz if key == K_INDICES else -1)
            if not ok:
                break
            if key == K_INDPTR:
                indptr = arr
                if arr.shape[0]:  # sizes of the other arrays, when indptr comes first
                    n_rows = arr.shape[0] - 1
                    nnz = arr[-1]
            else:
                indices = arr
            present |= 1 << key
        else:
            hint = nnz if key == K_VALUES else n_rows
            ok, farr, p, fixes = _float_array(buf, p, end, key == K_LABELS, hint)
            if not ok:
                break
            if key == K_VALUES:
                values = farr
            elif key == K_LABELS:
                labels = farr
            else:
                weights = farr
            present |= 1 << key
            if fixes.shape[0]:
                grown = np.empty((all_fixes.shape[0] + fixes.shape[0], 4), dtype=np.int64)
                grown[: all_fixes.shape[0]] = all_fixes
                grown[all_fixes.shape[0] :, 0] = key
                grown[all_fixes.shape[0] :, 1:] = fixes
                all_fixes = grown
        while is_ws(buf[p], True):
            p += 1
        c = buf[p]
        if c == 125:
            p += 1
            break
        if c != 44:
            ok = False
            break
        p += 1
        while is_ws(buf[p], True):
            p += 1
    need = (1 << K_INDPTR) | (1 << K_INDICES) | (1 << K_VALUES)
    if not ok or p != end + 1 or (present & need) != need:
        return False, indptr, indices, values, labels, weights, 0, all_fixes
    return True, indptr, indices, values, labels, weights, present, all_fixes


def read_csr(
    data: bytes,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None] | None:
    """``(indptr, indices, values, labels, weights)`` of a CSR body (labels/weights ``None`` when
    absent or null), or ``None`` when the body is not one this fast path handles."""
    if not ENABLED:
        return None
    handled, indptr, indices, values, labels, weights, present, fixes = csr_body(
        np.frombuffer(data, dtype=np.uint8)
    )
    if not handled:
        return None
    if fixes.shape[0]:
        arrays = {K_VALUES: values, K_LABELS: labels, K_WEIGHTS: weights}
        for key, k, start, stop in fixes.tolist():
            arrays[key][k] = float(data[start:stop])  # exact; finite (see _json_tokens.SAFE_MAX)
    return (
        indptr,
        indices,
        values,
        labels if present & (1 << K_LABELS) else None,
        weights if present & (1 << K_WEIGHTS) else None,
    )


def scores_of_json(
    model: OnlineLogisticRegression, data: bytes, *, max_rows: int, max_nnz: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(margins, probabilities)`` of a JSON body ``{"indptr": [...], "indices": [...],
    "values": [...]}`` read, checked and scored by ``model`` in one compiled call (for a few
    rows the general path's steps cost more than the scoring); the same numbers as
    ``model.decision_function`` of that batch and :func:`~optim.metrics.probabilities` of them.

    ``None`` when the body is anything else: other keys or formats, rows that are unsorted or
    repeat an index, more than ``max_rows`` rows or ``max_nnz`` non-zeros, numbers the reader
    does not parse exactly, an invalid batch, a margin that is not finite, or a model without
    compiled scoring (``compiled_scoring()`` is None: optimizer auto). Build a
    :class:`~optim.batch.Batch` then; it reports or canonicalizes what this left. Never changes
    the model.
    """
    if not ENABLED:
        return None
    compiled = model.compiled_scoring()
    if compiled is None:  # a model whose predictions are not one linear model's (a portfolio)
        return None
    kernels, state = compiled
    handled, scores = kernels.scores_of_json(
        *state, np.frombuffer(data, dtype=np.uint8), max_rows, max_nnz
    )
    return (scores[0], scores[1]) if handled else None
