"""Incremental, compiled parsers: a byte stream of text rows in, validated ``Batch`` objects out.

A :class:`StreamParser` turns a stream fed chunk by chunk (split anywhere: inside a number, between
``\\r`` and ``\\n``) into :class:`optim.batch.Batch` objects of at most ``max_rows_per_batch``
rows. ``feed`` parses the complete lines it has and keeps only the unterminated last one (parsed
rows are not held back, so a batch may be smaller); ``finish`` parses that last line. A line may
not exceed ``max_line_bytes``, so a parser holds at most one chunk plus one line whatever the
stream's size. :func:`parse_bytes` parses a whole buffer into one batch, :func:`iter_file_batches`
streams a file (a ``.gz`` path is decompressed) or a binary file object, and
:func:`concat_batches` joins batches. The libsvm, vw and criteo parsers are numba kernels over the
raw bytes, hashing included, compiled ``nogil`` (a server may run them in a worker thread); ndjson
rows of ``indices``/``values`` go through the compiled reader of :mod:`optim._json`, and any line
it does not handle (named features, errors, anything unusual) is decoded with ``orjson``.

Lines end with ``\\n`` or ``\\r\\n``. In every format a blank line and a line starting with
``#`` are skipped but counted in line numbers. Labels may be ``-1``/``+1`` or ``0``/``1`` (or any
number equal to those: ``1.0``, ``-1e0``) and are stored 0/1. They are required unless
``require_labels=False``: a batch then has ``labels`` only when every one of its rows had one. A
batch has ``weights`` only when one of its rows gave one (the others weigh 1). Rows come out as
``Batch.from_arrays`` makes them: indices sorted, duplicates summed (in the order of the line),
explicit zeros kept. Numbers are read exactly as Python's ``float`` reads them (exponents too; no
``inf``, ``nan`` or ``_``) and must be finite.

Formats
-------
``libsvm`` (svmlight)
    ``label idx:val idx:val ... [# comment]``. Indices are the coordinates as written (a 1-based
    file needs ``dim`` = its largest index + 1) and must lie in ``[0, dim)``. A ``qid:N`` token is
    ignored; ``#`` starts a comment anywhere. A line whose first token holds a ``:`` has no label.
``vw`` (Vowpal Wabbit text)
    ``label [importance] [tag]|ns feat[:value] feat ... |ns2:scale ...``. The importance (>= 0)
    becomes the row's weight. The tag (a token starting with ``'``, or the token touching the
    ``|``: in ``1|ns a`` the ``1`` is a tag) is ignored; a third number (VW's initial prediction)
    is refused. Feature ``f`` of namespace ``ns`` is coordinate ``murmurhash3_32("ns^f",
    hash_seed) % dim`` (key ``"f"`` when the namespace name is empty, as in ``| a b``): exactly
    ``FeatureHasher(dim, hash_seed).index("ns^f")``. Its value defaults to 1 and is multiplied by
    the namespace's scale (``|ns:2.0``, default 1). A line whose header has no number (``| a b``)
    has no label. ``#`` is a comment only at the start of a line.
``criteo`` (Criteo Display Advertising Challenge TSV)
    ``label<TAB>I1 ... I13<TAB>C1 ... C26``: exactly 40 tab-separated fields (39, without the
    label, when labels are not required), an empty field being missing. Integer column ``Ii``
    holding ``x`` is feature ``"Ii"`` with value ``log1p(x)`` (``-log1p(-x)`` for ``x < 0``);
    categorical column ``Cj`` holding ``h`` is feature ``"Cj=h"`` with value 1 (both hashed as
    above).
``ndjson``
    One JSON object per line, either ``{"features": {"IQ": 120, "city": "paris"}, "label": 1,
    "weight": 1.0}``, hashed as :meth:`optim.batch.Batch.from_rows` does (a number is feature
    ``name`` with that value, a string is feature ``name=value`` with value 1), or ``{"indices":
    [3, 17], "values": [0.5, 1], "label": 0}`` (``values`` optional: all 1). ``label`` and
    ``weight`` may be ``null`` (absent). Any other key is an error naming it.

Errors and atomicity
--------------------
A malformed line raises :class:`ParseError` (a :class:`optim.errors.BatchError`) with ``line``
(1-based, in the whole stream), ``row`` (the index its row would have had in the stream),
``field`` and a reason; the message reads ``line 12, field 'index': 99 is outside [0, 64)``.
Fields: ``label``, ``importance``, ``header``, ``features``, ``feature``, ``index``, ``value``,
``namespace``, ``fields``, ``I1``..``I13``, ``line`` (too long) and, for ndjson, ``json``,
``features``, ``features.<name>``, ``indices``, ``values``, ``weight`` or the unknown key.

The unit of atomicity is the line. The call that meets a bad line raises, and the exception's
``valid_before`` holds the batches of every valid row before the bad line in that call (they are
complete, validated and counted in ``rows_parsed``: the caller may learn them before reporting
the error). No row of a bad line is ever returned. The parser stays usable: the bad line is
consumed, the lines after it are kept, and the next ``feed`` (``feed(b"")`` to add nothing) or
``finish`` resumes right after it, so a caller may stop at the first error or skip bad lines. An
unterminated line is refused as soon as it grows past ``max_line_bytes``, and the rest of it is
dropped as it arrives. :func:`parse_bytes` puts every row before the bad line in ``valid_before``;
:func:`iter_file_batches` yields them, then raises.
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Iterator
from typing import IO, Any

import numba as nb
import numpy as np
import orjson

from optim.batch import Batch
from optim.errors import BatchError, ConfigError
from optim.hashing import FeatureHasher, _murmur3_32, feature_key

FORMATS = ("libsvm", "vw", "criteo", "ndjson")

__all__ = [
    "FORMATS",
    "ParseError",
    "StreamParser",
    "concat_batches",
    "iter_file_batches",
    "parse_bytes",
]


class ParseError(BatchError):
    """A malformed line: ``line`` (1-based), ``row``, ``field``, ``reason``, ``valid_before``."""

    def __init__(
        self,
        reason: str,
        *,
        line: int,
        field: str | None = None,
        row: int | None = None,
        valid_before: list[Batch] | None = None,
    ) -> None:
        super().__init__(reason, field=field, row=row)
        self.line = line
        self.valid_before: list[Batch] = list(valid_before or [])
        where = f"line {line}" + (f", field '{field}'" if field is not None else "")
        self.args = (f"{where}: {reason}",)

    @property
    def where(self) -> dict[str, int | str]:
        return {"line": self.line, **super().where}


# ---------------------------------------------------------------------------------------------
# Compiled scanning helpers
# ---------------------------------------------------------------------------------------------

_POW10 = np.array([10.0**k for k in range(23)])
_DBL_MAX = 1.7976931348623157e308
# a little over DBL_MAX: an approximate value beyond it surely overflows; one between DBL_MAX and it
# is re-read exactly (a fixup) and refused then if it overflows
_DBL_LIMIT = 1.7976931348624e308

# The slots of the ``state`` array a row reader keeps between calls: first the counters every
# reader keeps (these kernels and optim._json's NDJSON reader), then these kernels' error slots.
_I_POS, _I_LINES, _I_ROWS, _I_NNZ, _I_LABELED, _I_WEIGHTED, _I_FIXUPS, _I_CANON = range(8)
_N_COUNTERS = 8
_I_ERR, _I_TOK_START, _I_TOK_STOP, _I_EXTRA = 8, 9, 10, 11
_INFO_LEN = 12

# error codes
_E_LINE_TOO_LONG = 1
_E_LABEL_MISSING = 2
_E_LABEL = 3
_E_INDEX = 4
_E_INDEX_RANGE = 5
_E_VALUE = 6
_E_VALUE_RANGE = 7
_E_NO_COLON = 8
_E_IMPORTANCE = 9
_E_VW_EXTRA = 10
_E_VW_NO_BAR = 11
_E_VW_EMPTY_NAME = 12
_E_VW_SCALE = 13
_E_CRITEO_FIELDS = 14
_E_CRITEO_INT = 15


@nb.njit(inline="always")
def _is_space(c: np.uint8) -> bool:
    return c == 32 or c == 9 or c == 13 or c == 11 or c == 12


_TOKEN_END = np.zeros(256, dtype=np.bool_)
_TOKEN_END[[9, 10, 11, 12, 13, 32, 35]] = True  # whitespace, '\n', '#'


@nb.njit(inline="always")
def _ends_token(c: np.uint8) -> bool:
    """Whether a libsvm token may end before ``c`` (a space, the line's end or a comment)."""
    return _TOKEN_END[c]


@nb.njit(inline="always")
def _decimal_run(buf: np.ndarray, p: int, mant: int) -> tuple[int, int, int]:
    """The decimal digits from ``p`` appended to ``mant`` (wrapping past 18 digits: callers
    count the digits and read such a number carefully): (mant, their end, the byte there minus
    ord('0'), so -2 for '.', 10 for ':', 53 or 21 for 'e' or 'E')."""
    d = np.int64(buf[p]) - 48
    while 0 <= d <= 9:
        mant = mant * 10 + d
        p += 1
        d = np.int64(buf[p]) - 48
    return mant, p, d


@nb.njit(inline="always")
def _plain_decimal(buf: np.ndarray, p: int) -> tuple[int, int, int, int, int]:
    """Digits, then '.' and digits, from ``p`` read as one integer ``mant * 10**exp10``:
    (mant, the end, the byte there minus ord('0'), how many digits, exp10)."""
    mant, end, d = _decimal_run(buf, p, 0)
    digits = end - p
    exp10 = 0
    if d == -2:  # '.'
        fraction = end + 1
        mant, end, d = _decimal_run(buf, fraction, mant)
        exp10 = fraction - end
        digits -= exp10
    return mant, end, d, digits, exp10


@nb.njit(inline="always")
def _counters(state: np.ndarray) -> tuple[int, int, int, int, int, int, int, int]:
    """A row reader's counters where its last call left them: position, lines, rows, non-zeros,
    labelled rows, weighted rows, fixups, whether rows wait to be canonicalized."""
    return (
        state[_I_POS], state[_I_LINES], state[_I_ROWS], state[_I_NNZ], state[_I_LABELED],
        state[_I_WEIGHTED], state[_I_FIXUPS], state[_I_CANON],
    )  # fmt: skip


@nb.njit(inline="always")
def _store_counters(
    state: np.ndarray, p: int, lines: int, rows: int, n: int, labeled: int, weighted: int,
    nfix: int, canon: int,
) -> None:  # fmt: skip
    state[_I_POS] = p
    state[_I_LINES] = lines
    state[_I_ROWS] = rows
    state[_I_NNZ] = n
    state[_I_LABELED] = labeled
    state[_I_WEIGHTED] = weighted
    state[_I_FIXUPS] = nfix
    state[_I_CANON] = canon


@nb.njit(inline="always")
def _store_error(state: np.ndarray, err: int, es: int, ee: int, extra: int) -> None:
    state[_I_ERR] = err
    state[_I_TOK_START] = es
    state[_I_TOK_STOP] = ee
    state[_I_EXTRA] = extra


# VW byte classes: feature-name bytes, whitespace, the line's end, '|' and ':'
# (ordered so that "name or colon" is ``c <= _C_COLON`` and "end or '|'" is ``c >= _C_EOL``)
_C_NAME, _C_COLON, _C_SPACE, _C_EOL, _C_BAR = 0, 1, 2, 3, 4
_VW_CLASS = np.zeros(256, dtype=np.uint8)
_VW_CLASS[[9, 11, 12, 13, 32]] = _C_SPACE
_VW_CLASS[10] = _C_EOL
_VW_CLASS[124] = _C_BAR
_VW_CLASS[58] = _C_COLON


@nb.njit(nogil=True, cache=True)
def _vw_token_end(buf: np.ndarray, p: int) -> int:
    """The end of the VW token at ``p``: the next whitespace, '|' or line end."""
    c = _VW_CLASS[buf[p]]
    while c <= _C_COLON:
        p += 1
        c = _VW_CLASS[buf[p]]
    return p


@nb.njit(nogil=True, cache=True)
def _token_end(buf: np.ndarray, p: int) -> int:
    while not _ends_token(buf[p]):
        p += 1
    return p


@nb.njit(nogil=True, cache=True)
def _skip_line(buf: np.ndarray, p: int) -> int:
    """The position after the next '\\n' (there is always one)."""
    while buf[p] != 10:
        p += 1
    return p + 1


@nb.njit(nogil=True, cache=True)
def _find(buf: np.ndarray, s: int, e: int, byte: int) -> int:
    for k in range(s, e):
        if buf[k] == byte:
            return k
    return -1


@nb.njit(nogil=True, cache=True)
def _scan_float(buf: np.ndarray, p: int) -> tuple[float, int, int]:
    """Read the longest number at ``p`` (the buffer has a '\\n' after it): (value, end, status)
    with status 0 exact, 3 approximate (to be re-read exactly), 1 no number, 2 out of range."""
    start = p
    c = buf[p]
    neg = c == 45
    if neg or c == 43:
        p += 1
    mant, p, d, digits, exp10 = _plain_decimal(buf, p)  # past 18 digits: the slow path below
    if digits == 0:
        return 0.0, p, 1
    if d == 53 or d == 21:  # 'e' or 'E': leave it to the careful reader
        p += 1
        c = buf[p]
        if c == 45 or c == 43:
            p += 1
        first = p
        while 0 <= np.int64(buf[p]) - 48 <= 9:
            p += 1
        if p == first:
            return 0.0, p, 1
        v, status = _parse_float(buf, start, p)
        return v, p, status
    if digits <= 15 and exp10 >= -22:  # mant < 2**53: one correctly rounded division
        v = float(mant) / _POW10[-exp10]
        return (-v if neg else v), p, 0
    v, status = _parse_float(buf, start, p)
    return v, p, status


@nb.njit(nogil=True, cache=True)
def _compose(neg: bool, mant: int, exp10: int, dropped: bool) -> tuple[float, int]:
    """``(-1)**neg * mant * 10**exp10`` and a status (0 exact, 3 approximate, 2 out of range)."""
    if mant == 0:
        return (-0.0 if neg else 0.0), 0
    status = 0
    if not dropped and mant <= 9_007_199_254_740_992 and -22 <= exp10 <= 22:
        v = float(mant)  # exact, then one correctly rounded operation (Clinger's fast path)
        if exp10 >= 0:
            v *= _POW10[exp10]
        else:
            v /= _POW10[-exp10]
    else:
        status = 3
        if exp10 > 400:
            v = np.inf
        elif exp10 < -400:
            v = 0.0
        else:
            v = float(mant) * 10.0**exp10
    if neg:
        v = -v
    if not abs(v) <= _DBL_LIMIT:
        return v, 2
    return v, status


@nb.njit(nogil=True, cache=True)
def _parse_float(buf: np.ndarray, s: int, e: int) -> tuple[float, int]:
    """The float in ``buf[s:e]`` and a status: 0 exact, 3 approximate (to be re-read exactly),
    1 not a number, 2 out of the float64 range."""
    i = s
    neg = False
    if i < e and (buf[i] == 43 or buf[i] == 45):
        neg = buf[i] == 45
        i += 1
    mant = 0
    exp10 = 0
    digits = 0
    dropped = False
    while i < e:
        d = np.int64(buf[i]) - 48
        if d < 0 or d > 9:
            break
        digits += 1
        if mant < 100_000_000_000_000_000:
            mant = mant * 10 + d
        else:
            exp10 += 1
            dropped = dropped or d != 0
        i += 1
    if i < e and buf[i] == 46:
        i += 1
        while i < e:
            d = np.int64(buf[i]) - 48
            if d < 0 or d > 9:
                break
            digits += 1
            if mant < 100_000_000_000_000_000:
                mant = mant * 10 + d
                exp10 -= 1
            else:
                dropped = dropped or d != 0
            i += 1
    if digits == 0:
        return 0.0, 1
    if i < e and (buf[i] == 101 or buf[i] == 69):
        i += 1
        eneg = False
        if i < e and (buf[i] == 43 or buf[i] == 45):
            eneg = buf[i] == 45
            i += 1
        edigits = 0
        ev = 0
        while i < e:
            d = np.int64(buf[i]) - 48
            if d < 0 or d > 9:
                break
            edigits += 1
            if ev < 100_000:
                ev = ev * 10 + d
            i += 1
        if edigits == 0:
            return 0.0, 1
        exp10 += -ev if eneg else ev
    if i != e:
        return 0.0, 1
    return _compose(neg, mant, exp10, dropped)


@nb.njit(nogil=True, cache=True)
def _parse_index(buf: np.ndarray, s: int, e: int) -> tuple[int, int]:
    """The integer in ``buf[s:e]`` and a status: 0 ok, 1 not an integer, 2 negative or huge."""
    i = s
    neg = False
    if i < e and (buf[i] == 43 or buf[i] == 45):
        neg = buf[i] == 45
        i += 1
    if i == e:
        return 0, 1
    v = 0
    huge = False
    while i < e:
        d = np.int64(buf[i]) - 48
        if d < 0 or d > 9:
            return 0, 1
        if v < 100_000_000_000_000_000:
            v = v * 10 + d
        else:
            huge = True
        i += 1
    if huge or (neg and v != 0):
        return v, 2
    return v, 0


@nb.njit(nogil=True, cache=True)
def _parse_count(buf: np.ndarray, s: int, e: int) -> tuple[float, bool]:
    """The integer in ``buf[s:e]`` (as a float, any size) and whether it is one."""
    i = s
    neg = False
    if i < e and (buf[i] == 43 or buf[i] == 45):
        neg = buf[i] == 45
        i += 1
    if i == e:
        return 0.0, False
    x = 0.0
    while i < e:
        d = np.int64(buf[i]) - 48
        if d < 0 or d > 9:
            return 0.0, False
        x = x * 10.0 + d
        i += 1
    if not x <= _DBL_MAX:
        return 0.0, False
    return (-x if neg else x), True


@nb.njit(nogil=True, cache=True)
def _label_of(v: float, status: int) -> float:
    """0.0 / 1.0 for a label read as ``v``, or -1.0 when it is not -1, 0 or 1."""
    if status == 1 or status == 2:
        return -1.0
    if v == 1.0:
        return 1.0
    if v == 0.0 or v == -1.0:
        return 0.0
    return -1.0


_SMALL_ROW = 64  # rows up to this long are sorted by rank (branch-free, vectorized)


@nb.njit(nogil=True, cache=True)
def _canon_row(
    indices: np.ndarray, values: np.ndarray, rs: int, re: int, keys: np.ndarray, tmp: np.ndarray
) -> int:
    """Sort ``[rs, re)`` by index (stable) and sum duplicates in place; the row's new end.

    ``keys`` (int64) and ``tmp`` (float64) are scratch arrays of ``_SMALL_ROW`` entries.
    """
    for k in range(rs + 1, re):
        if indices[k] <= indices[k - 1]:
            break
    else:
        return re
    m = re - rs
    small = m <= keys.shape[0]
    if small:
        for k in range(m):
            j = indices[rs + k]
            small = small and j < 2_147_483_648
            keys[k] = (j << 32) | k  # index, then position: a stable order
            tmp[k] = values[rs + k]
    if small:
        for k in range(m):
            key = keys[k]
            rank = 0
            for q in range(m):
                rank += keys[q] < key
            indices[rs + rank] = key >> 32
            values[rs + rank] = tmp[k]
    else:
        order = np.argsort(indices[rs:re], kind="mergesort")
        idx = indices[rs:re].copy()
        val = values[rs:re].copy()
        for k in range(m):
            indices[rs + k] = idx[order[k]]
            values[rs + k] = val[order[k]]
    w = rs
    for k in range(rs, re):
        if w > rs and indices[w - 1] == indices[k]:
            values[w - 1] += values[k]
        else:
            indices[w] = indices[k]
            values[w] = values[k]
            w += 1
    return w


@nb.njit(nogil=True, cache=True)
def _canon_all(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> int:
    """Canonicalize every row in place (rows move left as duplicates merge); the new nnz."""
    keys = np.empty(_SMALL_ROW, dtype=np.int64)
    tmp = np.empty(_SMALL_ROW, dtype=np.float64)
    w = 0
    start = indptr[0]
    for r in range(indptr.shape[0] - 1):
        stop = indptr[r + 1]
        for k in range(start, stop):
            indices[w + k - start] = indices[k]
            values[w + k - start] = values[k]
        end = _canon_row(indices, values, w, w + stop - start, keys, tmp)
        indptr[r + 1] = end
        w = end
        start = stop
    return w


# ---------------------------------------------------------------------------------------------
# Compiled kernels. Each parses whole lines from state[_I_POS] up to ``stop`` into the arrays it
# is given (capacity: their lengths; never reallocated inside, which keeps the hot loops free of
# reference counting) and stops at ``stop``, at a full ``indptr``, at the first bad line (its
# error in ``state``) or when ``indices``/``fixes`` are full (_FULL: the caller grows them and
# calls again; the row in progress is rolled back). ``buf[stop - 1]`` is always '\n'. Rows
# holding an approximate value (a fixup) are left unsorted: Python re-reads the value exactly,
# then canonicalizes.
# ---------------------------------------------------------------------------------------------

_FULL = -1


@nb.njit(nogil=True, cache=True)
def _libsvm_rows(
    buf,
    stop,
    dim,
    require_labels,
    max_line_bytes,
    indptr,
    indices,
    values,
    labels,
    weights,
    fixes,
    fix_scale,
    state,
):
    p, lines, rows, n, labeled, weighted, nfix, canon = _counters(state)
    max_rows = indptr.shape[0] - 1
    keys = np.empty(_SMALL_ROW, dtype=np.int64)
    tmp = np.empty(_SMALL_ROW, dtype=np.float64)
    cap = indices.shape[0]
    fix_cap = fixes.shape[0]
    err = 0
    es = 0
    ee = 0
    extra = 0
    while p < stop and rows < max_rows:
        line_start = p
        c = buf[p]
        while _is_space(c):
            p += 1
            c = buf[p]
        if c == 10 or c == 35:  # blank line or comment
            p = _skip_line(buf, p)
            lines += 1
            if p - line_start - 1 > max_line_bytes:
                err = _E_LINE_TOO_LONG
                extra = p - line_start - 1
                break
            continue
        row_start = n
        fix_start = nfix
        # the label: the first token, unless it is a feature (holds ':')
        ts = p
        v, p, st = _scan_float(buf, p)
        lab = _label_of(v, st)
        if lab < 0 or not _ends_token(buf[p]):
            te = _token_end(buf, ts)
            colon = _find(buf, ts, te, 58)
            if colon < 0:
                err = _E_LABEL
                es = ts
                ee = te
            elif require_labels:
                err = _E_LABEL_MISSING
                es = ts
                ee = te
            p = ts
            lab = np.nan
        prev = -1
        ordered = True
        while err == 0:
            c = buf[p]
            while _is_space(c):
                p += 1
                c = buf[p]
            if c == 10 or c == 35:
                break
            ts = p
            idx = 0
            d = np.int64(c) - 48
            # The index and the value below are read by hand, not by _decimal_run and
            # _plain_decimal: this loop ran ~25% (index) and ~10% (value) slower with them.
            while 0 <= d <= 9:
                idx = idx * 10 + d
                p += 1
                d = np.int64(buf[p]) - 48
            if d != 10 or p == ts or p - ts > 18:  # not 1 to 18 digits then ':'
                te = _token_end(buf, ts)
                colon = _find(buf, ts, te, 58)
                if colon < 0:
                    err = _E_NO_COLON
                    es = ts
                    ee = te
                    break
                if colon - ts == 3 and buf[ts] == 113 and buf[ts + 1] == 105 and buf[ts + 2] == 100:
                    p = te  # qid:N
                    continue
                idx, st = _parse_index(buf, ts, colon)
                if st != 0:
                    err = _E_INDEX if st == 1 else _E_INDEX_RANGE
                    es = ts
                    ee = colon
                    break
                p = colon
            if idx >= dim:
                err = _E_INDEX_RANGE
                es = ts
                ee = p
                break
            # the value: plain decimals inline (a call costs as much as the parse), else the
            # general reader
            vs = p + 1
            p = vs
            mant = 0
            d = np.int64(buf[p]) - 48
            while 0 <= d <= 9:
                mant = mant * 10 + d
                p += 1
                d = np.int64(buf[p]) - 48
            nd = p - vs
            e10 = 0
            if d == -2:  # '.'
                p += 1
                fs = p
                d = np.int64(buf[p]) - 48
                while 0 <= d <= 9:
                    mant = mant * 10 + d
                    p += 1
                    d = np.int64(buf[p]) - 48
                e10 = fs - p
                nd -= e10
            if nd == 0 or nd > 15 or e10 < -22 or d == 53 or d == 21:
                v, p, st = _scan_float(buf, vs)
            else:
                v = float(mant) / _POW10[-e10]  # exact mant < 2**53: correctly rounded
                st = 0
            if st == 1 or st == 2 or not _ends_token(buf[p]):
                err = _E_VALUE_RANGE if st == 2 and _ends_token(buf[p]) else _E_VALUE
                es = vs
                ee = _token_end(buf, vs)
                break
            if n == cap:
                err = _FULL
                extra = 1
                break
            indices[n] = idx
            values[n] = v
            ordered = ordered and idx > prev
            prev = idx
            if st == 3:
                if nfix == fix_cap:
                    err = _FULL
                    extra = 2
                    break
                fixes[nfix, 0] = n
                fixes[nfix, 1] = vs
                fixes[nfix, 2] = p
                fix_scale[nfix] = 1.0
                fixes[nfix, 3] = lines + 1
                nfix += 1
            n += 1
        if err == _FULL:
            n = row_start
            nfix = fix_start
            p = line_start
            break
        p = _skip_line(buf, p)  # past a comment, then the '\n'
        lines += 1
        if err == 0 and p - line_start - 1 > max_line_bytes:
            err = _E_LINE_TOO_LONG
            extra = p - line_start - 1
        if err != 0:
            n = row_start
            nfix = fix_start
            break
        if nfix > fix_start:
            canon = 1
        elif not ordered:
            n = _canon_row(indices, values, row_start, n, keys, tmp)
        labels[rows] = lab
        if lab == lab:
            labeled += 1
        rows += 1
        indptr[rows] = n
    _store_counters(state, p, lines, rows, n, labeled, weighted, nfix, canon)
    _store_error(state, err, es, ee, extra)


@nb.njit(nogil=True, cache=True)
def _vw_rows(
    buf,
    stop,
    dim,
    seed,
    require_labels,
    max_line_bytes,
    indptr,
    indices,
    values,
    labels,
    weights,
    fixes,
    fix_scale,
    scratch,
    state,
):
    p, lines, rows, n, labeled, weighted, nfix, canon = _counters(state)
    max_rows = indptr.shape[0] - 1
    keys = np.empty(_SMALL_ROW, dtype=np.int64)
    tmp = np.empty(_SMALL_ROW, dtype=np.float64)
    cap = indices.shape[0]
    fix_cap = fixes.shape[0]
    udim = np.uint64(dim)
    err = 0
    es = 0
    ee = 0
    extra = 0
    while p < stop and rows < max_rows:
        line_start = p
        i = p
        c = _VW_CLASS[buf[i]]
        while c == _C_SPACE:
            i += 1
            c = _VW_CLASS[buf[i]]
        if c == _C_EOL or buf[i] == 35:  # blank line or comment
            p = _skip_line(buf, i)
            lines += 1
            if p - line_start - 1 > max_line_bytes:
                err = _E_LINE_TOO_LONG
                extra = p - line_start - 1
                break
            continue
        row_start = n
        fix_start = nfix
        # header: label [importance] [tag], up to the first '|'
        numbers = 0
        label = np.nan
        weight = 1.0
        while True:
            c = _VW_CLASS[buf[i]]
            while c == _C_SPACE:
                i += 1
                c = _VW_CLASS[buf[i]]
            if c >= _C_EOL:
                break
            ts = i
            while c <= _C_COLON:
                i += 1
                c = _VW_CLASS[buf[i]]
            if buf[ts] == 39 or c == _C_BAR:
                continue  # the tag: 'tag, or the token touching the '|'
            v, st = _parse_float(buf, ts, i)
            if numbers == 0:
                label = _label_of(v, st)
                if label < 0:
                    err = _E_LABEL
            elif numbers == 1:
                weight = v
                if st == 1 or st == 2 or not 0 <= v <= _DBL_MAX:  # an approximate read may be inf
                    err = _E_IMPORTANCE
            else:
                err = _E_VW_EXTRA
            if err != 0:
                es = ts
                ee = i
                break
            numbers += 1
        if err != 0 or c == _C_EOL:
            bar = i
            while buf[bar] != 10 and buf[bar] != 124:
                bar += 1
            if buf[bar] == 10:  # no '|' at all: say that rather than what the header lacks
                err = _E_VW_NO_BAR
                es = line_start
                ee = bar
        if err == 0 and numbers == 0 and require_labels:
            err = _E_LABEL_MISSING
            es = line_start
            ee = i
        # namespaces: '|name[:scale] features...'
        while err == 0 and c == _C_BAR:
            i += 1
            ns_s = i
            colon = -1
            c = _VW_CLASS[buf[i]]
            while c <= _C_COLON:
                if c == _C_COLON and colon < 0:
                    colon = i
                i += 1
                c = _VW_CLASS[buf[i]]
            ns_e = i
            scale = 1.0
            if colon >= 0:
                scale, st = _parse_float(buf, colon + 1, ns_e)
                if st == 1 or st == 2 or not abs(scale) <= _DBL_MAX:
                    err = _E_VW_SCALE
                    es = ns_s
                    ee = ns_e
                    break
                ns_e = colon
            ns_len = ns_e - ns_s
            for k in range(ns_len):
                scratch[k] = buf[ns_s + k]
            scratch[ns_len] = 94  # '^'
            while True:
                while c == _C_SPACE:
                    i += 1
                    c = _VW_CLASS[buf[i]]
                if c >= _C_EOL:
                    break
                ts = i
                while c == _C_NAME:
                    i += 1
                    c = _VW_CLASS[buf[i]]
                name_e = i
                if name_e == ts:
                    err = _E_VW_EMPTY_NAME
                    es = ts
                    ee = _vw_token_end(buf, ts)
                    break
                v = scale
                st = 0
                vs = i + 1
                if c == _C_COLON:
                    # plain decimals inline, anything else through the general reader
                    mant, i, _, nd, e10 = _plain_decimal(buf, vs)
                    c = _VW_CLASS[buf[i]]
                    if nd == 0 or nd > 15 or e10 < -22 or c <= _C_COLON:
                        i = _vw_token_end(buf, vs)
                        c = _VW_CLASS[buf[i]]
                        v, st = _parse_float(buf, vs, i)
                    else:
                        v = float(mant) / _POW10[-e10]
                    v *= scale  # exact IEEE product for exact v: what Python computes
                    if not abs(v) <= (_DBL_MAX if st == 0 else _DBL_LIMIT):
                        st = 2 if st != 1 else 1
                    if st == 1 or st == 2:
                        err = _E_VALUE if st == 1 else _E_VALUE_RANGE
                        es = vs
                        ee = i
                        break
                if ns_len == 0:
                    h = _murmur3_32(buf, ts, name_e, seed)
                else:
                    key_len = ns_len + 1
                    for k in range(ts, name_e):
                        scratch[key_len] = buf[k]
                        key_len += 1
                    h = _murmur3_32(scratch, 0, key_len, seed)
                if n == cap:
                    err = _FULL
                    extra = 1
                    break
                indices[n] = np.int64(h % udim)
                values[n] = v
                if st == 3:
                    if nfix == fix_cap:
                        err = _FULL
                        extra = 2
                        break
                    fixes[nfix, 0] = n
                    fixes[nfix, 1] = vs
                    fixes[nfix, 2] = i
                    fix_scale[nfix] = scale
                    fixes[nfix, 3] = lines + 1
                    nfix += 1
                n += 1
        if err == _FULL:
            n = row_start
            nfix = fix_start
            p = line_start
            break
        p = _skip_line(buf, i)
        lines += 1
        if err == 0 and p - line_start - 1 > max_line_bytes:
            err = _E_LINE_TOO_LONG
            extra = p - line_start - 1
        if err != 0:
            n = row_start
            nfix = fix_start
            break
        if nfix > fix_start:
            canon = 1
        else:
            n = _canon_row(indices, values, row_start, n, keys, tmp)
        labels[rows] = label
        if numbers > 0:
            labeled += 1
        weights[rows] = weight
        if numbers > 1:
            weighted += 1
        rows += 1
        indptr[rows] = n
    _store_counters(state, p, lines, rows, n, labeled, weighted, nfix, canon)
    _store_error(state, err, es, ee, extra)


@nb.njit(nogil=True, cache=True)
def _criteo_rows(
    buf,
    stop,
    dim,
    seed,
    require_labels,
    max_line_bytes,
    indptr,
    indices,
    values,
    labels,
    weights,
    fixes,
    fix_scale,
    scratch,
    int_index,
    prefixes,
    state,
):
    p, lines, rows, n, labeled, weighted, nfix, canon = _counters(state)
    max_rows = indptr.shape[0] - 1
    keys = np.empty(_SMALL_ROW, dtype=np.int64)
    tmp = np.empty(_SMALL_ROW, dtype=np.float64)
    cap = indices.shape[0]
    udim = np.uint64(dim)
    err = 0
    es = 0
    ee = 0
    extra = 0
    while p < stop and rows < max_rows:
        eol = p
        tabs = 0
        while buf[eol] != 10:
            if buf[eol] == 9:
                tabs += 1
            eol += 1
        if eol - p > max_line_bytes:
            lines += 1
            err = _E_LINE_TOO_LONG
            extra = eol - p
            p = eol + 1
            break
        e = eol
        if e > p and buf[e - 1] == 13:
            e -= 1
        i = p
        if i == e or buf[i] == 35:
            lines += 1
            p = eol + 1
            continue
        if n + 39 > cap:
            err = _FULL
            extra = 1
            break
        lines += 1
        p = eol + 1
        label = np.nan
        if tabs == 39:
            v_end = i
            while buf[v_end] != 9:
                v_end += 1
            v, st = _parse_float(buf, i, v_end)
            label = _label_of(v, st)
            if label < 0:
                err = _E_LABEL
                es = i
                ee = v_end
                break
            i = v_end + 1
        elif tabs != 38 or require_labels:
            err = _E_CRITEO_FIELDS
            extra = tabs + 1
            es = i
            ee = e
            break
        row_start = n
        for col in range(13):
            fs = i
            while i < e and buf[i] != 9:
                i += 1
            fe = i
            i += 1
            if fe == fs:
                continue
            x, ok = _parse_count(buf, fs, fe)
            if not ok:
                err = _E_CRITEO_INT
                extra = col + 1
                es = fs
                ee = fe
                break
            indices[n] = int_index[col]
            values[n] = np.log1p(x) if x >= 0 else -np.log1p(-x)
            n += 1
        if err != 0:
            n = row_start
            break
        for col in range(26):
            fs = i
            while i < e and buf[i] != 9:
                i += 1
            fe = i
            i += 1
            if fe == fs:
                continue
            plen = prefixes[col, 0]
            for k in range(plen):
                scratch[k] = prefixes[col, k + 1]
            key_len = plen
            for k in range(fs, fe):
                scratch[key_len] = buf[k]
                key_len += 1
            indices[n] = np.int64(_murmur3_32(scratch, 0, key_len, seed) % udim)
            values[n] = 1.0
            n += 1
        n = _canon_row(indices, values, row_start, n, keys, tmp)
        labels[rows] = label
        if label == label:
            labeled += 1
        rows += 1
        indptr[rows] = n
    _store_counters(state, p, lines, rows, n, labeled, weighted, nfix, canon)
    _store_error(state, err, es, ee, extra)


# ---------------------------------------------------------------------------------------------
# Python side
# ---------------------------------------------------------------------------------------------


def _token(data: Any, start: int, stop: int) -> str:
    text = bytes(data[start:stop]).decode("utf-8", errors="replace")
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(code: int, tok: str, extra: int, parser: StreamParser) -> tuple[str, str]:
    """(field, reason) of a kernel error code."""
    dim = parser.dim
    if code == _E_LINE_TOO_LONG:
        return (
            "line",
            f"line of {extra} bytes is longer than max_line_bytes={parser.max_line_bytes}",
        )
    if code == _E_LABEL_MISSING:
        hint = " (a token touching the '|' is a tag)" if parser.fmt == "vw" else ""
        return "label", (
            f"is missing{hint}: required to learn (read unlabeled rows with require_labels=False)"
        )
    if code == _E_LABEL:
        return "label", f"must be -1/+1 or 0/1, got {tok!r}"
    if code == _E_INDEX:
        return "index", f"must be a non-negative integer, got {tok!r}"
    if code == _E_INDEX_RANGE:
        return "index", f"{tok} is outside [0, {dim})"
    if code == _E_VALUE:
        return "value", f"must be a finite number, got {tok!r}"
    if code == _E_VALUE_RANGE:
        return "value", f"{tok!r} is out of the float64 range"
    if code == _E_NO_COLON:
        return "feature", f"expected index:value, got {tok!r}"
    if code == _E_IMPORTANCE:
        return "importance", f"must be a finite number >= 0, got {tok!r}"
    if code == _E_VW_EXTRA:
        return "header", (
            f"unexpected {tok!r} before '|': expected 'label [importance] [tag]' "
            "(an initial prediction is not supported)"
        )
    if code == _E_VW_NO_BAR:
        return "features", "no '|': a VW line is 'label [importance] [tag]|namespace features'"
    if code == _E_VW_EMPTY_NAME:
        return "feature", f"empty feature name in {tok!r}"
    if code == _E_VW_SCALE:
        return "namespace", f"scale must be a finite number, got {tok!r}"
    if code == _E_CRITEO_FIELDS:
        return "fields", f"expected 40 tab-separated fields (label, I1..I13, C1..C26), got {extra}"
    if code == _E_CRITEO_INT:
        return f"I{extra}", f"must be an integer, got {tok!r}"
    raise AssertionError(f"unknown parser error code {code}")  # pragma: no cover


_NDJSON_KEYS = frozenset(("features", "indices", "values", "label", "weight"))


class _RowError(Exception):
    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _ndjson_label(y: object) -> float | None:
    if y is None:
        return None
    if isinstance(y, bool):
        return float(y)
    if isinstance(y, int | float) and y in (0, 1, -1):
        return 1.0 if y == 1 else 0.0
    raise _RowError("label", f"must be -1/+1, 0/1 or a boolean, got {y!r}")


def _ndjson_number(field: str, x: object) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise _RowError(field, f"must be a number, got {x!r}")
    v = float(x)
    if not math.isfinite(v):
        raise _RowError(field, f"must be finite, got {x!r}")
    return v


# a run of ndjson rows: (indptr, indices (-1 where a named feature's key goes), values, labels
# (nan: none), weights, weighted, keys, their positions in indices, whether rows need sorting)
_NdjsonPart = tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    bool,
    list[str],
    np.ndarray | None,
    bool,
]


class StreamParser:
    """Parse a stream of text rows fed in chunks of bytes into validated batches."""

    def __init__(
        self,
        fmt: str,
        *,
        dim: int,
        hash_seed: int = 0,
        max_rows_per_batch: int = 10_000,
        max_line_bytes: int = 1 << 20,
        require_labels: bool = True,
    ) -> None:
        if fmt not in FORMATS:
            raise ConfigError(f"must be one of {', '.join(FORMATS)}, got {fmt!r}", field="format")
        self.hasher = FeatureHasher(dim, hash_seed)  # validates dim and seed
        for name, value in (
            ("max_rows_per_batch", max_rows_per_batch),
            ("max_line_bytes", max_line_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"must be a positive integer, got {value!r}", field=name)
        self.fmt = fmt
        self.dim = self.hasher.dim
        self.hash_seed = self.hasher.seed
        self.max_rows_per_batch = int(max_rows_per_batch)
        self.max_line_bytes = int(max_line_bytes)
        self.require_labels = bool(require_labels)
        self.lines_read = 0
        self.rows_parsed = 0
        self._buf = bytearray()
        self._skipping = False  # dropping the rest of a too-long line
        self._finished = False
        self._nnz_per_row = 40.0  # running estimates, to size the arrays of the next batch
        self._nnz_per_byte = 0.25
        self._ndjson_slow_lines = 1  # lines given to orjson after the compiled reader refuses one
        if fmt == "criteo":
            self._int_index = self.hasher.indices(f"I{i}" for i in range(1, 14))
            self._prefixes = np.zeros((26, 8), dtype=np.uint8)
            for j in range(26):
                prefix = f"C{j + 1}=".encode()
                self._prefixes[j, 0] = len(prefix)
                self._prefixes[j, 1 : 1 + len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held between calls (the unterminated last line, or lines after a bad one)."""
        return len(self._buf)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Batch]:
        """Parse the complete lines of what was fed so far; keep the unterminated last line."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if isinstance(chunk, str):
            raise TypeError("feed() takes bytes, not str")
        view = memoryview(chunk).cast("B")
        if self._skipping:
            newline = bytes(view).find(b"\n") if len(view) else -1
            if newline < 0:
                return []
            view = view[newline + 1 :]
            self._skipping = False
        self._buf += view
        stop = self._buf.rfind(b"\n") + 1
        batches = self._run(stop, [])
        if len(self._buf) > self.max_line_bytes:
            self.lines_read += 1
            size = len(self._buf)
            self._buf.clear()
            self._skipping = True
            raise ParseError(
                f"line of more than {size} bytes is longer than "
                f"max_line_bytes={self.max_line_bytes}",
                line=self.lines_read,
                field="line",
                row=self.rows_parsed,
                valid_before=batches,
            )
        return batches

    def finish(self) -> list[Batch]:
        """Parse what remains (an unterminated last line); the parser is closed after."""
        if self._finished:
            return []
        if self._skipping:
            self._buf.clear()
            self._skipping = False
        if self._buf and self._buf[-1] != 10:
            self._buf += b"\n"  # the kernels rely on every line ending with '\n'
        batches = self._run(len(self._buf), [])
        self._finished = True
        return batches

    # -- internals --------------------------------------------------------------------------

    def _run(self, stop: int, batches: list[Batch]) -> list[Batch]:
        """Parse ``self._buf[:stop]`` (whole lines) and drop it from the buffer."""
        pos = 0
        error: ParseError | None = None
        arr = np.frombuffer(self._buf, dtype=np.uint8)
        try:
            while pos < stop:
                max_rows = min(self.max_rows_per_batch, (stop - pos) // 2 + 1)
                batch, pos, lines, failure = self._step(arr, pos, stop, max_rows)
                if batch is not None:
                    batches.append(batch)
                    self.rows_parsed += batch.n_rows
                self.lines_read += lines
                if failure is not None:
                    field, reason = failure
                    error = ParseError(
                        reason,
                        line=self.lines_read,
                        field=field,
                        row=self.rows_parsed,
                        valid_before=batches,
                    )
                    break
        finally:
            del arr
            del self._buf[:pos]
        if error is not None:
            raise error
        return batches

    def _step(
        self, arr: np.ndarray, pos: int, stop: int, max_rows: int
    ) -> tuple[Batch | None, int, int, tuple[str | None, str] | None]:
        if self.fmt == "ndjson":
            return self._ndjson_step(arr, pos, stop, max_rows)
        state = np.zeros(_INFO_LEN, dtype=np.int64)
        state[_I_POS] = pos
        indptr = np.empty(max_rows + 1, dtype=np.int64)
        indptr[0] = 0
        labels = np.empty(max_rows, dtype=np.float64)
        weights = np.ones(max_rows if self.fmt == "vw" else 0, dtype=np.float64)
        expected = min(max_rows * self._nnz_per_row, (stop - pos) * self._nnz_per_byte)
        cap = int(expected * 1.2) + 64
        indices = np.empty(cap, dtype=np.int64)
        values = np.empty(cap, dtype=np.float64)
        fixes = np.empty((16, 4), dtype=np.int64)
        fix_scale = np.empty(16, dtype=np.float64)
        # where vw/criteo build hash keys: a key is at most a line (plus the '^')
        scratch = np.empty(
            0 if self.fmt == "libsvm" else min(stop - pos, self.max_line_bytes) + 64,
            dtype=np.uint8,
        )
        while True:
            if self.fmt == "libsvm":
                _libsvm_rows(
                    arr,
                    stop,
                    self.dim,
                    self.require_labels,
                    self.max_line_bytes,
                    indptr,
                    indices,
                    values,
                    labels,
                    weights,
                    fixes,
                    fix_scale,
                    state,
                )
            elif self.fmt == "vw":
                _vw_rows(
                    arr,
                    stop,
                    self.dim,
                    self.hash_seed,
                    self.require_labels,
                    self.max_line_bytes,
                    indptr,
                    indices,
                    values,
                    labels,
                    weights,
                    fixes,
                    fix_scale,
                    scratch,
                    state,
                )
            else:
                _criteo_rows(
                    arr,
                    stop,
                    self.dim,
                    self.hash_seed,
                    self.require_labels,
                    self.max_line_bytes,
                    indptr,
                    indices,
                    values,
                    labels,
                    weights,
                    fixes,
                    fix_scale,
                    scratch,
                    self._int_index,
                    self._prefixes,
                    state,
                )
            if state[_I_ERR] != _FULL:
                break
            state[_I_ERR] = 0
            if state[_I_EXTRA] == 1:  # indices/values full
                indices = np.concatenate([indices, np.empty_like(indices)])
                values = np.concatenate([values, np.empty_like(values)])
            else:  # fixups full
                fixes = np.concatenate([fixes, np.empty_like(fixes)])
                fix_scale = np.concatenate([fix_scale, np.empty_like(fix_scale)])
        rows, nnz, nfix = int(state[_I_ROWS]), int(state[_I_NNZ]), int(state[_I_FIXUPS])
        batch = None
        if rows:
            self._nnz_per_row = max(1.0, nnz / rows)
            self._nnz_per_byte = max(0.01, nnz / max(1, int(state[_I_POS]) - pos))
            indptr = indptr[: rows + 1]
            if nnz < 0.75 * indices.shape[0]:  # else keep the arrays: at most a quarter unused
                indices, values = indices[:nnz].copy(), values[:nnz].copy()
            else:
                indices, values = indices[:nnz], values[:nnz]
            for k in range(nfix):  # exact re-read of the rare approximate values
                entry, start, end, line = fixes[k]
                values[entry] = float(bytes(arr[start:end])) * float(fix_scale[k])
                if not math.isfinite(values[entry]):  # overflowed after all: the batch ends here
                    rows = int(np.searchsorted(indptr, entry, side="right")) - 1
                    indptr = indptr[: rows + 1]
                    nnz = int(indptr[-1])
                    indices, values, labels = indices[:nnz], values[:nnz], labels[:rows]
                    weights = weights[: rows if weights.shape[0] else 0]
                    state[_I_LABELED] = np.count_nonzero(~np.isnan(labels))
                    state[_I_LINES] = line
                    state[_I_POS] = self._buf.index(b"\n", int(end)) + 1
                    state[_I_ERR] = _E_VALUE_RANGE
                    state[_I_TOK_START], state[_I_TOK_STOP] = start, end
                    break
            if state[_I_CANON]:
                nnz = _canon_all(indptr, indices, values)
                indices, values = indices[:nnz], values[:nnz]
            if rows:
                batch = Batch(
                    indptr,
                    indices,
                    values,
                    labels[:rows] if state[_I_LABELED] == rows else None,
                    weights[:rows] if state[_I_WEIGHTED] else None,
                    self.dim,
                )
        failure = None
        if state[_I_ERR]:
            tok = _token(arr, int(state[_I_TOK_START]), int(state[_I_TOK_STOP]))
            failure = _describe(int(state[_I_ERR]), tok, int(state[_I_EXTRA]), self)
        return batch, int(state[_I_POS]), int(state[_I_LINES]), failure

    def _ndjson_step(
        self, arr: np.ndarray, pos: int, stop: int, max_rows: int
    ) -> tuple[Batch | None, int, int, tuple[str | None, str] | None]:
        """One batch: runs of lines through the compiled reader, each line it does not handle
        (named features, errors, anything unusual) through :meth:`_ndjson_row`."""
        parts: list[_NdjsonPart] = []
        rows = 0
        lines = 0
        failure = None
        while pos < stop and rows < max_rows:
            part, pos, n_lines, handled = self._ndjson_fast(arr, pos, stop, max_rows - rows)
            lines += n_lines
            if part is not None:
                parts.append(part)
                rows += part[0].shape[0] - 1
            if handled:
                continue
            # after a line the kernel refuses at once, give Python more lines (up to 1024) before
            # asking the kernel again: a stream of named features pays few kernel calls
            self._ndjson_slow_lines = 1 if n_lines else min(2 * self._ndjson_slow_lines, 1024)
            part, pos, n_lines, failure = self._ndjson_slow(
                pos, stop, max_rows - rows, self._ndjson_slow_lines
            )
            lines += n_lines
            if part is not None:
                parts.append(part)
                rows += part[0].shape[0] - 1
            if failure is not None:
                break
        return self._ndjson_batch(parts), pos, lines, failure

    def _ndjson_fast(
        self, arr: np.ndarray, pos: int, stop: int, max_rows: int
    ) -> tuple[_NdjsonPart | None, int, int, bool]:
        """Lines from ``pos`` through the compiled reader: (part, pos, lines, whether it stopped
        for a reason other than a line it does not handle, which is then at ``pos``)."""
        from optim import _json  # not at the top: optim._json imports this module

        if not _json.ENABLED:
            return None, pos, 0, False
        state = np.zeros(_json.S_LEN, dtype=np.int64)
        state[_json.S_POS] = pos
        indptr = np.empty(max_rows + 1, dtype=np.int64)
        indptr[0] = 0
        labels = np.empty(max_rows, dtype=np.float64)
        weights = np.empty(max_rows, dtype=np.float64)
        expected = min(max_rows * self._nnz_per_row, (stop - pos) * self._nnz_per_byte)
        cap = int(expected * 1.2) + 64
        indices = np.empty(cap, dtype=np.int64)
        values = np.empty(cap, dtype=np.float64)
        fixes = np.empty((16, 3), dtype=np.int64)
        while True:
            _json.ndjson_rows(
                arr,
                stop,
                self.dim,
                self.require_labels,
                self.max_line_bytes,
                indptr,
                indices,
                values,
                labels,
                weights,
                fixes,
                state,
            )
            status = state[_json.S_STATUS]
            if status == _json.S_FULL_INDICES:
                indices = np.concatenate([indices, np.empty_like(indices)])
                values = np.concatenate([values, np.empty_like(values)])
            elif status == _json.S_FULL_FIXES:
                fixes = np.concatenate([fixes, np.empty_like(fixes)])
            else:
                break
        rows, nnz = int(state[_json.S_ROWS]), int(state[_json.S_NNZ])
        new_pos = int(state[_json.S_POS])
        part = None
        if rows:
            self._nnz_per_row = max(1.0, nnz / rows)
            self._nnz_per_byte = max(0.01, nnz / max(1, new_pos - pos))
            if nnz < 0.75 * indices.shape[0]:  # else keep the arrays: at most a quarter unused
                indices, values = indices[:nnz].copy(), values[:nnz].copy()
            else:
                indices, values = indices[:nnz], values[:nnz]
            weights = weights[:rows]
            for entry, start, end in fixes[: state[_json.S_FIXUPS]].tolist():
                exact = float(self._buf[start:end])  # finite (see optim._json)
                if entry >= 0:
                    values[entry] = exact
                else:
                    weights[-1 - entry] = exact
            part = (
                indptr[: rows + 1],
                indices,
                values,
                labels[:rows],
                weights,
                bool(state[_json.S_WEIGHTED]),
                [],
                None,
                bool(state[_json.S_CANON]),
            )
        return part, new_pos, int(state[_json.S_LINES]), status != _json.S_NOT_HANDLED

    def _ndjson_slow(
        self, pos: int, stop: int, max_rows: int, max_lines: int
    ) -> tuple[_NdjsonPart | None, int, int, tuple[str | None, str] | None]:
        """Up to ``max_lines`` lines from ``pos`` decoded by ``orjson`` (:meth:`_ndjson_row`):
        (part, pos, lines, failure)."""
        data = self._buf
        indptr = [0]
        direct: list[int] = []  # coordinates, -1 where a hashed key goes
        values: list[float] = []
        key_pos: list[int] = []
        keys: list[str] = []
        labels: list[float] = []  # nan: no label
        weights: list[float] = []
        weighted = False
        lines = 0
        failure = None
        while pos < stop and len(labels) < max_rows and lines < max_lines:
            eol = data.find(b"\n", pos, stop)
            if eol < 0:
                eol = stop
            nxt = min(eol + 1, stop)
            lines += 1
            if eol - pos > self.max_line_bytes:
                failure = (
                    "line",
                    f"line of {eol - pos} bytes is longer than "
                    f"max_line_bytes={self.max_line_bytes}",
                )
                pos = nxt
                break
            line = bytes(data[pos:eol]).strip()
            pos = nxt
            if not line or line.startswith(b"#"):
                continue
            mark = (len(direct), len(keys))
            try:
                label, weight, row_weighted = self._ndjson_row(line, direct, values, key_pos, keys)
            except _RowError as exc:
                del direct[mark[0] :], values[mark[0] :], key_pos[mark[1] :], keys[mark[1] :]
                failure = (exc.field, exc.reason)
                break
            labels.append(math.nan if label is None else label)
            weights.append(weight)
            weighted = weighted or row_weighted
            indptr.append(len(direct))
        part = None
        if labels:
            part = (
                np.asarray(indptr, dtype=np.int64),
                np.asarray(direct, dtype=np.int64),
                np.asarray(values, dtype=np.float64),
                np.asarray(labels, dtype=np.float64),
                np.asarray(weights, dtype=np.float64),
                weighted,
                keys,
                np.asarray(key_pos, dtype=np.int64),
                True,
            )
        return part, pos, lines, failure

    def _ndjson_batch(self, parts: list[_NdjsonPart]) -> Batch | None:
        """One batch of the parts in order: named features hashed, rows canonicalized."""
        if not parts:
            return None
        if len(parts) == 1:
            ptr, idx, vals, labels, weights, weighted, keys, key_pos, canon = parts[0]
        else:
            offsets = np.cumsum([0] + [p[1].shape[0] for p in parts[:-1]])
            ptr = np.concatenate(
                [np.zeros(1, dtype=np.int64)]
                + [p[0][1:] + o for p, o in zip(parts, offsets, strict=True)]
            )
            idx = np.concatenate([p[1] for p in parts])
            vals = np.concatenate([p[2] for p in parts])
            labels = np.concatenate([p[3] for p in parts])
            weights = np.concatenate([p[4] for p in parts])
            weighted = any(p[5] for p in parts)
            keys = [k for p in parts for k in p[6]]
            key_pos = np.concatenate(
                [np.zeros(0, dtype=np.int64)]
                + [p[7] + o for p, o in zip(parts, offsets, strict=True) if p[7] is not None]
            )
            canon = any(p[8] for p in parts)
        names = None
        if keys:
            hashed = self.hasher.indices(keys)
            idx[key_pos] = hashed
            names = dict(zip(keys, hashed.tolist(), strict=True))
        if canon:
            nnz = _canon_all(ptr, idx, vals)
            idx, vals = idx[:nnz], vals[:nnz]
        return Batch(
            ptr,
            idx,
            vals,
            labels if not np.isnan(labels).any() else None,
            weights if weighted else None,
            self.dim,
            names,  # the model remembers them for inspection by name
        )

    def _ndjson_row(
        self,
        line: bytes,
        direct: list[int],
        values: list[float],
        key_pos: list[int],
        keys: list[str],
    ) -> tuple[float | None, float, bool]:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise _RowError("json", f"invalid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise _RowError("json", f"a line must be a JSON object, got {type(obj).__name__}")
        for key in obj:
            if key not in _NDJSON_KEYS:
                raise _RowError(
                    key, f"unknown key {key!r} (expected features, indices, values, label, weight)"
                )
        label = _ndjson_label(obj.get("label"))
        if label is None and self.require_labels:
            raise _RowError(
                "label",
                "is missing (required to learn; read unlabeled rows with require_labels=False)",
            )
        weight, weighted = 1.0, False
        if obj.get("weight") is not None:
            weight, weighted = _ndjson_number("weight", obj["weight"]), True
            if weight < 0:
                raise _RowError("weight", f"must be >= 0, got {obj['weight']!r}")
        if "features" in obj:
            if "indices" in obj or "values" in obj:
                raise _RowError("features", "give either 'features' or 'indices'/'values'")
            features = obj["features"]
            if not isinstance(features, dict):
                raise _RowError(
                    "features", f"must map names to values, got {type(features).__name__}"
                )
            for name, value in features.items():
                if not name:
                    raise _RowError("features", "feature names must be non-empty")
                try:
                    key, number = feature_key(name, value)
                except TypeError as exc:
                    raise _RowError(f"features.{name}", str(exc)) from None
                if not math.isfinite(number):
                    raise _RowError(f"features.{name}", f"value must be finite, got {value!r}")
                key_pos.append(len(direct))
                keys.append(key)
                direct.append(-1)
                values.append(number)
        elif "indices" in obj:
            indices = obj["indices"]
            if not isinstance(indices, list):
                raise _RowError("indices", f"must be a list, got {type(indices).__name__}")
            for j in indices:
                if isinstance(j, bool) or not isinstance(j, int):
                    raise _RowError("indices", f"must be integers, got {j!r}")
                if not 0 <= j < self.dim:
                    raise _RowError("indices", f"{j} is outside [0, {self.dim})")
            vals = obj.get("values")
            if vals is None:
                vals = [1.0] * len(indices)
            elif not isinstance(vals, list) or len(vals) != len(indices):
                raise _RowError(
                    "values", f"must be a list as long as indices ({len(indices)} entries)"
                )
            else:
                vals = [_ndjson_number("values", v) for v in vals]
            direct.extend(indices)
            values.extend(vals)
        elif "values" in obj:
            raise _RowError("values", "given without 'indices'")
        return label, weight, weighted


def concat_batches(batches: list[Batch], dim: int) -> Batch:
    """One batch of the rows of ``batches`` in order (labels/weights kept only if all have them)."""
    if not batches:
        return Batch(
            np.zeros(1, dtype=np.int64),
            np.empty(0, dtype=np.int64),
            np.empty(0, dtype=np.float64),
            None,
            None,
            dim,
        )
    if len(batches) == 1:
        return batches[0]
    offsets = np.cumsum([0] + [b.nnz for b in batches[:-1]])
    indptr = np.concatenate(
        [np.zeros(1, dtype=np.int64)]
        + [b.indptr[1:] + o for b, o in zip(batches, offsets, strict=True)]
    )
    labels = None
    if all(b.labels is not None for b in batches):
        labels = np.concatenate([b.labels for b in batches])  # type: ignore[misc]
    weights = None
    if any(b.weights is not None for b in batches):
        weights = np.concatenate(
            [b.weights if b.weights is not None else np.ones(b.n_rows) for b in batches]
        )
    return Batch(
        indptr,
        np.concatenate([b.indices for b in batches]),
        np.concatenate([b.values for b in batches]),
        labels,
        weights,
        dim,
    )


def parse_bytes(
    data: bytes | bytearray | memoryview,
    fmt: str,
    *,
    dim: int,
    hash_seed: int = 0,
    require_labels: bool = True,
) -> Batch:
    """Parse a whole buffer into one batch (raises :class:`ParseError` on the first bad line)."""
    size = len(memoryview(data).cast("B"))
    parser = StreamParser(
        fmt,
        dim=dim,
        hash_seed=hash_seed,
        max_rows_per_batch=1 << 16,
        max_line_bytes=max(1, size),
        require_labels=require_labels,
    )
    batches: list[Batch] = []
    try:
        batches += parser.feed(data)
        batches += parser.finish()
    except ParseError as exc:
        exc.valid_before = batches + exc.valid_before
        raise
    return concat_batches(batches, parser.dim)


def iter_file_batches(
    source: str | os.PathLike[str] | IO[bytes],
    fmt: str,
    *,
    dim: int,
    hash_seed: int = 0,
    chunk_bytes: int = 1 << 20,
    max_rows_per_batch: int = 10_000,
    max_line_bytes: int = 1 << 20,
    require_labels: bool = True,
) -> Iterator[Batch]:
    """Batches of a file (a path, ``.gz`` decompressed, or a binary file object), read in chunks.

    On a bad line the batches of the valid rows before it are yielded, then the
    :class:`ParseError` is raised (with an empty ``valid_before``).
    """
    parser = StreamParser(
        fmt,
        dim=dim,
        hash_seed=hash_seed,
        max_rows_per_batch=max_rows_per_batch,
        max_line_bytes=max_line_bytes,
        require_labels=require_labels,
    )
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as handle:
            yield from _iter_handle(parser, handle, chunk_bytes)
    else:
        yield from _iter_handle(parser, source, chunk_bytes)


def _iter_handle(parser: StreamParser, handle: IO[Any], chunk_bytes: int) -> Iterator[Batch]:
    while True:
        chunk = handle.read(chunk_bytes)
        if isinstance(chunk, str):
            chunk = chunk.encode()
        try:
            batches = parser.finish() if not chunk else parser.feed(chunk)
        except ParseError as exc:
            valid, exc.valid_before = exc.valid_before, []
            yield from valid
            raise
        yield from batches
        if not chunk:
            return
