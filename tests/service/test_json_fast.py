"""The compiled JSON readers (optim.formats.json_csr, optim.formats.ndjson) change nothing but
speed.

A CSR body read by ``service.batches.batch_from_body`` must give exactly what ``orjson.loads`` +
``batch_from_json`` give (the same arrays bit for bit, or the same error), and an NDJSON stream
parsed by ``StreamParser`` exactly what the Python line reader it replaced gave (kept below,
verbatim, as ``OldStreamParser``): the same batches at the same boundaries, the same errors with
the same lines, rows and ``valid_before``. Inputs are generated valid and then mutated byte by
byte, with numbers in many notations; tests also check the fast paths really take the inputs
they are meant for.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optim import Batch, BatchError, OnlineLogisticRegression
from optim.formats import ParseError, StreamParser
from optim.formats._scan import canon_all
from optim.formats.json_csr import read_csr
from optim.formats.ndjson import NdjsonReader, RowError, read_row
from optim.hashing import feature_key
from service.batches import batch_from_body, batch_from_json
from service.errors import ApiError
from service.settings import Settings

DIM = 64
MODEL = OnlineLogisticRegression("adagrad", dim=DIM)
SETTINGS = Settings(max_rows_per_batch=50, max_nnz_per_row=12)


# -- comparing results -------------------------------------------------------------------------


def bits(a: np.ndarray | None) -> Any:
    """An array as (dtype, shape, raw bits): equal iff bit-identical (-0.0 differs from 0.0)."""
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    return (a.dtype.str, a.shape, a.tobytes())


def batch_key(b: Batch) -> tuple:
    return (
        bits(b.indptr),
        bits(b.indices),
        bits(b.values),
        bits(b.labels),
        bits(b.weights),
        b.dim,
        None if b.feature_names is None else sorted(b.feature_names.items()),
    )


def error_key(e: Exception) -> tuple:
    if isinstance(e, ApiError):
        return ("ApiError", e.status, e.code, e.detail, e.where)
    if isinstance(e, ParseError):
        return (
            "ParseError",
            str(e),
            e.where,
            e.line,
            e.row,
            e.field,
            [batch_key(b) for b in e.valid_before],
        )
    if isinstance(e, BatchError):
        return ("BatchError", str(e), e.where)
    raise e


def outcome(fn: Any) -> tuple:
    try:
        return ("ok", batch_key(fn()))
    except (ApiError, BatchError) as e:
        return ("error", error_key(e))


# -- CSR bodies ----------------------------------------------------------------------------------


def old_batch(data: bytes, require_labels: bool) -> Batch:
    """What the service did before the compiled reader: orjson, then batch_from_json."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ApiError(422, "invalid_json", f"the body is not valid JSON: {error}", {}) from None
    return batch_from_json(body, MODEL, SETTINGS, require_labels=require_labels)


def check_body(data: bytes) -> bool:
    """Old and new agree on ``data`` (both label modes); whether the fast path took it."""
    for labels in (True, False):
        old = outcome(lambda labels=labels: old_batch(data, labels))
        new = outcome(
            lambda labels=labels: batch_from_body(data, MODEL, SETTINGS, require_labels=labels)
        )
        assert new == old, data
    return read_csr(data) is not None


def float_texts(x: float) -> list[str]:
    """Ways JSON can write (about) ``x``."""
    out = [repr(x), f"{x:.17g}", f"{x:.25g}", f"{x:e}", f"{x:E}", f"{x:.3e}", f"{x:.20e}"]
    if x == int(x) and abs(x) < 1e18:
        out += [str(int(x)), f"{int(x)}.0", f"{int(x)}e0", f"{int(x)}.000"]
    return [t.replace("inf", "1e999").replace("nan", "0") for t in out]


SPECIAL_NUMBERS = [
    "0", "-0", "0.0", "-0.0", "1", "-1", "1.0", "-1.0", "0e0", "-0e5", "1E5", "1e+5", "1e-5",
    "1e05", "2.5E-3", "123456789", "1234567890123456789", "12345678901234567890",
    "9007199254740993", "18446744073709551615", "18446744073709551616", "0.1",
    "0.30000000000000004",
    "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308", "1e308",
    "1e309", "-1e309", "5e-324", "2e-324", "1e-400", "4.9406564584124654e-324",
    "2.2250738585072011e-308", "0.1000000000000000055511151231257827", "1." + "0" * 30 + "1",
    "3." + "1" * 40, "1" * 30 + ".5", "7.1234567", "7.12345678", "0.0000001", "1.5e1", "3.0",
    "01", "1.", ".5", "+1", "-", "--1", "1e", "1e+", "0x10", "1_0", "NaN", "Infinity", "1.0.0",
]  # fmt: skip


@st.composite
def json_number(draw: st.DrawFn, *, integer: bool = False) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from(SPECIAL_NUMBERS))
    if integer or kind <= 3:
        v = draw(st.integers(-3, DIM + 3) if kind <= 2 else st.integers(-(10**20), 10**20))
        return draw(st.sampled_from([str(v), f"{v}.0", f"{v}e0"])) if kind == 1 else str(v)
    x = draw(
        st.floats(allow_nan=False, allow_infinity=False)
        if kind <= 5
        else st.floats(-10, 10, allow_nan=False).map(lambda v: round(v, draw(st.integers(0, 9))))
    )
    return draw(st.sampled_from(float_texts(x)))


WS = st.text(" \t\n\r", max_size=2)
# numbers as a client writes them: what the compiled readers take on their fastest paths
SIMPLE_NUMBER = st.one_of(
    st.integers(-(10**7), 10**7).map(str),
    st.floats(-9.5, 9.5).map(lambda x: f"{x:.{abs(hash(x)) % 8}f}"),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


def json_array(draw: st.DrawFn, items: list[str], ws: st.SearchStrategy[str] = WS) -> str:
    if not items:
        return "[" + draw(ws) + "]"
    return "[" + ",".join(draw(ws) + x + draw(ws) for x in items) + "]"


@st.composite
def csr_body(draw: st.DrawFn) -> bytes:
    n_rows = draw(st.integers(0, 5))
    lengths = [draw(st.integers(0, 5)) for _ in range(n_rows)]
    nnz = sum(lengths)
    indptr = [str(x) for x in np.cumsum([0, *lengths]).tolist()]
    if draw(st.integers(0, 9)) == 0:  # a wrong indptr now and then
        indptr = [draw(json_number(integer=True)) for _ in indptr]
    indices = [
        draw(st.sampled_from([str(draw(st.integers(0, DIM - 1)))] * 6 + ["-0", "3.0", "1e1"]))
        if draw(st.integers(0, 12))
        else draw(json_number(integer=True))
        for _ in range(nnz)
    ]
    values = [draw(st.one_of(json_number(), SIMPLE_NUMBER)) for _ in range(nnz)]
    fields = {"indptr": indptr, "indices": indices, "values": values}
    if draw(st.booleans()):
        labels = ["0", "1", "-1", "true", "false", "1.0", "-0.0", "0e0", "1E0"]
        fields["labels"] = [
            draw(st.sampled_from(labels)) if draw(st.integers(0, 15)) else draw(json_number())
            for _ in range(n_rows + (draw(st.integers(0, 12)) == 0))
        ]
    if draw(st.booleans()):
        fields["weights"] = [draw(json_number()) for _ in range(n_rows)]
    items = [(f'"{k}"', json_array(draw, v)) for k, v in fields.items()]
    extra = draw(st.integers(0, 14))
    if extra == 0:
        items.append(('"labels"', "null"))
    elif extra == 1:
        items.append(('"weights"', "null"))
    elif extra == 2:
        items.append(('"indptr"', "[0]"))  # a duplicate key
    elif extra == 3:
        items.append(('"\\u0069ndices"', "[]"))  # a key with an escape
    elif extra == 4:
        items.append(('"extra"', "1"))
    elif extra == 5:
        items = [('"rows"', '[{"features": {"a": 1}, "label": 1}]')]
    elif extra == 6 and items:
        items.pop(draw(st.integers(0, len(items) - 1)))
    items = draw(st.permutations(items))
    body = "{" + ",".join(draw(WS) + k + draw(WS) + ":" + draw(WS) + v + draw(WS) for k, v in items)
    return (draw(WS) + body + "}" + draw(WS)).encode()


MUTATION_BYTES = b' \t\n\r\x0b\x00\xff\xc3,:[]{}"-+.eE0123456789ntfalsetrue\\'


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.integers(0, 4))
        at = draw(st.integers(0, len(b)))
        if op == 0 and at < len(b):
            del b[at]
        elif op == 1:
            b[at:at] = bytes([draw(st.sampled_from(MUTATION_BYTES))])
        elif op == 2 and at < len(b):
            b[at] = draw(st.sampled_from(MUTATION_BYTES))
        elif op == 3:
            b = b[:at]
        else:
            end = draw(st.integers(at, len(b)))
            b[at:end] = b[at:end][::-1]
    return bytes(b)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_csr_bodies_match_the_orjson_path(data: st.DataObject) -> None:
    body = data.draw(csr_body())
    if data.draw(st.integers(0, 2)) == 0:
        body = mutate(body, data.draw)
    check_body(body)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    rows=st.lists(
        st.lists(st.tuples(st.integers(0, DIM - 1), st.floats(allow_nan=False)), max_size=6),
        max_size=8,
    ),
    labels=st.none() | st.lists(st.sampled_from([0, 1, -1, True, False, 1.0]), max_size=8),
    weights=st.none() | st.lists(st.floats(0, 1e300), max_size=8),
)
def test_csr_bodies_from_orjson(rows, labels, weights) -> None:
    """Bodies as a client library writes them: the fast path takes every valid one."""
    indptr = np.cumsum([0] + [len(r) for r in rows]).tolist()
    body: dict[str, Any] = {
        "indptr": indptr,
        "indices": [j for r in rows for j, _ in r],
        "values": [v for r in rows for _, v in r],
    }
    if labels is not None:
        body["labels"] = labels[: len(rows)] + [1] * (len(rows) - len(labels))
    if weights is not None:
        body["weights"] = weights[: len(rows)] + [1.0] * (len(rows) - len(weights))
    data = orjson.dumps(body)
    check_body(data)
    if all(abs(v) < 1e300 for r in rows for _, v in r):  # (near DBL_MAX: the slow path)
        assert read_csr(data) is not None


def test_csr_fast_path_takes_the_usual_shapes() -> None:
    good = [
        b'{"indptr":[0,2,3],"indices":[1,5,2],"values":[0.5,-1,3e2],"labels":[1,0]}',
        b' {\n "indices" : [ 1 , 5 , 2 ] ,\r\n\t"values":[1.0,2.0,3.0],"indptr":[0,2,3]}\n',
        b'{"indptr":[0],"indices":[],"values":[],"labels":[],"weights":[]}',
        b'{"indptr":[0,1],"indices":[0],"values":[0.1234567890123456789],"labels":[true],'
        b'"weights":null}',
        b'{"indptr":[0,1],"indices":[0],"values":[1],"labels":null,"weights":[2.5]}',
    ]
    for data in good:
        assert check_body(data), data
    bad = [
        b"",
        b"[]",
        b'{"rows":[]}',
        b'{"indptr":[0,1],"indices":[0],"values":[1],"indptr":[0,1]}',
        b'{"indptr":[0,1],"indices":[0],"values":[1]}x',
        b'{"indptr":[0,1],"indices":[1.0],"values":[1]}',
        b'{"indptr":[0,1],"indices":[0],"values":[1e400]}',
        b'{"indptr":[0,1],"indices":[0],"values":[01]}',
        b'{"indptr":[0,1],"indices":[0],"values":[null]}',
        b'{"indptr":[0,1],"indices":[0],"values":[true]}',
        b'{"indptr":[0,1],"indices":[0],"values":[1],"labels":[0.5]}',
        b'{"indptr":[0,1],"indices":[99],"values":[1]}',
        b'{"indptr":[0,1],"indices":[0],"values":[1],"weights":[-1]}',
        b'{"indptr":[0,1],"indices":[0],"values":[1],"labels":[1e-400]}',
        b'{"\\u0069ndptr":[0,1],"indices":[0],"values":[1]}',
    ]
    for data in bad:
        check_body(data)  # same outcome (an error, or the slow path's batch)


def test_csr_numbers_bit_for_bit() -> None:
    """Every special number, in every position, and random floats in many notations."""
    rng = random.Random(7)
    texts = list(SPECIAL_NUMBERS)
    for _ in range(3000):
        x = rng.choice(
            [rng.random(), rng.uniform(-1e6, 1e6), rng.lognormvariate(0, 30), rng.random() * 1e-300]
        )
        x = -x if rng.random() < 0.3 else x
        texts += float_texts(x)
    texts += [
        f"{rng.randint(0, 9)}.{rng.randint(0, 10 ** rng.randint(1, 12))}" for _ in range(3000)
    ]
    for k in range(0, len(texts), 50):
        chunk = texts[k : k + 50]
        for t in chunk:
            single = f'{{"indptr":[0,1],"indices":[3],"values":[{t}],"weights":[{t}]}}'
            check_body(single.encode())
        good = []
        for t in chunk:
            try:
                v = orjson.loads(t)
            except orjson.JSONDecodeError:
                continue
            if isinstance(v, int | float) and math.isfinite(float(v)):
                good.append(t)
        many = (
            f'{{"indptr":[0,{len(good)}],"indices":[{",".join(["7"] * len(good))}],'
            f'"values":[{",".join(good)}]}}'
        ).encode()
        check_body(many)
        arrays = read_csr(many)
        if arrays is not None:  # (duplicates of index 7 are summed by from_arrays)
            want = np.array([float(orjson.loads(t)) for t in good])
            assert bits(arrays[2]) == bits(want)


# -- NDJSON ------------------------------------------------------------------------------------


class OldStreamParser(StreamParser):
    """The parser with the ndjson reader it had before the compiled one (copied verbatim)."""

    def _step(
        self, arr: np.ndarray, pos: int, stop: int, max_rows: int
    ) -> tuple[Batch | None, int, int, tuple[str | None, str] | None]:
        data = self._buf
        indptr = [0]
        direct: list[int] = []  # coordinates, -1 where a hashed key goes
        values: list[float] = []
        key_pos: list[int] = []
        keys: list[str] = []
        labels: list[float | None] = []
        weights: list[float] = []
        weighted = False
        lines = 0
        failure = None
        while pos < stop and len(labels) < max_rows:
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
                label, weight, row_weighted = read_row(
                    line, self.dim, self.require_labels, direct, values, key_pos, keys
                )
            except RowError as exc:
                del direct[mark[0] :], values[mark[0] :], key_pos[mark[1] :], keys[mark[1] :]
                failure = (exc.field, exc.reason)
                break
            labels.append(label)
            weights.append(weight)
            weighted = weighted or row_weighted
            indptr.append(len(direct))
        batch = None
        if labels:
            idx = np.asarray(direct, dtype=np.int64)
            names = None
            if keys:
                hashed = self.hasher.indices(keys)
                idx[np.asarray(key_pos, dtype=np.int64)] = hashed
                names = dict(zip(keys, hashed.tolist(), strict=True))
            ptr = np.asarray(indptr, dtype=np.int64)
            vals = np.asarray(values, dtype=np.float64)
            nnz = canon_all(ptr, idx, vals)
            all_labeled = all(y is not None for y in labels)
            batch = Batch(
                ptr,
                idx[:nnz],
                vals[:nnz],
                np.asarray(labels, dtype=np.float64) if all_labeled else None,
                np.asarray(weights, dtype=np.float64) if weighted else None,
                self.dim,
                names,  # the model remembers them for inspection by name
            )
        return batch, pos, lines, failure


def trace(cls: type, chunks: list[bytes], **kwargs: Any) -> list:
    """Everything a parser says, call by call, fed ``chunks`` then finished (resuming after an
    error with ``feed(b"")``, as a caller skipping bad lines does)."""
    parser = cls("ndjson", dim=kwargs.pop("dim", DIM), **kwargs)
    out: list = []

    def call(fn: Any, *args: Any) -> bool:
        try:
            out.append(("batches", [batch_key(b) for b in fn(*args)]))
            failed = False
        except ParseError as e:
            out.append(("error", error_key(e)))
            failed = True
        out.append((parser.lines_read, parser.rows_parsed, parser.buffered_bytes))
        return failed

    for chunk in chunks:
        failed = call(parser.feed, chunk)
        for _ in range(50):
            if not failed:
                break
            failed = call(parser.feed, b"")
    for _ in range(50):
        if not call(parser.finish):
            break
    return out


def check_stream(chunks: list[bytes], **kwargs: Any) -> list:
    old = trace(OldStreamParser, chunks, **dict(kwargs))
    new = trace(StreamParser, chunks, **dict(kwargs))
    assert new == old, b"".join(chunks)
    return new


@st.composite
def ndjson_line(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(st.sampled_from(["", "  ", "# a comment", "\t#x", "\r", "\x0c", "[1]", "{}"]))
    if kind == 1:
        feats = draw(
            st.dictionaries(
                st.sampled_from(["IQ", "city", "a", "é", "x\\"]),
                st.one_of(st.integers(-5, 5), st.floats(-10, 10), st.sampled_from(["paris", "b"])),
                max_size=3,
            )
        )
        row: dict[str, Any] = {"features": feats}
        if draw(st.booleans()):
            row["label"] = draw(st.sampled_from([0, 1, True, None]))
        return orjson.dumps(row).decode()
    m = draw(st.integers(0, 6))
    edges = st.sampled_from([0, DIM - 1, DIM, DIM + 1, 10**7 - 1, 10**7, 10**8]).map(str)
    indices = [
        draw(st.one_of(edges, json_number(integer=True)))
        if draw(st.integers(0, 3)) == 0
        else str(draw(st.integers(0, DIM - 1)))
        for _ in range(m)
    ]
    items = [('"indices"', json_array(draw, indices, st.sampled_from(["", " "])))]
    if draw(st.integers(0, 3)):
        values = [
            draw(json_number()) if draw(st.integers(0, 3)) == 0 else draw(SIMPLE_NUMBER)
            for _ in range(m + (draw(st.integers(0, 15)) == 0))
        ]
        items.append(('"values"', json_array(draw, values, st.sampled_from(["", " ", "\t"]))))
    elif draw(st.booleans()):
        items.append(('"values"', "null"))
    lab = draw(st.integers(0, 9))
    if lab:
        labels = ["0", "1", "-1", "true", "false", "null", "1.0", "-0.0", "1e0", "2", "0.5", '"1"']
        items.append(('"label"', draw(st.sampled_from(labels))))
    if draw(st.integers(0, 3)) == 0:
        weights = ["1", "2.5", "0", "-0.0", "-1", "null", "true", "1e400", "0.1234567890123456789"]
        items.append(('"weight"', draw(st.sampled_from([*weights, draw(json_number())]))))
    extra = draw(st.integers(0, 20))
    if extra == 0:
        items.append(('"label"', "1"))  # a duplicate
    elif extra == 1:
        items.append(('"labels"', "1"))
    elif extra == 2:
        items.append(('"\\u006cabel"', "1"))
    elif extra == 3 and len(items) > 1:
        items.pop(0)  # values without indices, or no indices
    items = draw(st.permutations(items))
    ws = st.sampled_from(["", " ", "\t", "\r"])
    body = ",".join(draw(ws) + k + draw(ws) + ":" + draw(ws) + v + draw(ws) for k, v in items)
    return draw(ws) + "{" + body + "}" + draw(ws)


@st.composite
def ndjson_stream(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(ndjson_line(), max_size=12))
    text = "".join(line + draw(st.sampled_from(["\n", "\r\n"])) for line in lines).encode()
    if lines and draw(st.booleans()):
        text = text.rstrip(b"\r\n")  # an unterminated last line
    if draw(st.integers(0, 2)) == 0:
        text = mutate(text, draw)
    return text


def split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_ndjson_streams_match_the_python_reader(data: st.DataObject) -> None:
    text = data.draw(ndjson_stream())
    kwargs = {
        "max_rows_per_batch": data.draw(st.sampled_from([1, 2, 3, 10_000])),
        "max_line_bytes": data.draw(st.sampled_from([1 << 20, 1 << 20, 60, 25])),
        "require_labels": data.draw(st.booleans()),
    }
    check_stream(split(data.draw, text), **kwargs)


STREAMS = [
    b'{"indices": [3, 1, 3], "label": 0}\n'
    b"\n"
    b'  {"indices": [4], "values": [0.5], "label": true}  \r\n'
    b'{"features": {"IQ": 95.5, "member": true}, "label": -1}\n'
    b'{"indices":[5,2],"values":[0.1234567890123456789,-0.0],"label":1,"weight":3}\n'
    b"# comment\n"
    b'{"indices":[7],"values":[1e400],"label":1}\n'
    b'{"indices":[8,8],"values":[1e308,1e308],"label":0,"weight":null}\n'
    b'{"values":[1],"indices":[9],"label":null}',
    b'{"indices":[1,2,3],"values":[1.5,2.5,3.5],"label":1}\n' * 3
    + b'{"indices":[1,2,3],"values":[1.5,2.5],"label":1}\n'
    + b'{"indices":[63,0],"values":[-1,1],"label":0}\r\n',
    b'{"indices":[63,64],"label":1}\n{"indices":[64,63],"label":1}\n{"indices":[-0,0],"label":1}\n'
    b'{"indices":[7],"values":[-5],"label":1}\n{"indices":[1,1],"values":[1e308,1e308],"label":1}',
]


@pytest.mark.parametrize("text", STREAMS)
@pytest.mark.parametrize("max_rows", [1, 2, 10_000])
def test_ndjson_every_split(text: bytes, max_rows: int) -> None:
    for cut in range(len(text) + 1):
        for require_labels in (True, False):
            check_stream(
                [text[:cut], text[cut:]],
                max_rows_per_batch=max_rows,
                max_line_bytes=70,
                require_labels=require_labels,
            )


def test_ndjson_fast_path_takes_index_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines of indices never reach the Python reader; named features do, and are named."""
    rng = random.Random(3)
    lines = []
    for _ in range(300):
        m = rng.randint(0, 40)
        idx = [rng.randrange(1 << 20) for _ in range(m)]
        vals = [rng.choice([1.0, rng.random(), round(rng.lognormvariate(0, 1), 5), -2.5e-7])]
        row: dict[str, Any] = {
            "indices": idx,
            "values": (vals * m)[:m],
            "label": rng.choice([0, 1]),
        }
        if rng.random() < 0.2:
            row["weight"] = rng.random() * 3
        if rng.random() < 0.2:
            del row["values"]
        lines.append(orjson.dumps(row))
    text = b"\n".join(lines) + b"\n"

    def refuse(*args: Any) -> None:
        raise AssertionError("a line went to the Python reader")

    monkeypatch.setattr(NdjsonReader, "_read_slow", refuse)
    for max_rows in (7, 10_000):
        parser = StreamParser("ndjson", dim=1 << 20, max_rows_per_batch=max_rows)
        got = parser.feed(text) + parser.finish()
        assert sum(b.n_rows for b in got) == 300
    monkeypatch.undo()
    check_stream([text], dim=1 << 20)
    check_stream([text[:5000], text[5000:20000], text[20000:]], dim=1 << 20, max_rows_per_batch=50)
    named = b'{"features": {"IQ": 1.2, "city": "paris"}, "label": 1}\n'
    mixed = lines[0] + b"\n" + named * 3 + lines[1] + b"\n" + named + lines[2] + b"\n"
    batches = StreamParser("ndjson", dim=1 << 20).feed(mixed)
    assert len(batches) == 1 and batches[0].feature_names is not None
    assert set(batches[0].feature_names) == {"IQ", "city=paris"}
    check_stream([mixed], dim=1 << 20)
    assert feature_key("city", "paris") == ("city=paris", 1.0)


def test_ndjson_long_streams_of_named_features_and_errors() -> None:
    """Python-read lines in long runs (the kernel backs off), then index lines again."""
    named = b'{"features": {"IQ": 1.2, "city": "paris"}, "label": 1}\n'
    fast = b'{"indices": [1, 2], "values": [0.5, 1], "label": 0}\n'
    text = named * 2000 + fast * 50 + named * 7 + fast * 3 + b'{"label": 3}\n' + fast * 5
    check_stream([text])
    check_stream([text[:30_000], text[30_000:]], max_rows_per_batch=333)


def test_disabled_fast_paths_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the fast paths are off (a big-endian machine), everything takes the slow paths."""
    import optim.formats.json_csr
    import optim.formats.ndjson

    monkeypatch.setattr(optim.formats.json_csr, "ENABLED", False)
    monkeypatch.setattr(optim.formats.ndjson, "ENABLED", False)
    assert read_csr(b'{"indptr":[0],"indices":[],"values":[]}') is None
    check_body(b'{"indptr":[0,1],"indices":[3],"values":[0.5],"labels":[1]}')
    for text in STREAMS:
        check_stream([text], max_rows_per_batch=2)
