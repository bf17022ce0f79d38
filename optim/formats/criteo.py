"""Criteo Display Advertising Challenge TSV: ``label<TAB>I1 ... I13<TAB>C1 ... C26``.

Exactly 40 tab-separated fields (39, without the label, when labels are not required), an empty
field being missing. Integer column ``Ii`` holding ``x`` is feature ``"Ii"`` with value
``log1p(x)`` (``-log1p(-x)`` for ``x < 0``); categorical column ``Cj`` holding ``h`` is feature
``"Cj=h"`` with value 1 (both hashed as ``FeatureHasher(dim, hash_seed)`` hashes names). Those
are the names recorded; for interactions, ``ignore`` and ``keep`` the integer columns are
namespace ``I`` and the categorical ones namespace ``C`` (``["CC"]`` crosses every pair of
categorical values, ``["IC"]`` every integer column with every categorical value).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from optim.features import DEFAULT_MAX_NAMES, FeatureOptions
from optim.formats._scan import (
    COMMON_ERRORS,
    E_LABEL,
    E_LINE_TOO_LONG,
    FIRST_FORMAT_ERROR,
    FULL_INDICES,
    FULL_NAMES,
    NAMES_FULL,
    SMALL_ROW,
    Reader,
    Rows,
    canon_row,
    counters,
    label_of,
    name_and_cross_row,
    names_full,
    parse_count,
    parse_float,
    store,
)
from optim.hashing import FeatureHasher, _murmur3_32, murmurhash3_32

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
    int_keys,
    prefixes,
    names,
    keep,
    interactions,
    letters,
    parts,
    keys_of,
    state,
):
    per_row = interactions.shape[0] > 0 or names.owner.shape[0] > 0  # name_and_cross_row
    keep_i = keep[73] != 0  # namespace 'I'
    keep_c = keep[67] != 0  # namespace 'C'
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
        line_start = p
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
            if not keep_i:
                continue
            indices[n] = int_index[col]
            values[n] = np.log1p(x) if x >= 0 else -np.log1p(-x)
            if per_row:
                f = n - row_start
                letters[f] = 73
                keys_of[f] = int_keys[col]
                parts[f, 0] = -1 - col
                parts[f, 1] = 0
                parts[f, 2] = 0
                parts[f, 3] = 0
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
            if fe == fs or not keep_c:
                continue
            plen = prefixes[col, 0]
            for k in range(plen):
                scratch[k] = prefixes[col, k + 1]
            key_len = plen
            for k in range(fs, fe):
                scratch[key_len] = buf[k]
                key_len += 1
            h = _murmur3_32(scratch, 0, key_len, seed)
            indices[n] = np.int64(h % udim)
            values[n] = 1.0
            if per_row:
                f = n - row_start
                letters[f] = 67
                keys_of[f] = h
                parts[f, 0] = -14 - col
                parts[f, 1] = 0
                parts[f, 2] = fs
                parts[f, 3] = fe
            n += 1
        if per_row:
            end = name_and_cross_row(
                indices, values, row_start, n, letters, parts, keys_of, interactions, dim, names
            )
            if end < 0:  # full: roll the row back
                n = row_start
                p = line_start
                lines -= 1
                err = FULL_NAMES if end == NAMES_FULL else FULL_INDICES
                break
            n = end
        n = canon_row(indices, values, row_start, n, keys, tmp)
        labels[rows] = label
        if label == label:
            labeled += 1
        rows += 1
        indptr[rows] = n
        if names_full(names):
            err = FULL_NAMES
            break
    store(state, p, lines, rows, n, labeled, weighted, nfix, canon, err, es, ee, extra)


# the names' prefixes: "I1".."I13", then "C1=".."C26=" (a length, then the bytes)
PREFIXES = np.zeros((39, 5), dtype=np.uint8)
for _k, _prefix in enumerate([f"I{i}" for i in range(1, 14)] + [f"C{j}=" for j in range(1, 27)]):
    PREFIXES[_k, 0] = len(_prefix)
    PREFIXES[_k, 1 : 1 + len(_prefix)] = np.frombuffer(_prefix.encode(), dtype=np.uint8)


class CriteoReader(Reader):
    errors = ERRORS
    prefixes = PREFIXES

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
        self._int_keys = np.array(
            [murmurhash3_32(f"I{i}", hasher.seed) for i in range(1, 14)], dtype=np.uint64
        )
        # each categorical column's key prefix "Cj=": its length, then its bytes
        self._prefixes = np.zeros((26, 8), dtype=np.uint8)
        for j in range(26):
            prefix = f"C{j + 1}=".encode()
            self._prefixes[j, 0] = len(prefix)
            self._prefixes[j, 1 : 1 + len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)

    def read(self, buf: np.ndarray, stop: int, out: Rows, state: np.ndarray) -> None:
        read_rows(
            buf, stop, self.dim, self.seed, self.require_labels, self.max_line_bytes, out,
            self.scratch(stop, state), self._int_index, self._int_keys, self._prefixes,
            self.name_set, self.keep, self.interactions, *self.row_scratch(stop, state, 39),
            state,
        )  # fmt: skip
