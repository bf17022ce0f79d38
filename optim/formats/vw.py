"""Vowpal Wabbit text: ``label [importance] [tag]|ns feat[:value] feat ... |ns2:scale ...``.

The importance (>= 0) becomes the row's weight. The tag (a token starting with ``'``, or the token
touching the ``|``: in ``1|ns a`` the ``1`` is a tag) is ignored; a third number (VW's initial
prediction) is refused. Feature ``f`` of namespace ``ns`` is coordinate ``murmurhash3_32("ns^f",
hash_seed) % dim`` (key ``"f"`` when the namespace name is empty, as in ``| a b``): exactly
``FeatureHasher(dim, hash_seed).index("ns^f")``; but a name of digits is, as in VW, that number
plus the namespace's hash, modulo 2**32 (``| 3133`` is coordinate 3133: see
:mod:`optim.hashing`). The name ``ns^f`` is recorded; a namespace is known to interactions,
``ignore`` and ``keep`` by its first byte (``" "``: the unnamed one), as VW knows it
(:mod:`optim.features`). Its value defaults to 1 and is multiplied by the
namespace's scale (``|ns:2.0``, default 1). A line whose header has no number (``| a b``) has no
label. ``#`` is a comment only at the start of a line.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from optim.formats._scan import (
    COMMON_ERRORS,
    DBL_LIMIT,
    DBL_MAX,
    E_LABEL,
    E_LABEL_MISSING,
    E_LINE_TOO_LONG,
    E_VALUE,
    E_VALUE_RANGE,
    FIRST_FORMAT_ERROR,
    FULL_FIXES,
    FULL_INDICES,
    FULL_NAMES,
    NAMES_FULL,
    POW10,
    SMALL_ROW,
    Reader,
    Rows,
    canon_row,
    counters,
    digits_value,
    label_of,
    name_and_cross_row,
    names_full,
    note_fixup,
    parse_float,
    plain_decimal,
    skip_line,
    store,
    vw_hash,
)
from optim.hashing import _murmur3_32

E_IMPORTANCE, E_EXTRA, E_NO_BAR, E_EMPTY_NAME, E_SCALE = range(
    FIRST_FORMAT_ERROR, FIRST_FORMAT_ERROR + 5
)
ERRORS = COMMON_ERRORS | {
    E_LABEL_MISSING: (
        "label",
        "is missing (a token touching the '|' is a tag): required to learn (read unlabeled rows "
        "with require_labels=False)",
    ),
    E_IMPORTANCE: ("importance", "must be a finite number >= 0, got {tok!r}"),
    E_EXTRA: (
        "header",
        "unexpected {tok!r} before '|': expected 'label [importance] [tag]' "
        "(an initial prediction is not supported)",
    ),
    E_NO_BAR: ("features", "no '|': a VW line is 'label [importance] [tag]|namespace features'"),
    E_EMPTY_NAME: ("feature", "empty feature name in {tok!r}"),
    E_SCALE: ("namespace", "scale must be a finite number, got {tok!r}"),
}

# VW byte classes: feature-name bytes, whitespace, the line's end, '|' and ':'
# (ordered so that "name or colon" is ``c <= _C_COLON`` and "end or '|'" is ``c >= _C_EOL``)
_C_NAME, _C_COLON, _C_SPACE, _C_EOL, _C_BAR = 0, 1, 2, 3, 4
_VW_CLASS = np.zeros(256, dtype=np.uint8)
_VW_CLASS[[9, 11, 12, 13, 32]] = _C_SPACE
_VW_CLASS[10] = _C_EOL
_VW_CLASS[124] = _C_BAR
_VW_CLASS[58] = _C_COLON


@nb.njit(nogil=True, cache=True)
def _token_end(buf: np.ndarray, p: int) -> int:
    """The end of the VW token at ``p``: the next whitespace, '|' or line end."""
    c = _VW_CLASS[buf[p]]
    while c <= _C_COLON:
        p += 1
        c = _VW_CLASS[buf[p]]
    return p


@nb.njit(nogil=True, cache=True)
def read_rows(
    buf,
    stop,
    dim,
    seed,
    require_labels,
    max_line_bytes,
    out,
    scratch,
    names,
    keep,
    interactions,
    letters,
    parts,
    keys_of,
    state,
):
    indptr, indices, values, labels, weights, fixes, _ = out
    per_row = interactions.shape[0] > 0 or names.owner.shape[0] > 0  # name_and_cross_row
    p, lines, rows, n, labeled, weighted, nfix, canon = counters(state)
    max_rows = indptr.shape[0] - 1
    keys = np.empty(SMALL_ROW, dtype=np.int64)
    tmp = np.empty(SMALL_ROW, dtype=np.float64)
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
            p = skip_line(buf, i)
            lines += 1
            if p - line_start - 1 > max_line_bytes:
                err = E_LINE_TOO_LONG
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
            v, st = parse_float(buf, ts, i)
            if numbers == 0:
                label = label_of(v, st)
                if label < 0:
                    err = E_LABEL
            elif numbers == 1:
                weight = v
                if st == 1 or st == 2 or not 0 <= v <= DBL_MAX:  # an approximate read may be inf
                    err = E_IMPORTANCE
            else:
                err = E_EXTRA
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
                err = E_NO_BAR
                es = line_start
                ee = bar
        if err == 0 and numbers == 0 and require_labels:
            err = E_LABEL_MISSING
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
                scale, st = parse_float(buf, colon + 1, ns_e)
                if st == 1 or st == 2 or not abs(scale) <= DBL_MAX:
                    err = E_SCALE
                    es = ns_s
                    ee = ns_e
                    break
                ns_e = colon
            ns_len = ns_e - ns_s
            letter = buf[ns_s] if ns_len > 0 else 32  # VW's namespace: its first byte, or ' '
            kept = keep[letter]
            ns_hash = vw_hash(buf, ns_s, ns_e, seed)
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
                    err = E_EMPTY_NAME
                    es = ts
                    ee = _token_end(buf, ts)
                    break
                v = scale
                st = 0
                vs = i + 1
                if c == _C_COLON:
                    # plain decimals inline, anything else through the general reader
                    mant, i, _, nd, e10 = plain_decimal(buf, vs)
                    c = _VW_CLASS[buf[i]]
                    if nd == 0 or nd > 15 or e10 < -22 or c <= _C_COLON:
                        i = _token_end(buf, vs)
                        c = _VW_CLASS[buf[i]]
                        v, st = parse_float(buf, vs, i)
                    else:
                        v = float(mant) / POW10[-e10]
                    v *= scale  # exact IEEE product for exact v: what Python computes
                    if not abs(v) <= (DBL_MAX if st == 0 else DBL_LIMIT):
                        st = 2 if st != 1 else 1
                    if st == 1 or st == 2:
                        err = E_VALUE if st == 1 else E_VALUE_RANGE
                        es = vs
                        ee = i
                        break
                if not kept:
                    continue
                number, digits = digits_value(buf, ts, name_e)
                if digits:  # VW: a name of digits is that number plus the namespace's hash
                    h = (number + ns_hash) & np.uint64(0xFFFFFFFF)
                else:
                    if ns_len == 0:
                        h = _murmur3_32(buf, ts, name_e, seed)
                    else:
                        key_len = ns_len + 1
                        for k in range(ts, name_e):
                            scratch[key_len] = buf[k]
                            key_len += 1
                        h = _murmur3_32(scratch, 0, key_len, seed)
                if n == cap:
                    err = FULL_INDICES
                    break
                indices[n] = np.int64(h % udim)
                values[n] = v
                if per_row:
                    f = n - row_start
                    letters[f] = letter
                    keys_of[f] = h
                    parts[f, 0] = ns_s
                    parts[f, 1] = ns_e
                    parts[f, 2] = ts
                    parts[f, 3] = name_e
                if st == 3:
                    if nfix == fix_cap:
                        err = FULL_FIXES
                        break
                    note_fixup(out, nfix, n, vs, i, scale, lines + 1)
                    nfix += 1
                n += 1
        if err == 0 and per_row:
            end = name_and_cross_row(
                indices, values, row_start, n, letters, parts, keys_of, interactions, dim, names
            )
            if end < 0:
                err = FULL_NAMES if end == NAMES_FULL else FULL_INDICES
            n = max(end, n)
        if err < 0:  # full: roll the row back
            n = row_start
            nfix = fix_start
            p = line_start
            break
        p = skip_line(buf, i)
        lines += 1
        if err == 0 and p - line_start - 1 > max_line_bytes:
            err = E_LINE_TOO_LONG
            extra = p - line_start - 1
        if err != 0:
            n = row_start
            nfix = fix_start
            break
        if nfix > fix_start:
            canon = 1
        else:
            n = canon_row(indices, values, row_start, n, keys, tmp)
        labels[rows] = label
        if numbers > 0:
            labeled += 1
        weights[rows] = weight
        if numbers > 1:
            weighted += 1
        rows += 1
        indptr[rows] = n
        if names_full(names):
            err = FULL_NAMES
            break
    store(state, p, lines, rows, n, labeled, weighted, nfix, canon, err, es, ee, extra)


class VwReader(Reader):
    errors = ERRORS

    def read(self, buf: np.ndarray, stop: int, out: Rows, state: np.ndarray) -> None:
        read_rows(
            buf, stop, self.dim, self.seed, self.require_labels, self.max_line_bytes, out,
            self.scratch(stop, state), self.name_set, self.keep, self.interactions,
            *self.row_scratch(stop, state), state,
        )  # fmt: skip
