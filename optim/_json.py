"""Compiled readers for the two hot JSON shapes: a CSR body and NDJSON rows of indices.

Both are numba kernels (``nogil``) over the raw bytes, and both are *fast paths only*: they accept
a strict subset of JSON and answer "not handled" for anything else; the caller then runs the
``orjson`` path, which stays the one source of results and error messages for everything the
kernels refuse. So a kernel only has to be right on what it accepts:

* an object whose keys are plain lowercase names (no escapes) from a fixed set, each at most once;
* values that are arrays of JSON numbers (strict grammar: no leading zero, ``+``, ``.5`` or
  ``1.``), ``true``/``false`` only where the slow path reads them as numbers (labels), ``null``
  only where the slow path reads it as "absent";
* JSON whitespace (space, tab, ``\\r``; ``\\n`` too in a body, not inside an NDJSON line).

Numbers are read as Python's ``float`` reads them, bit for bit (which is what ``orjson`` gives).
Short ones take an 8-bytes-at-a-time (SWAR) path: an integer of up to 7 digits, or ``d.ddddddd``
(one digit, up to 7 decimals), whose value is one correctly rounded division of an exact
integer. Anything else goes through :func:`optim.parsers._parse_float`; when that is only
approximate (status 3) the caller re-reads the token with ``float(bytes)`` (a "fixup"), as the
libsvm parser does. An integer token (no fraction, no exponent) is an ``int`` in ``orjson``: its
float is ``float(int)``, so ``-0`` gives ``0.0``, not ``-0.0``. Integers of more than 18 digits,
numbers that might overflow and approximate labels are not handled.

Performance note: the hot loops call no function taking an array (numba reference-counts array
arguments, which costs more than reading a number); helpers take the 64-bit words instead.
"""

from __future__ import annotations

import sys

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from optim.parsers import (
    _I_CANON,
    _I_FIXUPS,
    _I_LABELED,
    _I_LINES,
    _I_NNZ,
    _I_POS,
    _I_ROWS,
    _I_WEIGHTED,
    _N_COUNTERS,
    _POW10,
    _SMALL_ROW,
    _canon_row,
    _counters,
    _decimal_run,
    _parse_float,
    _store_counters,
    parse_bytes,
)

# the words are read little-endian: elsewhere every input takes the slow path
ENABLED = sys.byteorder == "little"

# number kinds
_BAD = -1  # not a number we handle: the slow path decides
_INT = 0  # an integer token of at most 18 digits: exact int value, float value float(int)
_FLOAT = 1  # a number with a fraction or an exponent, read exactly
_APPROX = 3  # an approximate float: to be re-read exactly with ``float(bytes)``

# an approximate value at most this large surely stays finite when re-read exactly
_SAFE_MAX = 1.7e308
_EXACT_INT = 1 << 53  # indptr/indices entries from here on are left to the slow path

# keys, numbered (a bit each in "seen" masks)
K_INDPTR, K_INDICES, K_VALUES, K_LABELS, K_WEIGHTS, K_LABEL, K_WEIGHT = range(7)
_KEY_NAMES = (b"indptr", b"indices", b"values", b"labels", b"weights", b"label", b"weight")
# each key with its closing quote as a little-endian word (at most 8 bytes), and its mask
_KEY_WORD = np.array(
    [int.from_bytes(k + b'"', "little") for k in _KEY_NAMES], dtype=np.uint64
)  # fmt: skip
_KEY_MASK = np.array([(1 << (8 * (len(k) + 1))) - 1 for k in _KEY_NAMES], dtype=np.uint64)
_KEY_SIZE = np.array([len(k) + 1 for k in _KEY_NAMES], dtype=np.int64)
_TRUE = np.uint64(int.from_bytes(b"true", "little"))
_FALSE = np.uint64(int.from_bytes(b"false", "little"))
_NULL = np.uint64(int.from_bytes(b"null", "little"))
_U = np.uint64
_IPOW10 = np.array([10**k for k in range(9)], dtype=np.int64)


# -- scalar helpers ----------------------------------------------------------------------------
# Bytes are read 8 at a time as one little-endian word (the first byte lowest): callers check
# that 8 bytes (11 for a float) are left in the buffer, else take the byte-by-byte path. Bytes
# past a token are read, but only those up to its first non-digit count, and every token is
# followed by a non-digit inside the buffer (the body's '}', the line's '\n').


@intrinsic
def _load8(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    """The 8 bytes of ``arr`` from ``idx`` as a little-endian uint64 (one unaligned load)."""
    sig = types.uint64(arr, idx)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        ary = make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        return builder.load(builder.bitcast(ptr, ir.IntType(64).as_pointer()), align=1)

    return sig, codegen


@nb.njit(inline="always")
def _is_ws(c: int, nl: bool) -> bool:
    return c == 32 or c == 9 or c == 13 or (nl and c == 10)


@nb.njit(inline="always")
def _digits(w: np.uint64) -> int:
    """How many of the word's bytes, from the first, are ASCII digits (0 to 8)."""
    hi = _U(0xF0F0F0F0F0F0F0F0)
    threes = _U(0x3030303030303030)
    # a digit's high nibble is 3 and stays 3 after adding 6; a carry out of a byte >= 0xFA only
    # disturbs the bytes after that (non-digit) byte
    t = ((w & hi) ^ threes) | (((w + _U(0x0606060606060606)) & hi) ^ threes)
    return np.int64(trailing_zeros(t) >> _U(3))  # cttz(0) is 64: eight digits


@nb.njit(inline="always")
def _value(w: np.uint64, k: int) -> int:
    """The value of the word's first ``k`` (1 to 8) digits."""
    v = (w - _U(0x3030303030303030)) << _U((64 - 8 * k) & 63)
    v = ((v & _U(0x0F0F0F0F0F0F0F0F)) * _U(2561)) >> _U(8)
    v = ((v & _U(0x00FF00FF00FF00FF)) * _U(6553601)) >> _U(16)
    return np.int64(((v & _U(0x0000FFFF0000FFFF)) * _U(42949672960001)) >> _U(32))


@nb.njit(inline="always")
def _byte(w: np.uint64, k: int) -> int:
    """Byte ``k`` (0 to 7) of the word."""
    return np.int64((w >> _U(8 * k)) & _U(0xFF))


@nb.njit(inline="always")
def _swar_int(w: np.uint64) -> tuple[bool, int, int, int]:
    """An integer token of 1 to 7 digits at the word's start: (ok, value, length, the byte
    after it)."""
    k = _digits(w)
    c = _byte(w, k & 7)
    if 1 <= k <= 7 and (k == 1 or _byte(w, 0) != 48) and c != 46 and c != 101 and c != 69:
        return True, _value(w, k), k, c
    return False, 0, 0, 0


@nb.njit(inline="always")
def _swar_float(w: np.uint64, f: np.uint64, neg: bool) -> tuple[bool, float, int, int]:
    """The number whose digits start the word ``w`` (``f``: the word 2 bytes further) if it is
    ``d.ddddddd`` (1 to 7 decimals) or an integer of 1 to 7 digits: (ok, value, length, the
    byte after it)."""
    k = _digits(w)
    if k == 1 and _byte(w, 1) == 46:
        m = _digits(f)
        c = _byte(f, m & 7)
        if 1 <= m <= 7 and c != 101 and c != 69:
            v = float(np.int64(w & _U(0xF)) * _IPOW10[m] + _value(f, m)) / _POW10[m]
            return True, (-v if neg else v), m + 2, c  # an exact integer < 2**53, one rounding
        return False, 0.0, 0, 0
    ok, iv, k, c = _swar_int(w)
    if ok:
        v = float(iv)
        return True, (-v if neg and iv != 0 else v), k, c  # float(int): -0 is 0.0
    return False, 0.0, 0, 0


@nb.njit(inline="always")
def _word_literal(w: np.uint64) -> tuple[int, int]:
    """``true`` (1), ``false`` (0), ``null`` (2) at the word's start, or -1: (code, length)."""
    if (w & _U(0xFFFFFFFF)) == _TRUE:
        return 1, 4
    if (w & _U(0xFFFFFFFFFF)) == _FALSE:
        return 0, 5
    if (w & _U(0xFFFFFFFF)) == _NULL:
        return 2, 4
    return -1, 0


@nb.njit(inline="always")
def _word_key(w: np.uint64, first: int, last: int) -> tuple[int, int]:
    """The key (with its closing quote) at the word's start among keys ``first..last``, or -1:
    (key, length)."""
    for k in range(first, last + 1):
        if (w & _KEY_MASK[k]) == _KEY_WORD[k]:
            return k, _KEY_SIZE[k]
    return -1, 0


@nb.njit(inline="always")
def _label01(kind: int, v: float) -> float:
    """0.0/1.0 for a label read exactly as -1, 0 or 1, else -1.0."""
    if kind in (_INT, _FLOAT):
        if v == 1.0:
            return 1.0
        if v == 0.0 or v == -1.0:
            return 0.0
    return -1.0


# -- byte-by-byte readers (the general and the buffer-end cases) ------------------------------


@nb.njit(nogil=True, cache=True)
def _number(buf: np.ndarray, p: int) -> tuple[int, int, float, int]:
    """The JSON number at ``p``: (kind, int value, float value, end)."""
    s = p
    neg = buf[p] == 45
    if neg:
        p += 1
    d = np.int64(buf[p]) - 48
    mant = 0
    if d == 0:
        p += 1
        d = np.int64(buf[p]) - 48
        if 0 <= d <= 9:  # a leading zero
            return _BAD, 0, 0.0, p
        nd = 1
    elif 1 <= d <= 9:
        first = p
        mant, p, d = _decimal_run(buf, p, 0)  # wraps past 18 digits: then unused
        nd = p - first
    else:
        return _BAD, 0, 0.0, p
    if d != -2 and d != 53 and d != 21:  # not '.', 'e', 'E': an integer
        if nd > 18:
            return _BAD, 0, 0.0, p
        if neg:
            return _INT, -mant, (-float(mant) if mant else 0.0), p
        return _INT, mant, float(mant), p
    frac = 0
    if d == -2:
        first = p + 1
        mant, p, d = _decimal_run(buf, first, mant)
        frac = p - first
        if frac == 0:
            return _BAD, 0, 0.0, p
        nd += frac
    if d == 53 or d == 21:
        p += 1
        c = buf[p]
        if c == 43 or c == 45:
            p += 1
        first = p
        while 0 <= np.int64(buf[p]) - 48 <= 9:
            p += 1
        if p == first:
            return _BAD, 0, 0.0, p
        v, st = _parse_float(buf, s, p)
    elif nd <= 15:  # mant < 2**53, frac <= 15: one correctly rounded division
        v = float(mant) / _POW10[frac]
        if neg:
            v = -v
        st = 0
    else:
        v, st = _parse_float(buf, s, p)
    if st == 0:
        return _FLOAT, 0, v, p
    if st == 3 and abs(v) <= _SAFE_MAX:
        return _APPROX, 0, v, p
    return _BAD, 0, 0.0, p


@nb.njit(nogil=True, cache=True)
def _literal(buf: np.ndarray, p: int) -> tuple[int, int]:
    """As :func:`_word_literal` at ``p`` byte by byte (reads stop at the first mismatch)."""
    c = buf[p]
    if c == 116 and buf[p + 1] == 114 and buf[p + 2] == 117 and buf[p + 3] == 101:
        return 1, 4
    if (
        c == 102
        and buf[p + 1] == 97
        and buf[p + 2] == 108
        and buf[p + 3] == 115
        and buf[p + 4] == 101
    ):
        return 0, 5
    if c == 110 and buf[p + 1] == 117 and buf[p + 2] == 108 and buf[p + 3] == 108:
        return 2, 4
    return -1, 0


# -- arrays ------------------------------------------------------------------------------------
# Each reads the numbers of one array, ``p`` at its first number (after '[' and whitespace, not
# at ']'), into ``out`` from ``k``: (code, k, p) with code 0 (``p`` past the ']'), 1 not handled,
# or 2 ``out`` full (``p`` at the next number: grow ``out`` and call again).


@nb.njit(nogil=True, cache=True)
def _ints(buf, p, out, k, limit, nl):
    """Integers in ``[0, limit)``."""
    n = buf.shape[0]
    cap = out.shape[0]
    while True:
        if k == cap:
            return 2, k, p
        if p + 8 <= n:
            ok, iv, m, c = _swar_int(_load8(buf, p))
            if ok and c == 44 and iv < limit:  # the usual case: a short number then ','
                out[k] = iv
                k += 1
                p += m + 1
                continue
        while _is_ws(buf[p], nl):  # after a ','
            p += 1
        ok = False
        iv = 0
        if p + 8 <= n:
            ok, iv, m, c = _swar_int(_load8(buf, p))
            p += m
        if not ok:
            kind, iv, _fv, p = _number(buf, p)
            if kind != _INT:
                return 1, k, p
        if iv < 0 or iv >= limit:
            return 1, k, p
        out[k] = iv
        k += 1
        c = buf[p]
        while _is_ws(c, nl):
            p += 1
            c = buf[p]
        if c == 93:
            return 0, k, p + 1
        if c != 44:
            return 1, k, p
        p += 1


@nb.njit(nogil=True, cache=True)
def _floats(buf, p, out, k, exact, nl, fixes, nfix):
    """Numbers (``true``/``false`` too, and no approximate one, when ``exact``: labels).
    Approximate values are noted in ``fixes`` rows (position in ``out``, token start, token end)
    from ``nfix``: (code, k, p, nfix), code 3: ``fixes`` full (grow it and call again)."""
    n = buf.shape[0]
    cap = out.shape[0]
    while True:
        if k == cap:
            return 2, k, p, nfix
        if p + 11 <= n:  # the usual case: a short number then ','
            # (both words read at once, as if there were no '-': no wait on the first byte)
            w = _load8(buf, p)
            f = _load8(buf, p + 2)
            s = p
            neg = (w & _U(0xFF)) == 45
            if neg:
                s = p + 1
                w = _load8(buf, s)
                f = _load8(buf, s + 2)
            ok, fv, m, c = _swar_float(w, f, neg)
            if ok and c == 44:
                out[k] = fv
                k += 1
                p = s + m + 1
                continue
        while _is_ws(buf[p], nl):  # after a ','
            p += 1
        c = buf[p]
        ts = p
        ok = False
        fv = 0.0
        if p + 11 <= n:
            neg = c == 45
            s = p + 1 if neg else p
            w = _load8(buf, s)
            if exact and (c == 116 or c == 102):
                code, m = _word_literal(w)
                if code != 0 and code != 1:
                    return 1, k, p, nfix
                ok, fv = True, float(code)
                p += m
            else:
                ok, fv, m, _c = _swar_float(w, _load8(buf, s + 2), neg)
                p = s + m if ok else p
        if not ok:
            if exact and (c == 116 or c == 102):
                code, m = _literal(buf, p)
                if code != 0 and code != 1:
                    return 1, k, p, nfix
                fv = float(code)
                p += m
            else:
                kind, _iv, fv, p = _number(buf, p)
                if kind == _BAD or (kind == _APPROX and exact):
                    return 1, k, p, nfix
                if kind == _APPROX:
                    if nfix == fixes.shape[0]:
                        return 3, k, ts, nfix
                    fixes[nfix, 0] = k
                    fixes[nfix, 1] = ts
                    fixes[nfix, 2] = p
                    nfix += 1
        out[k] = fv
        k += 1
        c = buf[p]
        while _is_ws(c, nl):
            p += 1
            c = buf[p]
        if c == 93:
            return 0, k, p + 1, nfix
        if c != 44:
            return 1, k, p, nfix
        p += 1


@nb.njit(nogil=True, cache=True)
def _key(buf, p, first, last, nl):
    """The key whose opening quote is at ``p`` (among keys ``first..last``), then its ':' and
    whitespace: (key or -1, position of its value)."""
    if buf[p] != 34 or p + 9 > buf.shape[0]:
        return -1, p
    key, m = _word_key(_load8(buf, p + 1), first, last)
    if key < 0:
        return -1, p
    p += m + 1
    c = buf[p]
    while _is_ws(c, nl):
        p += 1
        c = buf[p]
    if c != 58:
        return -1, p
    p += 1
    c = buf[p]
    while _is_ws(c, nl):
        p += 1
        c = buf[p]
    return key, p


# ---------------------------------------------------------------------------------------------
# A CSR body: {"indptr": [...], "indices": [...], "values": [...], "labels": [...],
# "weights": [...]} (labels and weights optional or null), keys in any order.
# ---------------------------------------------------------------------------------------------


@nb.njit(nogil=True, cache=True)
def _open_array(buf, p):
    """Past the '[' at ``p`` and whitespace: (p, whether the array is empty: p past its ']')."""
    p += 1
    c = buf[p]
    while _is_ws(c, True):
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
        code, k, p = _ints(buf, p, out, k, _EXACT_INT, True)
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
        code, k, p, nfix = _floats(buf, p, out, k, exact, True, fixes, nfix)
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
def _csr_body(buf):
    """(handled, indptr, indices, values, labels, weights, present, fixes): ``present`` has the
    bit of each key given an array (not null); ``fixes`` rows are (key, position, token start,
    token end) of the approximate values."""
    empty_i = np.empty(0, dtype=np.int64)
    empty_f = np.empty(0, dtype=np.float64)
    all_fixes = np.empty((0, 4), dtype=np.int64)
    indptr, indices, values, labels, weights = empty_i, empty_i, empty_f, empty_f, empty_f
    end = buf.shape[0] - 1
    while end >= 0 and _is_ws(buf[end], True):
        end -= 1
    # buf[end] == '}' stops every scan: nothing reads past it but whole-word loads
    if end < 1 or buf[end] != 125:
        return False, indptr, indices, values, labels, weights, 0, all_fixes
    p = 0
    while _is_ws(buf[p], True):
        p += 1
    if buf[p] != 123:
        return False, indptr, indices, values, labels, weights, 0, all_fixes
    p += 1
    while _is_ws(buf[p], True):
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
            code, m = _literal(buf, p)
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
        while _is_ws(buf[p], True):
            p += 1
        c = buf[p]
        if c == 125:
            p += 1
            break
        if c != 44:
            ok = False
            break
        p += 1
        while _is_ws(buf[p], True):
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
    handled, indptr, indices, values, labels, weights, present, fixes = _csr_body(
        np.frombuffer(data, dtype=np.uint8)
    )
    if not handled:
        return None
    if fixes.shape[0]:
        arrays = {K_VALUES: values, K_LABELS: labels, K_WEIGHTS: weights}
        for key, k, start, stop in fixes.tolist():
            arrays[key][k] = float(data[start:stop])  # exact; finite (see _SAFE_MAX)
    return (
        indptr,
        indices,
        values,
        labels if present & (1 << K_LABELS) else None,
        weights if present & (1 << K_WEIGHTS) else None,
    )


# ---------------------------------------------------------------------------------------------
# NDJSON rows: {"indices": [...], "values": [...], "label": 0, "weight": 1.5} per line
# (values, label and weight optional or null), keys in any order. The kernel follows the protocol
# of the kernels in optim.parsers: it parses whole lines from state[S_POS] up to ``stop``
# (``buf[stop - 1]`` is '\n') into arrays it never reallocates, and stops at ``stop``, at a full
# ``indptr``, when ``indices``/``fixes`` are full (S_FULL_*: grow them and call again) or before
# a line it does not handle (S_NOT_HANDLED: state[S_POS] is that line's start, not counted).
# Blank and comment lines are skipped and counted. Approximate numbers are noted in ``fixes``
# rows (entry, token start, token end), entry ``-1 - row`` for a row's weight; rows holding one
# are left unsorted (state[S_CANON] = 1): the caller re-reads them, then canonicalizes.
# ---------------------------------------------------------------------------------------------

# The counters' slots are the text parsers' (read and written by the same helpers), then this
# reader's status.
S_POS, S_LINES, S_ROWS, S_NNZ = _I_POS, _I_LINES, _I_ROWS, _I_NNZ
S_LABELED, S_WEIGHTED, S_FIXUPS, S_CANON = _I_LABELED, _I_WEIGHTED, _I_FIXUPS, _I_CANON
S_STATUS = _N_COUNTERS
S_LEN = _N_COUNTERS + 1
S_DONE, S_FULL_INDICES, S_FULL_FIXES, S_NOT_HANDLED = 0, 1, 2, 3

_OK, _NO, _FULL_I, _FULL_F = 0, 1, 2, 3


@nb.njit(nogil=True, cache=True)
def ndjson_rows(
    buf, stop, dim, require_labels, max_line_bytes, indptr, indices, values, labels, weights,
    fixes, state,
):  # fmt: skip
    # the arrays are read by the body reader's _ints/_floats; the rest of a line is inline here
    n_buf = buf.shape[0]
    fix_cap = fixes.shape[0]
    p, lines, rows, n, labeled, weighted, nfix, canon = _counters(state)
    max_rows = indptr.shape[0] - 1
    keys = np.empty(_SMALL_ROW, dtype=np.int64)
    tmp = np.empty(_SMALL_ROW, dtype=np.float64)
    status = S_DONE
    while p < stop and rows < max_rows:
        line_start = p
        q = p
        while _is_ws(buf[q], False):
            q += 1
        c = buf[q]
        if c == 10 or c == 35:  # a blank line or a comment
            while buf[q] != 10:
                q += 1
            if q - line_start > max_line_bytes:
                status = S_NOT_HANDLED
                break
            p = q + 1
            lines += 1
            continue
        if c != 123:
            status = S_NOT_HANDLED
            break
        # the object: its keys, then each value (code: _OK, _NO or _FULL_*)
        code = _OK
        label = np.nan
        weight = 1.0
        has_weight = False
        n_idx = 0
        n_val = -1  # -1: no values array (absent or null): all 1
        seen = 0
        row_fix = nfix
        q += 1
        while _is_ws(buf[q], False):
            q += 1
        c = buf[q]
        if c == 125:  # {}
            q += 1
            c = 0
        while c == 34:
            if q + 9 > n_buf:
                code = _NO
                break
            key, m = _word_key(_load8(buf, q + 1), K_INDICES, K_WEIGHT)
            if key < 0 or key in (K_LABELS, K_WEIGHTS) or seen & (1 << key):
                code = _NO
                break
            seen |= 1 << key
            q += m + 1
            while _is_ws(buf[q], False):
                q += 1
            if buf[q] != 58:
                code = _NO
                break
            q += 1
            while _is_ws(buf[q], False):
                q += 1
            c = buf[q]
            if key in (K_LABEL, K_WEIGHT):
                if c == 116 or c == 102 or c == 110:  # true, false, null
                    lit, m = _literal(buf, q)
                    if lit < 0 or (lit < 2 and key == K_WEIGHT):
                        code = _NO
                        break
                    if lit < 2:
                        label = float(lit)
                    q += m
                else:
                    ts = q
                    ok = False
                    kind = _FLOAT
                    fv = 0.0
                    if q + 11 <= n_buf:
                        neg = c == 45
                        s = q + 1 if neg else q
                        ok, fv, m, c = _swar_float(_load8(buf, s), _load8(buf, s + 2), neg)
                        q = s + m if ok else q
                    if not ok:
                        kind, _iv, fv, q = _number(buf, q)
                    if key == K_LABEL:
                        label = _label01(kind, fv)
                        if label < 0:
                            code = _NO
                            break
                    elif kind == _BAD or fv < 0:  # (an approximate value has the exact sign)
                        code = _NO
                        break
                    else:
                        weight = fv
                        has_weight = True
                        if kind == _APPROX:  # the row's weight: entry -1 - row
                            if nfix == fix_cap:
                                code = _FULL_F
                                break
                            fixes[nfix, 0] = -1 - rows
                            fixes[nfix, 1] = ts
                            fixes[nfix, 2] = q
                            nfix += 1
            elif c != 91:  # not an array: only "values": null
                lit, m = _literal(buf, q)
                if key != K_VALUES or lit != 2:
                    code = _NO
                    break
                q += m
            else:
                q += 1
                c = buf[q]
                while _is_ws(c, False):
                    q += 1
                    c = buf[q]
                k = n
                if c == 93:
                    q += 1
                elif key == K_INDICES:  # the body reader's array readers, one line at a time
                    done, k, q = _ints(buf, q, indices, k, dim, False)
                    code = _OK if done == 0 else (_FULL_I if done == 2 else _NO)
                else:
                    done, k, q, nfix = _floats(buf, q, values, k, False, False, fixes, nfix)
                    code = (_OK, _NO, _FULL_I, _FULL_F)[done]
                if code != _OK:
                    break
                if key == K_INDICES:
                    n_idx = k - n
                else:
                    n_val = k - n
            while _is_ws(buf[q], False):
                q += 1
            c = buf[q]
            if c == 44:
                q += 1
                while _is_ws(buf[q], False):
                    q += 1
                c = buf[q]
                if c != 34:
                    code = _NO
            elif c == 125:
                q += 1
                c = 0
            else:
                code = _NO
        if code == _OK and c != 0:  # neither a key nor '}' after '{' or ','
            code = _NO
        if code == _OK:
            while _is_ws(buf[q], False):
                q += 1
            if (
                buf[q] != 10
                or q - line_start > max_line_bytes
                or (require_labels and label != label)
                or (seen & (1 << K_VALUES) and not seen & (1 << K_INDICES))
                or (n_val >= 0 and n_val != n_idx)
            ):
                code = _NO
        if code != _OK:
            nfix = row_fix
            status = (
                S_FULL_INDICES
                if code == _FULL_I
                else (S_FULL_FIXES if code == _FULL_F else S_NOT_HANDLED)
            )
            break
        if n_val < 0:
            for k in range(n, n + n_idx):
                values[k] = 1.0
        end = n + n_idx
        if nfix > row_fix:
            canon = 1  # sorted after the exact re-read
            n = end
        else:
            ordered = True
            for k in range(n + 1, end):
                if indices[k] <= indices[k - 1]:
                    ordered = False
                    break
            n = end if ordered else _canon_row(indices, values, n, end, keys, tmp)
        labels[rows] = label
        if label == label:
            labeled += 1
        weights[rows] = weight
        if has_weight:
            weighted += 1
        rows += 1
        indptr[rows] = n
        lines += 1
        p = q + 1
    _store_counters(state, p, lines, rows, n, labeled, weighted, nfix, canon)
    state[S_STATUS] = status


def warm() -> None:
    """Compile (or load from numba's cache) both readers, for a server to call at start-up."""
    read_csr(b'{"indptr": [0, 1], "indices": [0], "values": [0.5], "labels": [1]}')
    parse_bytes(b'{"indices": [0], "values": [0.5], "label": 1}\n', "ndjson", dim=2)
