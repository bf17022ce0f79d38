"""The compiled readers every format shares, and the protocol of the format kernels.

Readers of bytes (``buf``: a uint8 array holding a ``'\\n'`` after whatever is read, so no read
checks the buffer's end): tokens, decimals read exactly as Python's ``float`` reads them (a plain
decimal of up to 15 digits is one correctly rounded division of an exact integer; anything longer
goes through :func:`parse_float`, which answers "approximate" when it cannot be sure, and the
driver then re-reads the token with ``float(bytes)``: a *fixup*), labels, and the
canonicalisation of a row (indices sorted, duplicates summed in the order of the line).

The format kernels (:mod:`~optim.formats.libsvm`, :mod:`~optim.formats.vw`,
:mod:`~optim.formats.criteo`, :mod:`~optim.formats.ndjson`) all follow one protocol. Each parses
whole lines from ``state.pos`` up to ``stop`` (``buf[stop - 1]`` is ``'\\n'``) into the arrays
of a :class:`Rows` it is given (their lengths are their capacities: a kernel never reallocates,
which keeps its hot loop free of reference counting), and stops at ``stop``, at a full
``indptr``, or with ``state.status`` set: an error code (> 0: the line is consumed, its token
between ``token_start`` and ``token_stop``), :data:`FULL_INDICES` or :data:`FULL_FIXES` (the
driver grows those arrays and calls again; the row in progress was rolled back) or
:data:`NOT_HANDLED` (NDJSON: a line its compiled reader leaves to Python, at ``state.pos``).
``state`` is one record of :data:`STATE`, kept between the calls of one batch. Rows holding an
approximate value are left unsorted (``state.canon``): the driver re-reads, then canonicalizes.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

from optim.features import DEFAULT_MAX_NAMES, FeatureOptions
from optim.hashing import FeatureHasher, _murmur3_32

POW10 = np.array([10.0**k for k in range(23)])
DBL_MAX = 1.7976931348623157e308
# a little over DBL_MAX: an approximate value beyond it surely overflows; one between DBL_MAX and it
# is re-read exactly (a fixup) and refused then if it overflows
DBL_LIMIT = 1.7976931348624e308

# -- the kernels' protocol ---------------------------------------------------------------------

STATE = np.dtype(
    [
        ("pos", np.int64),  # where the next line starts
        ("lines", np.int64),  # lines read (blank and comment lines too)
        ("rows", np.int64),  # rows written
        ("nnz", np.int64),  # non-zeros written
        ("labeled", np.int64),  # rows with a label
        ("weighted", np.int64),  # rows with a weight
        ("fixups", np.int64),  # approximate values noted in Rows.fixes
        ("canon", np.int64),  # 1: rows wait to be canonicalized
        ("status", np.int64),  # DONE, an error code (> 0), FULL_INDICES, FULL_FIXES, NOT_HANDLED
        ("token_start", np.int64),  # the bad token of an error
        ("token_stop", np.int64),
        ("extra", np.int64),  # a number for the error's message
    ]
)
DONE, FULL_INDICES, FULL_FIXES, NOT_HANDLED = 0, -1, -2, -3

# error codes every format may give (each format numbers its own from FIRST_FORMAT_ERROR)
E_LINE_TOO_LONG, E_LABEL_MISSING, E_LABEL, E_VALUE, E_VALUE_RANGE = 1, 2, 3, 4, 5
FIRST_FORMAT_ERROR = 16

# (field, reason) of each common error code: ``str.format`` fields tok (the bad token), extra,
# dim, max_line_bytes
COMMON_ERRORS = {
    E_LINE_TOO_LONG: (
        "line",
        "line of {extra} bytes is longer than max_line_bytes={max_line_bytes}",
    ),
    E_LABEL_MISSING: (
        "label",
        "is missing: required to learn (read unlabeled rows with require_labels=False)",
    ),
    E_LABEL: ("label", "must be -1/+1 or 0/1, got {tok!r}"),
    E_VALUE: ("value", "must be a finite number, got {tok!r}"),
    E_VALUE_RANGE: ("value", "{tok!r} is out of the float64 range"),
}


class Rows(NamedTuple):
    """The arrays a kernel writes a batch's rows into. ``fixes`` rows: (entry of ``values``, or
    ``-1 - row`` for a row's weight, token start, token end, line); ``fix_scale``: the factor of
    each re-read value (a VW namespace's scale)."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    fixes: np.ndarray
    fix_scale: np.ndarray


@nb.njit(inline="always")
def counters(state: np.ndarray) -> tuple[int, int, int, int, int, int, int, int]:
    """Where the kernel's last call left the batch: position, lines, rows, non-zeros, labelled
    rows, weighted rows, fixups, whether rows wait to be canonicalized."""
    s = state[0]
    return s.pos, s.lines, s.rows, s.nnz, s.labeled, s.weighted, s.fixups, s.canon


@nb.njit(inline="always")
def store(
    state: np.ndarray, p: int, lines: int, rows: int, n: int, labeled: int, weighted: int,
    nfix: int, canon: int, status: int, token_start: int, token_stop: int, extra: int,
) -> None:  # fmt: skip
    s = state[0]
    s.pos = p
    s.lines = lines
    s.rows = rows
    s.nnz = n
    s.labeled = labeled
    s.weighted = weighted
    s.fixups = nfix
    s.canon = canon
    s.status = status
    s.token_start = token_start
    s.token_stop = token_stop
    s.extra = extra


@nb.njit(inline="always")
def note_fixup(
    rows: Rows, nfix: int, entry: int, start: int, stop: int, scale: float, line: int
) -> None:
    rows.fixes[nfix, 0] = entry
    rows.fixes[nfix, 1] = start
    rows.fixes[nfix, 2] = stop
    rows.fixes[nfix, 3] = line
    rows.fix_scale[nfix] = scale


# -- readers -----------------------------------------------------------------------------------


@nb.njit(inline="always")
def is_space(c: np.uint8) -> bool:
    return c == 32 or c == 9 or c == 13 or c == 11 or c == 12


TOKEN_END = np.zeros(256, dtype=np.bool_)
TOKEN_END[[9, 10, 11, 12, 13, 32, 35]] = True  # whitespace, '\n', '#'


@nb.njit(inline="always")
def ends_token(c: np.uint8) -> bool:
    """Whether a libsvm token may end before ``c`` (a space, the line's end or a comment)."""
    return TOKEN_END[c]


@nb.njit(inline="always")
def decimal_run(buf: np.ndarray, p: int, mant: int) -> tuple[int, int, int]:
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
def plain_decimal(buf: np.ndarray, p: int) -> tuple[int, int, int, int, int]:
    """Digits, then '.' and digits, from ``p`` read as one integer ``mant * 10**exp10``:
    (mant, the end, the byte there minus ord('0'), how many digits, exp10)."""
    mant, end, d = decimal_run(buf, p, 0)
    digits = end - p
    exp10 = 0
    if d == -2:  # '.'
        fraction = end + 1
        mant, end, d = decimal_run(buf, fraction, mant)
        exp10 = fraction - end
        digits -= exp10
    return mant, end, d, digits, exp10


@nb.njit(nogil=True, cache=True)
def token_end(buf: np.ndarray, p: int) -> int:
    while not ends_token(buf[p]):
        p += 1
    return p


@nb.njit(nogil=True, cache=True)
def skip_line(buf: np.ndarray, p: int) -> int:
    """The position after the next '\\n' (there is always one)."""
    while buf[p] != 10:
        p += 1
    return p + 1


@nb.njit(nogil=True, cache=True)
def find(buf: np.ndarray, s: int, e: int, byte: int) -> int:
    for k in range(s, e):
        if buf[k] == byte:
            return k
    return -1


@nb.njit(nogil=True, cache=True)
def scan_float(buf: np.ndarray, p: int) -> tuple[float, int, int]:
    """Read the longest number at ``p`` (the buffer has a '\\n' after it): (value, end, status)
    with status 0 exact, 3 approximate (to be re-read exactly), 1 no number, 2 out of range."""
    start = p
    c = buf[p]
    neg = c == 45
    if neg or c == 43:
        p += 1
    mant, p, d, digits, exp10 = plain_decimal(buf, p)  # past 18 digits: the slow path below
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
        v, status = parse_float(buf, start, p)
        return v, p, status
    if digits <= 15 and exp10 >= -22:  # mant < 2**53: one correctly rounded division
        v = float(mant) / POW10[-exp10]
        return (-v if neg else v), p, 0
    v, status = parse_float(buf, start, p)
    return v, p, status


@nb.njit(nogil=True, cache=True)
def compose(neg: bool, mant: int, exp10: int, dropped: bool) -> tuple[float, int]:
    """``(-1)**neg * mant * 10**exp10`` and a status (0 exact, 3 approximate, 2 out of range)."""
    if mant == 0:
        return (-0.0 if neg else 0.0), 0
    status = 0
    if not dropped and mant <= 9_007_199_254_740_992 and -22 <= exp10 <= 22:
        v = float(mant)  # exact, then one correctly rounded operation (Clinger's fast path)
        if exp10 >= 0:
            v *= POW10[exp10]
        else:
            v /= POW10[-exp10]
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
    if not abs(v) <= DBL_LIMIT:
        return v, 2
    return v, status


@nb.njit(nogil=True, cache=True)
def parse_float(buf: np.ndarray, s: int, e: int) -> tuple[float, int]:
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
    return compose(neg, mant, exp10, dropped)


@nb.njit(nogil=True, cache=True)
def parse_index(buf: np.ndarray, s: int, e: int) -> tuple[int, int]:
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
def parse_count(buf: np.ndarray, s: int, e: int) -> tuple[float, bool]:
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
    if not x <= DBL_MAX:
        return 0.0, False
    return (-x if neg else x), True


@nb.njit(nogil=True, cache=True)
def label_of(v: float, status: int) -> float:
    """0.0 / 1.0 for a label read as ``v``, or -1.0 when it is not -1, 0 or 1."""
    if status == 1 or status == 2:
        return -1.0
    if v == 1.0:
        return 1.0
    if v == 0.0 or v == -1.0:
        return 0.0
    return -1.0


SMALL_ROW = 64  # rows up to this long are sorted by rank (branch-free, vectorized)


@nb.njit(nogil=True, cache=True)
def canon_row(
    indices: np.ndarray, values: np.ndarray, rs: int, re: int, keys: np.ndarray, tmp: np.ndarray
) -> int:
    """Sort ``[rs, re)`` by index (stable) and sum duplicates in place; the row's new end.

    ``keys`` (int64) and ``tmp`` (float64) are scratch arrays of ``SMALL_ROW`` entries.
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
def canon_all(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> int:
    """Canonicalize every row in place (rows move left as duplicates merge); the new nnz."""
    keys = np.empty(SMALL_ROW, dtype=np.int64)
    tmp = np.empty(SMALL_ROW, dtype=np.float64)
    w = 0
    start = indptr[0]
    for r in range(indptr.shape[0] - 1):
        stop = indptr[r + 1]
        for k in range(start, stop):
            indices[w + k - start] = indices[k]
            values[w + k - start] = values[k]
        end = canon_row(indices, values, w, w + stop - start, keys, tmp)
        indptr[r + 1] = end
        w = end
        start = stop
    return w


# -- feature names and crosses -------------------------------------------------------------------
#
# A kernel that hashes named features records the first name seen at each coordinate, and every
# further name seen at a coordinate that already has one (a hash collision: the model counts such
# coordinates), in a :class:`Names`. Most features are at a coordinate already named by the same
# name, so the test that comes first and costs one load is per coordinate: ``owner[coordinate]``
# holds the fingerprint (the 32-bit fold) of the key (the feature's hash before the modulo) of the
# first name seen there. Only when it differs does the kernel call :func:`note_name`, off the hot
# loop: a free coordinate takes the name; a coordinate whose owner differs becomes *shared*, and
# from then on the names seen there are told apart by an exact set of (slot, fingerprint) pairs.
# Each new name's bytes are noted as spans (read back by :func:`gather_names` while the buffer
# still holds them). A name is up to three *parts* joined by ``*`` (a crossed feature); a part is
# a namespace span and a feature span (``ns^f``; ``f`` alone when the namespace span is empty), or
# a prefix of the reader's (its row ``-1 - start``) and a span.

FULL_NAMES = -4  # the kernel stopped: the names set or spans are to grow (see note_name)
NAMES_FULL = -2
NAME_PARTS = 3
NAME_COLUMNS = 1 + 4 * NAME_PARTS  # coordinate, then (ns start, ns stop, start, stop) per part
UNUSED = -(1 << 40)  # a part a name does not have
FNV_PRIME = np.uint64(16777619)
_MIX = np.uint64(0x9E3779B97F4A7C15)
# owner slots: one per coordinate up to 2**20 (4 MiB, zeroed as touched: a short stream pays
# for the pages it touches, ~50 us for 20 rows; 16 MiB cost a short stream 5x that); a larger
# dim shares each slot among the coordinates equal modulo 2**20 (a key determines its
# coordinate, so a differing fingerprint there is still another name, told apart exactly by
# the set)
MAX_OWNER_SLOTS = 1 << 20
SLOT_MASK = MAX_OWNER_SLOTS - 1
SHARED = np.uint32(1)  # owner of a slot where two names were seen (0: no name yet)


class Names(NamedTuple):
    """``owner``: the fingerprint of the first name's key per coordinate (:func:`fingerprint`;
    0 none, :data:`SHARED` two or more; empty when names are not recorded); ``keys``: the set of
    names seen at shared slots, as ``(slot << 32 | fingerprint) + 1`` (0 is an empty slot; a
    power-of-two size); ``spans``: the new names of the batch being read; ``count``: [spans
    written, names recorded, names not recorded because the bound was reached, the bound, names
    of crosses recorded, their bound (half the bound: crosses, far more numerous, leave room for
    the names of features), entries of ``keys``]."""

    owner: np.ndarray
    keys: np.ndarray
    spans: np.ndarray
    count: np.ndarray


def new_names(bound: int, dim: int) -> Names:
    count = np.zeros(7, dtype=np.int64)
    count[3] = bound
    count[5] = bound // 2
    return Names(
        np.zeros(min(dim, MAX_OWNER_SLOTS) if bound else 0, dtype=np.uint32),
        np.zeros(1 << 6, dtype=np.uint64),
        np.empty((1 << 10, NAME_COLUMNS), dtype=np.int64),
        count,
    )


@nb.njit(inline="always")
def fingerprint(key: np.uint64) -> np.uint32:
    """A key folded to 32 bits (itself for the 32-bit keys of features), never 0 or SHARED."""
    folded = (key ^ (key >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    return np.uint32(folded + np.uint64(2) if folded < np.uint64(2) else folded)


@nb.njit(inline="always")
def named(names: Names, key: np.uint64, coordinate: int) -> bool:
    """Whether the name of ``key`` needs no recording: names are off, or the first name seen at
    ``coordinate`` was this one (the hot path: one load, no hashing)."""
    owner = names.owner
    return owner.shape[0] == 0 or owner[coordinate & SLOT_MASK] == fingerprint(key)


@nb.njit(nogil=True, cache=True)
def note_name(names: Names, key: np.uint64, coordinate: int) -> int:
    """The spans row to write the name of ``key`` into (its coordinate noted there) if it is new;
    -1 when it is known (or a name missed: the bound is reached); :data:`NAMES_FULL` when the
    spans or the set must grow first (the kernel rolls the row back and stops with
    :data:`FULL_NAMES`). Called when :func:`named` is false."""
    owner, keys, spans, count = names
    slot = coordinate & SLOT_MASK
    fp = fingerprint(key)
    holder = owner[slot]
    if holder == fp:
        return -1
    mask = np.uint64(keys.shape[0] - 1)
    entry = ((np.uint64(slot) << np.uint64(32)) | np.uint64(fp)) + np.uint64(1)
    if holder == SHARED and keys[_set_slot(keys, entry, mask)] == entry:
        return -1
    if count[1] >= count[3]:
        count[2] += 1
        return -1
    if count[0] == spans.shape[0] or 4 * (count[6] + 2) > 3 * keys.shape[0]:
        return NAMES_FULL
    if holder == 0:
        owner[slot] = fp
    else:
        if holder != SHARED:  # the first collision here: the owner's name joins the set
            owner[slot] = SHARED
            first = ((np.uint64(slot) << np.uint64(32)) | np.uint64(holder)) + np.uint64(1)
            keys[_set_slot(keys, first, mask)] = first
            count[6] += 1
        keys[_set_slot(keys, entry, mask)] = entry
        count[6] += 1
    count[1] += 1
    row = count[0]
    count[0] += 1
    spans[row, 0] = coordinate
    return row


@nb.njit(inline="always")
def _set_slot(keys: np.ndarray, entry: np.uint64, mask: np.uint64) -> int:
    """Where ``entry`` is in the open-addressing set, or the empty slot where it goes."""
    slot = ((entry ^ (entry >> np.uint64(29))) * _MIX) & mask
    while keys[slot] != 0 and keys[slot] != entry:
        slot = (slot + np.uint64(1)) & mask
    return slot


@nb.njit(inline="always")
def names_full(names: Names) -> bool:
    """Whether to stop after this row so the driver grows the set or the spans."""
    _, keys, spans, count = names
    return 2 * count[6] > keys.shape[0] or 2 * count[0] > spans.shape[0]


def grow_names(names: Names) -> Names:
    """A :class:`Names` with room again: the set doubled (rehashed) when over half full, the
    spans doubled when over half full."""
    owner, keys, spans, count = names
    if 2 * (count[6] + 2) > keys.shape[0]:
        keys = _rehashed(keys)
    if 2 * count[0] >= spans.shape[0]:
        spans = np.concatenate([spans, np.empty_like(spans)])
    return Names(owner, keys, spans, count)


@nb.njit(nogil=True, cache=True)
def _rehashed(keys: np.ndarray) -> np.ndarray:
    out = np.zeros(2 * keys.shape[0], dtype=np.uint64)
    mask = np.uint64(out.shape[0] - 1)
    for entry in keys:
        if entry != 0:
            out[_set_slot(out, entry, mask)] = entry
    return out


@nb.njit(nogil=True, cache=True)
def gather_names(
    buf: np.ndarray, spans: np.ndarray, n: int, prefixes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The text of ``n`` recorded names, ``'\\n'`` between them, and their coordinates."""
    size = 0
    for r in range(n):
        for q in range(NAME_PARTS):
            ns_s, ns_e, f_s, f_e = spans[r, 1 + 4 * q : 5 + 4 * q]
            if ns_s == UNUSED:
                continue
            size += 1 + f_e - f_s + (prefixes[-1 - ns_s, 0] if ns_s < 0 else ns_e - ns_s + 1)
    out = np.empty(max(size, 1), dtype=np.uint8)
    coordinates = np.empty(n, dtype=np.int64)
    w = 0
    for r in range(n):
        coordinates[r] = spans[r, 0]
        if r > 0:
            out[w] = 10
            w += 1
        for q in range(NAME_PARTS):
            ns_s, ns_e, f_s, f_e = spans[r, 1 + 4 * q : 5 + 4 * q]
            if ns_s == UNUSED:
                continue
            if q > 0:
                out[w] = 42  # '*'
                w += 1
            if ns_s < 0:
                row = -1 - ns_s
                for k in range(prefixes[row, 0]):
                    out[w] = prefixes[row, 1 + k]
                    w += 1
            elif ns_e > ns_s:
                for k in range(ns_s, ns_e):
                    out[w] = buf[k]
                    w += 1
                out[w] = 94  # '^'
                w += 1
            for k in range(f_s, f_e):
                out[w] = buf[k]
                w += 1
    return out[:w], coordinates


def decode_names(names: Names, buf: np.ndarray, prefixes: np.ndarray) -> dict[str, int] | None:
    """The names recorded since the last call (name -> coordinate), the spans emptied."""
    n = int(names.count[0])
    if not n:
        return None
    text, coordinates = gather_names(buf, names.spans, n, prefixes)
    names.count[0] = 0
    keys = text.tobytes().decode("utf-8", errors="replace").split("\n")
    return dict(zip(keys, coordinates.tolist(), strict=True))


@nb.njit(inline="always")
def digits_value(buf: np.ndarray, s: int, e: int) -> tuple[np.uint64, bool]:
    """Whether ``buf[s:e]`` is all decimal digits, and their number modulo 2**64 (as VW reads
    a feature or namespace name made of digits)."""
    number = np.uint64(0)
    for k in range(s, e):
        d = np.uint64(buf[k]) - np.uint64(48)  # wraps for any byte below '0'
        if d > np.uint64(9):
            return number, False
        number = number * np.uint64(10) + d
    return number, e > s


@nb.njit(nogil=True, cache=True)
def vw_hash(buf: np.ndarray, s: int, e: int, seed: int) -> np.uint64:
    """VW's ``hashstring``: the number a name of digits is, plus ``seed`` (modulo 2**32), else
    MurmurHash3 of the name with ``seed`` (the empty name too: 0 for seed 0)."""
    number, digits = digits_value(buf, s, e)
    if digits:
        return (number + np.uint64(seed)) & np.uint64(0xFFFFFFFF)
    return _murmur3_32(buf, s, e, seed)


@nb.njit(nogil=True, cache=True)
def cross_row(
    indices: np.ndarray,
    values: np.ndarray,
    row_start: int,
    n: int,
    letters: np.ndarray,
    parts: np.ndarray,
    keys: np.ndarray,
    interactions: np.ndarray,
    dim: int,
    names: Names,
) -> int:
    """Append the crossed features of the row whose own features are ``[row_start, n)`` (their
    namespaces' first bytes in ``letters``, name parts in ``parts``, hash keys in ``keys``, by
    position in the row) after them; the row's new end, or -1 when ``indices`` is full, or
    :data:`NAMES_FULL`.

    As VW: a cross of features ``x`` (namespace ``a``) and ``y`` (``b``) is coordinate
    ``((16777619 * x) ^ y) mod dim`` of their coordinates (64-bit arithmetic; a third ``z`` gives
    ``((16777619 * that_before_mod) ^ z) mod dim``), value the product of theirs; within one
    namespace only the pairs ``i <= j`` (and triples ``i <= j <= k``) of its features in the
    line's order, the feature with itself included.
    """
    m = n - row_start
    cap = indices.shape[0]
    udim = np.uint64(dim)
    # the row's features grouped by namespace byte, in the line's order (a counting sort)
    first = np.zeros(257, dtype=np.int64)
    for k in range(m):
        first[letters[k] + 1] += 1
    for b in range(256):
        first[b + 1] += first[b]
    order = np.empty(m, dtype=np.int64)
    fill = first[:256].copy()
    for k in range(m):
        order[fill[letters[k]]] = k
        fill[letters[k]] += 1
    w = n
    for t in range(interactions.shape[0]):
        a, b, c = interactions[t, 0], interactions[t, 1], interactions[t, 2]
        for i in range(first[a], first[a + 1]):
            x = order[i]
            hx = FNV_PRIME * np.uint64(indices[row_start + x])
            j0 = i if b == a else first[b]
            for j in range(j0, first[b + 1]):
                y = order[j]
                h2 = hx ^ np.uint64(indices[row_start + y])
                v2 = values[row_start + x] * values[row_start + y]
                key2 = (keys[x] * _MIX) ^ keys[y]  # the names' key of a cross: its features'
                record = names.count[4] < names.count[5]
                if c < 0:
                    if w == cap:
                        return -1
                    indices[w] = np.int64(h2 % udim)
                    values[w] = v2
                    row = -1
                    if record and not named(names, key2, indices[w]):
                        row = note_name(names, key2, indices[w])
                    if row == NAMES_FULL:
                        return NAMES_FULL
                    if row >= 0:
                        names.count[4] += 1
                        spans = names.spans
                        spans[row, 1:5] = parts[x]
                        spans[row, 5:9] = parts[y]
                        spans[row, 9] = UNUSED
                    w += 1
                    continue
                hxy = FNV_PRIME * h2
                k0 = j if c == b else first[c]
                for k in range(k0, first[c + 1]):
                    z = order[k]
                    if w == cap:
                        return -1
                    h3 = hxy ^ np.uint64(indices[row_start + z])
                    indices[w] = np.int64(h3 % udim)
                    values[w] = v2 * values[row_start + z]
                    key3 = (key2 * _MIX) ^ keys[z]
                    row = -1
                    if record and not named(names, key3, indices[w]):
                        row = note_name(names, key3, indices[w])
                    if row == NAMES_FULL:
                        return NAMES_FULL
                    if row >= 0:
                        names.count[4] += 1
                        spans = names.spans
                        spans[row, 1:5] = parts[x]
                        spans[row, 5:9] = parts[y]
                        spans[row, 9:13] = parts[z]
                    w += 1
    return w


@nb.njit(nogil=True, cache=True)
def name_and_cross_row(
    indices: np.ndarray,
    values: np.ndarray,
    row_start: int,
    n: int,
    letters: np.ndarray,
    parts: np.ndarray,
    keys: np.ndarray,
    interactions: np.ndarray,
    dim: int,
    names: Names,
) -> int:
    """After a row's own features ``[row_start, n)`` are read (their namespaces' first bytes,
    name parts and hash keys in ``letters``, ``parts`` and ``keys``): their new names recorded,
    then their crosses appended (:func:`cross_row`); the row's new end, -1 when ``indices`` is
    full, or :data:`NAMES_FULL`.

    Recording a row at a time keeps the kernels' loop over a line's bytes free of it, and lets
    the row's lookups of ``owner`` (one load each, most of them cache misses) overlap."""
    owner = names.owner
    if owner.shape[0]:
        for f in range(n - row_start):
            coordinate = indices[row_start + f]
            if owner[coordinate & SLOT_MASK] == fingerprint(keys[f]):
                continue
            row = note_name(names, keys[f], coordinate)
            if row == NAMES_FULL:
                return NAMES_FULL
            if row >= 0:
                spans = names.spans
                spans[row, 1:5] = parts[f]
                spans[row, 5] = UNUSED
                spans[row, 9] = UNUSED
    if interactions.shape[0]:
        return cross_row(
            indices, values, row_start, n, letters, parts, keys, interactions, dim, names
        )
    return n


# -- the Python side of a format -----------------------------------------------------------------


def token_text(buf: np.ndarray, start: int, stop: int) -> str:
    """A bad token as an error message quotes it (at most 60 characters)."""
    text = bytes(buf[start:stop]).decode("utf-8", errors="replace")
    return text if len(text) <= 60 else text[:57] + "..."


class Reader:
    """One format's kernel for one stream: its settings, how it is called and its errors."""

    errors: dict[int, tuple[str, str]] = COMMON_ERRORS  # (field, reason) of each code
    prefixes = np.zeros((1, 1), dtype=np.uint8)  # name prefixes of the format (see gather_names)

    def __init__(
        self,
        hasher: FeatureHasher,
        require_labels: bool,
        max_line_bytes: int,
        features: FeatureOptions | None = None,
        max_names: int = DEFAULT_MAX_NAMES,
    ) -> None:
        self.hasher = hasher
        self.dim = hasher.dim
        self.seed = hasher.seed
        self.require_labels = require_labels
        self.max_line_bytes = max_line_bytes
        self.features = features or FeatureOptions()
        self.keep = self.features.keep_table()
        self.interactions = self.features.interaction_array()
        self.name_set = new_names(max_names, hasher.dim)
        self._scratch = np.empty(0, dtype=np.uint8)
        self._letters = np.empty(0, dtype=np.int64)
        self._parts = np.empty((0, 4), dtype=np.int64)
        self._keys = np.empty(0, dtype=np.uint64)

    def scratch(self, stop: int, state: np.ndarray) -> np.ndarray:
        """Room for a kernel to build hash keys in: a key is at most a line, plus a separator."""
        size = min(stop - int(state[0]["pos"]), self.max_line_bytes) + 64
        if self._scratch.shape[0] < size:
            self._scratch = np.empty(size, dtype=np.uint8)
        return self._scratch

    def row_scratch(
        self, stop: int, state: np.ndarray, features: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Room for one row's own features (namespace byte, name parts, hash key), to record
        their names and cross them: at most ``features`` a line, or one per two bytes of a line."""
        if not self.interactions.shape[0] and not self.name_set.owner.shape[0]:
            return self._letters, self._parts, self._keys
        size = features or min(stop - int(state[0]["pos"]), self.max_line_bytes) // 2 + 2
        if self._letters.shape[0] < size:
            self._letters = np.empty(size, dtype=np.int64)
            self._parts = np.empty((size, 4), dtype=np.int64)
            self._keys = np.empty(size, dtype=np.uint64)
        return self._letters, self._parts, self._keys

    def read(self, buf: np.ndarray, stop: int, out: Rows, state: np.ndarray) -> None:
        """Parse lines from ``state.pos`` as the kernels' protocol says."""
        raise NotImplementedError

    def describe(self, buf: np.ndarray, state: np.ndarray) -> tuple[str | None, str]:
        """(field, reason) of the error in ``state``."""
        s = state[0]
        field, reason = self.errors[int(s["status"])]
        words = {
            "tok": token_text(buf, int(s["token_start"]), int(s["token_stop"])),
            "extra": int(s["extra"]),
            "dim": self.dim,
            "max_line_bytes": self.max_line_bytes,
        }
        return field.format(**words), reason.format(**words)

    def names(self, buf: np.ndarray, indices: np.ndarray) -> dict[str, int] | None:
        """The names first seen in the batch just read (name -> coordinate; ``None``: none),
        named features hashed into their places in ``indices`` if the format leaves that to
        Python."""
        return decode_names(self.name_set, buf, self.prefixes)

    @property
    def names_missed(self) -> int:
        """Occurrences of names not recorded because the parser recorded ``max_names``."""
        return int(self.name_set.count[2])
