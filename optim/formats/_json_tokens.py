"""The compiled JSON token readers shared by the two hot JSON shapes: a CSR body
(:mod:`~optim.formats.json_csr`) and NDJSON rows of indices (:mod:`~optim.formats.ndjson`).

Both readers are numba kernels (``nogil``) over the raw bytes, and both are *fast paths only*:
they accept a strict subset of JSON and answer "not handled" for anything else; the caller then
runs the ``orjson`` path, which stays the one source of results and error messages for everything
the kernels refuse. So a kernel only has to be right on what it accepts:

* an object whose keys are plain lowercase names (no escapes) from a fixed set, each at most once;
* values that are arrays of JSON numbers (strict grammar: no leading zero, ``+``, ``.5`` or
  ``1.``), ``true``/``false`` only where the slow path reads them as numbers (labels), ``null``
  only where the slow path reads it as "absent";
* JSON whitespace (space, tab, ``\\r``; ``\\n`` too in a body, not inside an NDJSON line).

Numbers are read as Python's ``float`` reads them, bit for bit (which is what ``orjson`` gives).
Short ones take an 8-bytes-at-a-time (SWAR) path: an integer of up to 7 digits, or ``d.ddddddd``
(one digit, up to 7 decimals), whose value is one correctly rounded division of an exact
integer. Anything else goes through :func:`optim.formats._scan.parse_float`; when that is only
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

from optim.formats._scan import POW10, decimal_run, parse_float

# the words are read little-endian: elsewhere every input takes the slow path
ENABLED = sys.byteorder == "little"

# number kinds
BAD = -1  # not a number we handle: the slow path decides
INT = 0  # an integer token of at most 18 digits: exact int value, float value float(int)
FLOAT = 1  # a number with a fraction or an exponent, read exactly
APPROX = 3  # an approximate float: to be re-read exactly with ``float(bytes)``

# an approximate value at most this large surely stays finite when re-read exactly
SAFE_MAX = 1.7e308
EXACT_INT = 1 << 53  # indptr/indices entries from here on are left to the slow path

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
def load8(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    """The 8 bytes of ``arr`` from ``idx`` as a little-endian uint64 (one unaligned load)."""
    sig = types.uint64(arr, idx)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        ary = make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        return builder.load(builder.bitcast(ptr, ir.IntType(64).as_pointer()), align=1)

    return sig, codegen


@nb.njit(inline="always")
def is_ws(c: int, nl: bool) -> bool:
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
def swar_int(w: np.uint64) -> tuple[bool, int, int, int]:
    """An integer token of 1 to 7 digits at the word's start: (ok, value, length, the byte
    after it)."""
    k = _digits(w)
    c = _byte(w, k & 7)
    if 1 <= k <= 7 and (k == 1 or _byte(w, 0) != 48) and c != 46 and c != 101 and c != 69:
        return True, _value(w, k), k, c
    return False, 0, 0, 0


@nb.njit(inline="always")
def swar_float(w: np.uint64, f: np.uint64, neg: bool) -> tuple[bool, float, int, int]:
    """The number whose digits start the word ``w`` (``f``: the word 2 bytes further) if it is
    ``d.ddddddd`` (1 to 7 decimals) or an integer of 1 to 7 digits: (ok, value, length, the
    byte after it)."""
    k = _digits(w)
    if k == 1 and _byte(w, 1) == 46:
        m = _digits(f)
        c = _byte(f, m & 7)
        if 1 <= m <= 7 and c != 101 and c != 69:
            v = float(np.int64(w & _U(0xF)) * _IPOW10[m] + _value(f, m)) / POW10[m]
            return True, (-v if neg else v), m + 2, c  # an exact integer < 2**53, one rounding
        return False, 0.0, 0, 0
    ok, iv, k, c = swar_int(w)
    if ok:
        v = float(iv)
        return True, (-v if neg and iv != 0 else v), k, c  # float(int): -0 is 0.0
    return False, 0.0, 0, 0


@nb.njit(inline="always")
def word_literal(w: np.uint64) -> tuple[int, int]:
    """``true`` (1), ``false`` (0), ``null`` (2) at the word's start, or -1: (code, length)."""
    if (w & _U(0xFFFFFFFF)) == _TRUE:
        return 1, 4
    if (w & _U(0xFFFFFFFFFF)) == _FALSE:
        return 0, 5
    if (w & _U(0xFFFFFFFF)) == _NULL:
        return 2, 4
    return -1, 0


@nb.njit(inline="always")
def word_key(w: np.uint64, first: int, last: int) -> tuple[int, int]:
    """The key (with its closing quote) at the word's start among keys ``first..last``, or -1:
    (key, length)."""
    for k in range(first, last + 1):
        if (w & _KEY_MASK[k]) == _KEY_WORD[k]:
            return k, _KEY_SIZE[k]
    return -1, 0


@nb.njit(inline="always")
def label01(kind: int, v: float) -> float:
    """0.0/1.0 for a label read exactly as -1, 0 or 1, else -1.0."""
    if kind in (INT, FLOAT):
        if v == 1.0:
            return 1.0
        if v == 0.0 or v == -1.0:
            return 0.0
    return -1.0


# -- byte-by-byte readers (the general and the buffer-end cases) ------------------------------


@nb.njit(nogil=True, cache=True)
def number(buf: np.ndarray, p: int) -> tuple[int, int, float, int]:
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
            return BAD, 0, 0.0, p
        nd = 1
    elif 1 <= d <= 9:
        first = p
        mant, p, d = decimal_run(buf, p, 0)  # wraps past 18 digits: then unused
        nd = p - first
    else:
        return BAD, 0, 0.0, p
    if d != -2 and d != 53 and d != 21:  # not '.', 'e', 'E': an integer
        if nd > 18:
            return BAD, 0, 0.0, p
        if neg:
            return INT, -mant, (-float(mant) if mant else 0.0), p
        return INT, mant, float(mant), p
    frac = 0
    if d == -2:
        first = p + 1
        mant, p, d = decimal_run(buf, first, mant)
        frac = p - first
        if frac == 0:
            return BAD, 0, 0.0, p
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
            return BAD, 0, 0.0, p
        v, st = parse_float(buf, s, p)
    elif nd <= 15:  # mant < 2**53, frac <= 15: one correctly rounded division
        v = float(mant) / POW10[frac]
        if neg:
            v = -v
        st = 0
    else:
        v, st = parse_float(buf, s, p)
    if st == 0:
        return FLOAT, 0, v, p
    if st == 3 and abs(v) <= SAFE_MAX:
        return APPROX, 0, v, p
    return BAD, 0, 0.0, p


@nb.njit(nogil=True, cache=True)
def literal(buf: np.ndarray, p: int) -> tuple[int, int]:
    """As :func:`word_literal` at ``p`` byte by byte (reads stop at the first mismatch)."""
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
def ints(buf, p, out, k, limit, nl):
    """Integers in ``[0, limit)``."""
    n = buf.shape[0]
    cap = out.shape[0]
    while True:
        if k == cap:
            return 2, k, p
        if p + 8 <= n:
            ok, iv, m, c = swar_int(load8(buf, p))
            if ok and c == 44 and iv < limit:  # the usual case: a short number then ','
                out[k] = iv
                k += 1
                p += m + 1
                continue
        while is_ws(buf[p], nl):  # after a ','
            p += 1
        ok = False
        iv = 0
        if p + 8 <= n:
            ok, iv, m, c = swar_int(load8(buf, p))
            p += m
        if not ok:
            kind, iv, _fv, p = number(buf, p)
            if kind != INT:
                return 1, k, p
        if iv < 0 or iv >= limit:
            return 1, k, p
        out[k] = iv
        k += 1
        c = buf[p]
        while is_ws(c, nl):
            p += 1
            c = buf[p]
        if c == 93:
            return 0, k, p + 1
        if c != 44:
            return 1, k, p
        p += 1


@nb.njit(nogil=True, cache=True)
def floats(buf, p, out, k, exact, nl, fixes, nfix):
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
            w = load8(buf, p)
            f = load8(buf, p + 2)
            s = p
            neg = (w & _U(0xFF)) == 45
            if neg:
                s = p + 1
                w = load8(buf, s)
                f = load8(buf, s + 2)
            ok, fv, m, c = swar_float(w, f, neg)
            if ok and c == 44:
                out[k] = fv
                k += 1
                p = s + m + 1
                continue
        while is_ws(buf[p], nl):  # after a ','
            p += 1
        c = buf[p]
        ts = p
        ok = False
        fv = 0.0
        if p + 11 <= n:
            neg = c == 45
            s = p + 1 if neg else p
            w = load8(buf, s)
            if exact and (c == 116 or c == 102):
                code, m = word_literal(w)
                if code != 0 and code != 1:
                    return 1, k, p, nfix
                ok, fv = True, float(code)
                p += m
            else:
                ok, fv, m, _c = swar_float(w, load8(buf, s + 2), neg)
                p = s + m if ok else p
        if not ok:
            if exact and (c == 116 or c == 102):
                code, m = literal(buf, p)
                if code != 0 and code != 1:
                    return 1, k, p, nfix
                fv = float(code)
                p += m
            else:
                kind, _iv, fv, p = number(buf, p)
                if kind == BAD or (kind == APPROX and exact):
                    return 1, k, p, nfix
                if kind == APPROX:
                    if nfix == fixes.shape[0]:
                        return 3, k, ts, nfix
                    fixes[nfix, 0] = k
                    fixes[nfix, 1] = ts
                    fixes[nfix, 2] = p
                    nfix += 1
        out[k] = fv
        k += 1
        c = buf[p]
        while is_ws(c, nl):
            p += 1
            c = buf[p]
        if c == 93:
            return 0, k, p + 1, nfix
        if c != 44:
            return 1, k, p, nfix
        p += 1
