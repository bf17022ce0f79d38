"""NDJSON: one JSON object per line.

Either ``{"features": {"IQ": 120, "city": "paris"}, "label": 1, "weight": 1.0}``, hashed as
:meth:`optim.batch.Batch.from_rows` does (a number is feature ``name`` with that value, a string
is feature ``name=value`` with value 1), or ``{"indices": [3, 17], "values": [0.5, 1], "label":
0}`` (``values`` optional: all 1). ``label`` and ``weight`` may be ``null`` (absent). Any other key
is an error naming it. A named feature ``"ns^name"`` is in namespace ``n`` for interactions,
``ignore`` and ``keep`` (:mod:`optim.features`); index rows have no namespaces.

Lines of ``indices``/``values`` go through a compiled reader (:func:`read_rows`: the JSON token
readers of :mod:`~optim.formats._json_tokens`, keys in any order, values, label and weight
optional or null); any line it does not handle (named features, errors, anything unusual) is
decoded with ``orjson`` (:func:`read_row`), which is the one source of results and error messages
for every line the compiled reader leaves. Both write into the same arrays.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import orjson

from optim.features import DEFAULT_MAX_NAMES, FeatureOptions
from optim.formats._json_tokens import (
    APPROX,
    BAD,
    ENABLED,
    FLOAT,
    K_INDICES,
    K_LABEL,
    K_LABELS,
    K_VALUES,
    K_WEIGHT,
    K_WEIGHTS,
    floats,
    ints,
    is_ws,
    label01,
    literal,
    load8,
    number,
    swar_float,
    word_key,
)
from optim.formats._scan import (
    DONE,
    FIRST_FORMAT_ERROR,
    FULL_FIXES,
    FULL_INDICES,
    NOT_HANDLED,
    SMALL_ROW,
    Reader,
    Rows,
    canon_row,
    counters,
    skip_line,
    store,
)
from optim.hashing import FeatureHasher, feature_key

# A line orjson refused: the reader keeps the field and reason of the last one.
E_ROW = FIRST_FORMAT_ERROR

# How the compiled reader ends a line: handled, not handled, indices full, fixes full.
_OK, _NO, _FULL_I, _FULL_F = 0, 1, 2, 3


@nb.njit(nogil=True, cache=True)
def read_rows(buf, stop, dim, require_labels, max_line_bytes, out, state):
    # Lines of {"indices": [...], "values": [...], "label": 0, "weight": 1.5} (keys in any order;
    # values, label and weight optional or null), by the protocol of optim.formats._scan; a line
    # it does not handle ends the call with NOT_HANDLED, state.pos at its start (not counted).
    # An approximate weight is noted as entry -1 - row. The arrays are read by the JSON token
    # readers' ints/floats; the rest of a line is inline here.
    indptr, indices, values, labels, weights, fixes, fix_scale = out
    n_buf = buf.shape[0]
    fix_cap = fixes.shape[0]
    p, lines, rows, n, labeled, weighted, nfix, canon = counters(state)
    max_rows = indptr.shape[0] - 1
    keys = np.empty(SMALL_ROW, dtype=np.int64)
    tmp = np.empty(SMALL_ROW, dtype=np.float64)
    status = DONE
    while p < stop and rows < max_rows:
        line_start = p
        q = p
        while is_ws(buf[q], False):
            q += 1
        c = buf[q]
        if c == 10 or c == 35:  # a blank line or a comment
            while buf[q] != 10:
                q += 1
            if q - line_start > max_line_bytes:
                status = NOT_HANDLED
                break
            p = q + 1
            lines += 1
            continue
        if c != 123:
            status = NOT_HANDLED
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
        while is_ws(buf[q], False):
            q += 1
        c = buf[q]
        if c == 125:  # {}
            q += 1
            c = 0
        while c == 34:
            if q + 9 > n_buf:
                code = _NO
                break
            key, m = word_key(load8(buf, q + 1), K_INDICES, K_WEIGHT)
            if key < 0 or key in (K_LABELS, K_WEIGHTS) or seen & (1 << key):
                code = _NO
                break
            seen |= 1 << key
            q += m + 1
            while is_ws(buf[q], False):
                q += 1
            if buf[q] != 58:
                code = _NO
                break
            q += 1
            while is_ws(buf[q], False):
                q += 1
            c = buf[q]
            if key in (K_LABEL, K_WEIGHT):
                if c == 116 or c == 102 or c == 110:  # true, false, null
                    lit, m = literal(buf, q)
                    if lit < 0 or (lit < 2 and key == K_WEIGHT):
                        code = _NO
                        break
                    if lit < 2:
                        label = float(lit)
                    q += m
                else:
                    ts = q
                    ok = False
                    kind = FLOAT
                    fv = 0.0
                    if q + 11 <= n_buf:
                        neg = c == 45
                        s = q + 1 if neg else q
                        ok, fv, m, c = swar_float(load8(buf, s), load8(buf, s + 2), neg)
                        q = s + m if ok else q
                    if not ok:
                        kind, _iv, fv, q = number(buf, q)
                    if key == K_LABEL:
                        label = label01(kind, fv)
                        if label < 0:
                            code = _NO
                            break
                    elif kind == BAD or fv < 0:  # (an approximate value has the exact sign)
                        code = _NO
                        break
                    else:
                        weight = fv
                        has_weight = True
                        if kind == APPROX:  # the row's weight: entry -1 - row
                            if nfix == fix_cap:
                                code = _FULL_F
                                break
                            fixes[nfix, 0] = -1 - rows
                            fixes[nfix, 1] = ts
                            fixes[nfix, 2] = q
                            nfix += 1
            elif c != 91:  # not an array: only "values": null
                lit, m = literal(buf, q)
                if key != K_VALUES or lit != 2:
                    code = _NO
                    break
                q += m
            else:
                q += 1
                c = buf[q]
                while is_ws(c, False):
                    q += 1
                    c = buf[q]
                k = n
                if c == 93:
                    q += 1
                elif key == K_INDICES:  # the body reader's array readers, one line at a time
                    done, k, q = ints(buf, q, indices, k, dim, False)
                    code = _OK if done == 0 else (_FULL_I if done == 2 else _NO)
                else:
                    done, k, q, nfix = floats(buf, q, values, k, False, False, fixes, nfix)
                    code = (_OK, _NO, _FULL_I, _FULL_F)[done]
                if code != _OK:
                    break
                if key == K_INDICES:
                    n_idx = k - n
                else:
                    n_val = k - n
            while is_ws(buf[q], False):
                q += 1
            c = buf[q]
            if c == 44:
                q += 1
                while is_ws(buf[q], False):
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
            while is_ws(buf[q], False):
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
                FULL_INDICES
                if code == _FULL_I
                else (FULL_FIXES if code == _FULL_F else NOT_HANDLED)
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
            n = end if ordered else canon_row(indices, values, n, end, keys, tmp)
        for f in range(row_fix, nfix):
            fixes[f, 3] = lines + 1
            fix_scale[f] = 1.0
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
    store(state, p, lines, rows, n, labeled, weighted, nfix, canon, status, 0, 0, 0)


_KEYS = frozenset(("features", "indices", "values", "label", "weight"))


class RowError(Exception):
    """A line the orjson reader refuses: the field and why."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _label(y: object) -> float | None:
    if y is None:
        return None
    if isinstance(y, bool):
        return float(y)
    if isinstance(y, int | float) and y in (0, 1, -1):
        return 1.0 if y == 1 else 0.0
    raise RowError("label", f"must be -1/+1, 0/1 or a boolean, got {y!r}")


def _number(field: str, x: object) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise RowError(field, f"must be a number, got {x!r}")
    v = float(x)
    if not math.isfinite(v):
        raise RowError(field, f"must be finite, got {x!r}")
    return v


def read_row(
    line: bytes,
    dim: int,
    require_labels: bool,
    direct: list[int],
    values: list[float],
    key_pos: list[int],
    keys: list[str],
) -> tuple[float | None, float, bool]:
    """Append one line's features to ``direct`` (coordinates, -1 where a named feature's key
    goes), ``values``, ``key_pos`` and ``keys`` (named features): (label, weight, whether it
    gave a weight). Raises :class:`RowError`."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise RowError("json", f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise RowError("json", f"a line must be a JSON object, got {type(obj).__name__}")
    for key in obj:
        if key not in _KEYS:
            raise RowError(
                key, f"unknown key {key!r} (expected features, indices, values, label, weight)"
            )
    label = _label(obj.get("label"))
    if label is None and require_labels:
        raise RowError(
            "label",
            "is missing (required to learn; read unlabeled rows with require_labels=False)",
        )
    weight, weighted = 1.0, False
    if obj.get("weight") is not None:
        weight, weighted = _number("weight", obj["weight"]), True
        if weight < 0:
            raise RowError("weight", f"must be >= 0, got {obj['weight']!r}")
    if "features" in obj:
        if "indices" in obj or "values" in obj:
            raise RowError("features", "give either 'features' or 'indices'/'values'")
        features = obj["features"]
        if not isinstance(features, dict):
            raise RowError("features", f"must map names to values, got {type(features).__name__}")
        for name, value in features.items():
            if not name:
                raise RowError("features", "feature names must be non-empty")
            try:
                key, number = feature_key(name, value)
            except TypeError as exc:
                raise RowError(f"features.{name}", str(exc)) from None
            if not math.isfinite(number):
                raise RowError(f"features.{name}", f"value must be finite, got {value!r}")
            key_pos.append(len(direct))
            keys.append(key)
            direct.append(-1)
            values.append(number)
    elif "indices" in obj:
        indices = obj["indices"]
        if not isinstance(indices, list):
            raise RowError("indices", f"must be a list, got {type(indices).__name__}")
        for j in indices:
            if isinstance(j, bool) or not isinstance(j, int):
                raise RowError("indices", f"must be integers, got {j!r}")
            if not 0 <= j < dim:
                raise RowError("indices", f"{j} is outside [0, {dim})")
        vals = obj.get("values")
        if vals is None:
            vals = [1.0] * len(indices)
        elif not isinstance(vals, list) or len(vals) != len(indices):
            raise RowError("values", f"must be a list as long as indices ({len(indices)} entries)")
        else:
            vals = [_number("values", v) for v in vals]
        direct.extend(indices)
        values.extend(vals)
    elif "values" in obj:
        raise RowError("values", "given without 'indices'")
    return label, weight, weighted


class NdjsonReader(Reader):
    """Runs of lines through the compiled reader, each line it leaves through ``orjson``."""

    def __init__(
        self,
        hasher: FeatureHasher,
        require_labels: bool,
        max_line_bytes: int,
        features: FeatureOptions | None = None,
        max_names: int = DEFAULT_MAX_NAMES,
    ) -> None:
        super().__init__(hasher, require_labels, max_line_bytes, features, max_names)
        # lines given to orjson after the compiled reader refuses one: after a line it refuses
        # at once, Python takes more lines (up to 1024) before asking it again, so a stream of
        # named features pays few kernel calls
        self._slow_lines = 1
        self._keys: list[str] = []  # the named features of the batch being read, to hash
        self._key_pos: list[int] = []  # and their places in its indices
        self._named: dict[str, int] = {}  # names hashed as read (crosses), to report
        self._failure: tuple[str | None, str] = (None, "")

    def read(self, buf: np.ndarray, stop: int, out: Rows, state: np.ndarray) -> None:
        s = state[0]
        max_rows = out.indptr.shape[0] - 1
        while s["pos"] < stop and s["rows"] < max_rows:
            lines = int(s["lines"])
            if ENABLED:
                read_rows(buf, stop, self.dim, self.require_labels, self.max_line_bytes, out, state)
                if s["status"] != NOT_HANDLED:
                    return
            self._slow_lines = 1 if s["lines"] > lines else min(2 * self._slow_lines, 1024)
            self._read_slow(buf, stop, out, state)
            if s["status"] != DONE:
                return

    def _read_slow(self, buf: np.ndarray, stop: int, out: Rows, state: np.ndarray) -> None:
        """Up to ``self._slow_lines`` lines from ``state.pos`` decoded by ``orjson``."""
        s = state[0]
        s["status"] = DONE
        max_rows = out.indptr.shape[0] - 1
        pos, rows, n = int(s["pos"]), int(s["rows"]), int(s["nnz"])
        for _ in range(self._slow_lines):
            if pos >= stop or rows == max_rows:
                break
            eol = skip_line(buf, pos) - 1
            if eol - pos > self.max_line_bytes:
                s["lines"] += 1
                s["pos"] = eol + 1
                self._fail(
                    state,
                    "line",
                    f"line of {eol - pos} bytes is longer than "
                    f"max_line_bytes={self.max_line_bytes}",
                )
                return
            line = buf[pos:eol].tobytes().strip()
            if not line or line.startswith(b"#"):
                s["lines"] += 1
                pos = s["pos"] = eol + 1
                continue
            direct: list[int] = []
            values: list[float] = []
            key_pos: list[int] = []
            keys: list[str] = []
            try:
                label, weight, weighted = read_row(
                    line, self.dim, self.require_labels, direct, values, key_pos, keys
                )
            except RowError as error:
                s["lines"] += 1
                s["pos"] = eol + 1
                self._fail(state, error.field, error.reason)
                return
            if keys and self.features:  # hashed now, to cross or leave out namespaces
                row_keys, values, direct = self.features.expand_row(
                    keys, values, self.hasher.indices(keys).tolist(), self.dim
                )
                self._named.update(zip(row_keys, direct, strict=True))
                key_pos, keys = [], []
            if n + len(direct) > out.indices.shape[0]:
                s["status"] = FULL_INDICES  # the line is read again once they have grown
                return
            out.indices[n : n + len(direct)] = direct
            out.values[n : n + len(direct)] = values
            self._key_pos += [n + k for k in key_pos]
            self._keys += keys
            n += len(direct)
            out.labels[rows] = math.nan if label is None else label
            out.weights[rows] = weight
            s["labeled"] += label is not None
            s["weighted"] += weighted
            rows += 1
            out.indptr[rows] = n
            s["rows"], s["nnz"], s["canon"] = rows, n, 1  # sorted once the names are hashed
            s["lines"] += 1
            pos = s["pos"] = eol + 1

    def _fail(self, state: np.ndarray, field: str | None, reason: str) -> None:
        state[0]["status"] = E_ROW
        self._failure = (field, reason)

    def describe(self, buf: np.ndarray, state: np.ndarray) -> tuple[str | None, str]:
        if state[0]["status"] == E_ROW:
            return self._failure
        return super().describe(buf, state)

    def names(self, buf: np.ndarray, indices: np.ndarray) -> dict[str, int] | None:
        names, self._named = self._named, {}
        if self._keys:
            hashed = self.hasher.indices(self._keys)
            indices[np.asarray(self._key_pos, dtype=np.int64)] = hashed
            names.update(zip(self._keys, hashed.tolist(), strict=True))
            self._keys, self._key_pos = [], []
        return names or None
