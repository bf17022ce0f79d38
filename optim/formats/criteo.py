"""Criteo Display Advertising Challenge TSV: ``label<TAB>I1 ... I13<TAB>C1 ... C26``.

Exactly 40 tab-separated fields (39, without the label, when labels are not required), an empty
field being missing. Integer column ``Ii`` holding ``x`` is feature ``"Ii"`` with value
``log1p(x)`` (``-log1p(-x)`` for ``x < 0``); categorical column ``Cj`` holding ``h`` is feature
``"Cj=h"`` with value 1 (both hashed as ``FeatureHasher(dim, hash_seed)`` hashes names).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from optim.formats._scan import (
    COMMON_ERRORS,
    E_LABEL,
    E_LINE_TOO_LONG,
    FIRST_FORMAT_ERROR,
    FULL_INDICES,
    SMALL_ROW,
    Reader,
    Rows,
    canon_row,
    counters,
    label_of,
    parse_count,
    parse_float,
    store,
)
from optim.features import DEFAULT_MAX_NAMES, FeatureOptions
from optim.hashing import FeatureHasher, _murmur3_32

E_FIELDS, E_INTEGER = range(FIRST_FORMAT_ERROR, FIRST_FORMAT_ERROR + 2)
ERRORS = COMMON_ERRORS | {
    E_FIELDS: (
        "fields",
        "expected 40 tab-separated fields (label, I1..I13, C1..C26), got {extra}",
    ),
    E_INTEGER: ("I{extra}", "must be an integer, got {tok!r}"),
}


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
    int_index,
    prefixes,
    state,
):
    indptr, indices, values, labels = out.indptr, out.indices, out.values, out.labels
    p, lines, rows, n, labeled, weighted, nfix, canon = counters(state)
    max_rows = indptr.shape[0] - 1
    keys = np.empty(SMALL_ROW, dtype=np.int64)
    tmp = np.empty(SMALL_ROW, dtype=np.float64)
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
            err = E_LINE_TOO_LONG
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
            err = FULL_INDICES
            break
        lines += 1
        p = eol + 1
        label = np.nan
        if tabs == 39:
            v_end = i
            while buf[v_end] != 9:
                v_end += 1
            v, st = parse_float(buf, i, v_end)
            label = label_of(v, st)
            if label < 0:
                err = E_LABEL
                es = i
                ee = v_end
                break
            i = v_end + 1
        elif tabs != 38 or require_labels:
            err = E_FIELDS
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
            x, ok = parse_count(buf, fs, fe)
            if not ok:
                err = E_INTEGER
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
        n = canon_row(indices, values, row_start, n, keys, tmp)
        labels[rows] = label
        if label == label:
            labeled += 1
        rows += 1
        indptr[rows] = n
    store(state, p, lines, rows, n, labeled, weighted, nfix, canon, err, es, ee, extra)


class CriteoReader(Reader):
    errors = ERRORS

    def __init__(
        self,
        hasher: FeatureHasher,
        require_labels: bool,
        max_line_bytes: int,
        features: FeatureOptions | None = None,
        max_names: int = DEFAULT_MAX_NAMES,
    ) -> None:
        super().__init__(hasher, require_labels, max_line_bytes, features, max_names)
        self._int_index = hasher.indices(f"I{i}" for i in range(1, 14))
        # each categorical column's key prefix "Cj=": its length, then its bytes
        self._prefixes = np.zeros((26, 8), dtype=np.uint8)
        for j in range(26):
            prefix = f"C{j + 1}=".encode()
            self._prefixes[j, 0] = len(prefix)
            self._prefixes[j, 1 : 1 + len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)

    def read(self, buf: np.ndarray, stop: int, out: Rows, state: np.ndarray) -> None:
        read_rows(
            buf, stop, self.dim, self.seed, self.require_labels, self.max_line_bytes, out,
            self.scratch(stop, state), self._int_index, self._prefixes, state,
        )  # fmt: skip
