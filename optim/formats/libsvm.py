"""libsvm (svmlight) text: ``label idx:val idx:val ... [# comment]``.

Indices are the coordinates as written (a 1-based file needs ``dim`` = its largest index + 1) and
must lie in ``[0, dim)``. A ``qid:N`` token is ignored; ``#`` starts a comment anywhere. A line
whose first token holds a ``:`` has no label.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from optim.formats._scan import (
    COMMON_ERRORS,
    E_LABEL,
    E_LABEL_MISSING,
    E_LINE_TOO_LONG,
    E_VALUE,
    E_VALUE_RANGE,
    FIRST_FORMAT_ERROR,
    FULL_FIXES,
    FULL_INDICES,
    POW10,
    SMALL_ROW,
    Reader,
    Rows,
    canon_row,
    counters,
    ends_token,
    find,
    is_space,
    label_of,
    note_fixup,
    parse_index,
    scan_float,
    skip_line,
    store,
    token_end,
)

E_INDEX, E_INDEX_RANGE, E_NO_COLON = range(FIRST_FORMAT_ERROR, FIRST_FORMAT_ERROR + 3)
ERRORS = COMMON_ERRORS | {
    E_INDEX: ("index", "must be a non-negative integer, got {tok!r}"),
    E_INDEX_RANGE: ("index", "{tok} is outside [0, {dim})"),
    E_NO_COLON: ("feature", "expected index:value, got {tok!r}"),
}


@nb.njit(nogil=True, cache=True)
def read_rows(
    buf,
    stop,
    dim,
    require_labels,
    max_line_bytes,
    out,
    state,
):
    indptr, indices, values, labels, _, fixes, _ = out
    p, lines, rows, n, labeled, weighted, nfix, canon = counters(state)
    max_rows = indptr.shape[0] - 1
    keys = np.empty(SMALL_ROW, dtype=np.int64)
    tmp = np.empty(SMALL_ROW, dtype=np.float64)
    cap = indices.shape[0]
    fix_cap = fixes.shape[0]
    err = 0
    es = 0
    ee = 0
    extra = 0
    while p < stop and rows < max_rows:
        line_start = p
        c = buf[p]
        while is_space(c):
            p += 1
            c = buf[p]
        if c == 10 or c == 35:  # blank line or comment
            p = skip_line(buf, p)
            lines += 1
            if p - line_start - 1 > max_line_bytes:
                err = E_LINE_TOO_LONG
                extra = p - line_start - 1
                break
            continue
        row_start = n
        fix_start = nfix
        # the label: the first token, unless it is a feature (holds ':')
        ts = p
        v, p, st = scan_float(buf, p)
        lab = label_of(v, st)
        if lab < 0 or not ends_token(buf[p]):
            te = token_end(buf, ts)
            colon = find(buf, ts, te, 58)
            if colon < 0:
                err = E_LABEL
                es = ts
                ee = te
            elif require_labels:
                err = E_LABEL_MISSING
                es = ts
                ee = te
            p = ts
            lab = np.nan
        prev = -1
        ordered = True
        while err == 0:
            c = buf[p]
            while is_space(c):
                p += 1
                c = buf[p]
            if c == 10 or c == 35:
                break
            ts = p
            idx = 0
            d = np.int64(c) - 48
            # The index and the value below are read by hand, not by decimal_run and
            # plain_decimal: this loop ran ~25% (index) and ~10% (value) slower with them.
            while 0 <= d <= 9:
                idx = idx * 10 + d
                p += 1
                d = np.int64(buf[p]) - 48
            if d != 10 or p == ts or p - ts > 18:  # not 1 to 18 digits then ':'
                te = token_end(buf, ts)
                colon = find(buf, ts, te, 58)
                if colon < 0:
                    err = E_NO_COLON
                    es = ts
                    ee = te
                    break
                if colon - ts == 3 and buf[ts] == 113 and buf[ts + 1] == 105 and buf[ts + 2] == 100:
                    p = te  # qid:N
                    continue
                idx, st = parse_index(buf, ts, colon)
                if st != 0:
                    err = E_INDEX if st == 1 else E_INDEX_RANGE
                    es = ts
                    ee = colon
                    break
                p = colon
            if idx >= dim:
                err = E_INDEX_RANGE
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
                v, p, st = scan_float(buf, vs)
            else:
                v = float(mant) / POW10[-e10]  # exact mant < 2**53: correctly rounded
                st = 0
            if st == 1 or st == 2 or not ends_token(buf[p]):
                err = E_VALUE_RANGE if st == 2 and ends_token(buf[p]) else E_VALUE
                es = vs
                ee = token_end(buf, vs)
                break
            if n == cap:
                err = FULL_INDICES
                break
            indices[n] = idx
            values[n] = v
            ordered = ordered and idx > prev
            prev = idx
            if st == 3:
                if nfix == fix_cap:
                    err = FULL_FIXES
                    break
                note_fixup(out, nfix, n, vs, p, 1.0, lines + 1)
                nfix += 1
            n += 1
        if err < 0:  # full: roll the row back
            n = row_start
            nfix = fix_start
            p = line_start
            break
        p = skip_line(buf, p)  # past a comment, then the '\n'
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
        elif not ordered:
            n = canon_row(indices, values, row_start, n, keys, tmp)
        labels[rows] = lab
        if lab == lab:
            labeled += 1
        rows += 1
        indptr[rows] = n
    store(state, p, lines, rows, n, labeled, weighted, nfix, canon, err, es, ee, extra)


class LibsvmReader(Reader):
    errors = ERRORS

    def read(self, buf: np.ndarray, stop: int, out: Rows, state: np.ndarray) -> None:
        read_rows(buf, stop, self.dim, self.require_labels, self.max_line_bytes, out, state)
