"""The incremental text parsers: expected batches, chunk-split invariance, errors, real files."""

from __future__ import annotations

import gzip
import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import MAKE_CLICKS, read_text_rows, shared_file
from hypothesis import given, settings
from hypothesis import strategies as st

from optim import Batch, FeatureHasher
from optim.formats import (
    FORMATS,
    ParseError,
    StreamParser,
    concat_batches,
    iter_file_batches,
    parse_bytes,
)

LIBSVM = (
    b"# a comment line\n"
    b"1 3:1.5 1:2 qid:7 # trailing comment\n"
    b"\n"
    b"-1 2:6.2e-02 2:1e-1\r\n"
    b"0\n"
    b"+1 0:-3 5:.5   4:7.\t\n"
    b"1.0 5:1e300"
)
VW = (
    b"1 |user age:0.5 city=paris |ad:2 id7 id7:0.25\n"
    b"# comment\n"
    b"-1 2.5 'tag7 |user age:1e-1\r\n"
    b"\n"
    b"0 abc| x y:3\n"
    b"1 | plain 12:1.5"
)
CRITEO_FIELDS = [
    ["1", "5", "", "-2"] + [""] * 10 + ["68fd1e64", ""] + ["ab"] * 24,
    ["0"] + ["0"] * 13 + [""] * 26,
    ["1"] + [""] * 13 + [f"{j:08x}" for j in range(26)],
]
CRITEO = b"".join(("\t".join(f) + "\n").encode() for f in CRITEO_FIELDS[:2]) + (
    "\t".join(CRITEO_FIELDS[2]).encode() + b"\r\n"
)
NDJSON = (
    b'{"features": {"IQ": 120, "city": "paris"}, "label": 1, "weight": 2.0}\n'
    b"\n"
    b'{"indices": [3, 1, 3], "label": 0}\n'
    b'  {"indices": [4], "values": [0.5], "label": true}  \r\n'
    b'{"features": {"IQ": 95.5, "member": true}, "label": -1}'
)
SAMPLES = {"libsvm": LIBSVM, "vw": VW, "criteo": CRITEO, "ndjson": NDJSON}
DIM = {"libsvm": 8, "vw": 1 << 12, "criteo": 1 << 16, "ndjson": 64}


def same(a: Batch, b: Batch) -> None:
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.values, b.values)
    assert (a.labels is None) == (b.labels is None)
    if a.labels is not None:
        np.testing.assert_array_equal(a.labels, b.labels)
    wa = a.weights if a.weights is not None else np.ones(a.n_rows)
    wb = b.weights if b.weights is not None else np.ones(b.n_rows)
    np.testing.assert_array_equal(wa, wb)
    assert a.dim == b.dim


def expected(rows: list[tuple[list[int], list[float]]], labels, weights=None, *, dim) -> Batch:
    indptr = np.cumsum([0] + [len(r[0]) for r in rows])
    indices = [j for r in rows for j in r[0]]
    values = [v for r in rows for v in r[1]]
    return Batch.from_arrays(indptr, indices, values, labels, weights, dim=dim)


def parse_error(data: bytes, fmt: str, **kwargs) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_bytes(data, fmt, dim=kwargs.pop("dim", DIM[fmt]), **kwargs)
    return info.value


# -- each format on a hand-written sample ---------------------------------------------------


def test_libsvm_sample() -> None:
    rows = [
        ([3, 1], [1.5, 2.0]),
        ([2, 2], [6.2e-02, 1e-1]),
        ([], []),
        ([0, 5, 4], [-3.0, 0.5, 7.0]),
        ([5], [1e300]),
    ]
    want = expected(rows, [1, 0, 0, 1, 1], dim=8)
    got = parse_bytes(LIBSVM, "libsvm", dim=8)
    same(got, want)
    assert got.values[got.indptr[1]] == 6.2e-02 + 1e-1  # duplicates summed in the order of the line
    assert got.weights is None
    parser = StreamParser("libsvm", dim=8)
    n_rows = sum(b.n_rows for b in parser.feed(LIBSVM) + parser.finish())
    assert (parser.lines_read, parser.rows_parsed, n_rows) == (7, 5, 5)


def test_vw_sample() -> None:
    h = FeatureHasher(1 << 12, seed=3)
    rows = [
        (h.indices(["user^age", "user^city=paris", "ad^id7", "ad^id7"]), [0.5, 1.0, 2.0, 0.5]),
        (h.indices(["user^age"]), [0.1]),
        (h.indices(["x", "y"]), [1.0, 3.0]),
        (h.indices(["plain", "12"]), [1.0, 1.5]),
    ]
    want = expected(rows, [1, 0, 0, 1], [1.0, 2.5, 1.0, 1.0], dim=1 << 12)
    same(parse_bytes(VW, "vw", dim=1 << 12, hash_seed=3), want)


def criteo_reference(lines: list[list[str]], dim: int, seed: int = 0) -> Batch:
    h = FeatureHasher(dim, seed)
    rows, labels = [], []
    for fields in lines:
        keys, values = [], []
        for i, x in enumerate(fields[1:14], start=1):
            if x:
                keys.append(f"I{i}")
                values.append(math.log1p(int(x)) if int(x) >= 0 else -math.log1p(-int(x)))
        for j, x in enumerate(fields[14:], start=1):
            if x:
                keys.append(f"C{j}={x}")
                values.append(1.0)
        rows.append((h.indices(keys) if keys else [], values))
        labels.append(int(fields[0]))
    return expected(rows, labels, dim=dim)


def test_criteo_sample() -> None:
    got = parse_bytes(CRITEO, "criteo", dim=1 << 16)
    want = criteo_reference(CRITEO_FIELDS, 1 << 16)
    same(got, want)
    h = FeatureHasher(1 << 16)
    first = dict(
        zip(got.indices[: got.indptr[1]].tolist(), got.values[: got.indptr[1]], strict=True)
    )
    assert first[h.index("I1")] == pytest.approx(math.log1p(5))
    assert first[h.index("I3")] == pytest.approx(-math.log1p(2))
    assert first[h.index("C1=68fd1e64")] == 1.0
    assert got.n_rows == 3 and got.indptr[2] - got.indptr[1] == 13  # zeros are present


def test_ndjson_sample() -> None:
    h = FeatureHasher(64)
    named = Batch.from_rows([{"IQ": 120, "city": "paris"}, {"IQ": 95.5, "member": True}], hasher=h)
    rows = [
        (named.indices[: named.indptr[1]].tolist(), named.values[: named.indptr[1]].tolist()),
        ([3, 1, 3], [1.0, 1.0, 1.0]),
        ([4], [0.5]),
        (named.indices[named.indptr[1] :].tolist(), named.values[named.indptr[1] :].tolist()),
    ]
    want = expected(rows, [1, 0, 1, 0], [2.0, 1.0, 1.0, 1.0], dim=64)
    same(parse_bytes(NDJSON, "ndjson", dim=64), want)


# -- chunking -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_chunk_split_gives_the_same_rows(fmt: str, data: st.DataObject) -> None:
    sample = SAMPLES[fmt]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(sample)), max_size=12), label="cuts"))
    max_rows = data.draw(st.integers(1, 4), label="max_rows_per_batch")
    parser = StreamParser(fmt, dim=DIM[fmt], max_rows_per_batch=max_rows)
    batches = []
    longest = max(len(line) for line in sample.split(b"\n"))
    for start, stop in zip([0, *cuts], [*cuts, len(sample)], strict=True):
        batches += parser.feed(sample[start:stop])
        assert parser.buffered_bytes <= longest  # only the unterminated last line is kept
    batches += parser.finish()
    assert all(0 < b.n_rows <= max_rows for b in batches)
    same(concat_batches(batches, DIM[fmt]), parse_bytes(sample, fmt, dim=DIM[fmt]))
    assert parser.lines_read == sample.count(b"\n") + (not sample.endswith(b"\n"))


def test_every_split_point_of_a_crlf_file() -> None:
    sample = b"1 1:0.25\r\n-1 2:3e-2 3:12\r\n1 4:1\r\n"
    whole = parse_bytes(sample, "libsvm", dim=8)
    for cut in range(len(sample) + 1):
        parser = StreamParser("libsvm", dim=8)
        batches = parser.feed(sample[:cut]) + parser.feed(sample[cut:]) + parser.finish()
        same(concat_batches(batches, 8), whole)


@pytest.mark.parametrize("fmt", FORMATS)
def test_iter_file_batches_paths_gzip_and_file_objects(fmt: str, tmp_path: Path) -> None:
    whole = parse_bytes(SAMPLES[fmt], fmt, dim=DIM[fmt])
    plain = tmp_path / f"sample.{fmt}"
    plain.write_bytes(SAMPLES[fmt])
    packed = tmp_path / f"sample.{fmt}.gz"
    packed.write_bytes(gzip.compress(SAMPLES[fmt]))
    for source in (plain, str(packed), io.BytesIO(SAMPLES[fmt])):
        batches = list(iter_file_batches(source, fmt, dim=DIM[fmt], chunk_bytes=7))
        same(concat_batches(batches, DIM[fmt]), whole)


# -- numbers ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    x=st.floats(allow_nan=False, allow_infinity=False),
    style=st.sampled_from(["repr", ".20e", ".25f", ".3g", "long"]),
)
def test_values_are_read_exactly_as_python_floats(x: float, style: str) -> None:
    if style == "repr":
        text = repr(x)
    elif style == "long":
        text = f"{x:.30e}".replace("e", "123456789e")
    else:
        text = format(x, style)
    if text.endswith("inf") or not math.isfinite(float(text)):
        return
    batch = parse_bytes(f"1 0:{text}\n-1 1:{text}\n".encode(), "libsvm", dim=2)
    assert batch.values.tolist() == [float(text), float(text)], text
    if math.isfinite(float(text) * 2.0):
        vw = parse_bytes(f"1 |n:2 a:{text}".encode(), "vw", dim=16)
        assert vw.values[0] == float(text) * 2.0
    else:
        assert parse_error(f"1 |n:2 a:{text}".encode(), "vw").field == "value"


@pytest.mark.parametrize(
    "text", ["1.7976931348623157e308", "17976931348623157e292", "1.797693134862315807e308"]
)
def test_the_largest_float_is_read_and_the_next_decimal_overflows(text: str) -> None:
    assert parse_bytes(f"1 0:{text}\n".encode(), "libsvm", dim=2).values[0] == float(text)
    parser = StreamParser("libsvm", dim=2)
    over = "1.797693134862315808e308"  # rounds to 2**1024
    with pytest.raises(ParseError) as info:
        parser.feed(f"1 0:1\n1 1:{over} 0:{text}\n0 0:2\n".encode())
    assert (info.value.line, info.value.field, info.value.row) == (2, "value", 1)
    assert sum(b.n_rows for b in info.value.valid_before) == 1
    assert sum(b.n_rows for b in parser.feed(b"") + parser.finish()) == 1


# -- errors ----------------------------------------------------------------------------------

BAD = [
    ("libsvm", b"1 1:1\n2 1:1\n", 2, "label"),
    ("libsvm", b"1 1:1\n\n# c\n1 a:1\n", 4, "index"),
    ("libsvm", b"1 8:1\n", 1, "index"),
    ("libsvm", b"1 -1:1\n", 1, "index"),
    ("libsvm", b"1 99999999999999999999:1\n", 1, "index"),
    ("libsvm", b"1 1:x\n", 1, "value"),
    ("libsvm", b"1 1:1e999\n", 1, "value"),
    ("libsvm", b"1 1:nan\n", 1, "value"),
    ("libsvm", b"1 1:inf\n", 1, "value"),
    ("libsvm", b"1 1:\n", 1, "value"),
    ("libsvm", b"1 1:2:3\n", 1, "value"),
    ("libsvm", b"1 1\n", 1, "feature"),
    ("libsvm", b"1 2:1\n3:1 4:1\n", 2, "label"),
    ("libsvm", b"abc 1:1\n", 1, "label"),
    ("libsvm", b"0.5 1:1", 1, "label"),
    ("vw", b"1 | a\n2 | b\n", 2, "label"),
    ("vw", b"1 -2 | a\n", 1, "importance"),
    ("vw", b"1 x | a\n", 1, "importance"),
    ("vw", b"1 2 3 | a\n", 1, "header"),
    ("vw", b"1 | a\n1 a b\n", 2, "features"),
    ("vw", b"1 | a:x\n", 1, "value"),
    ("vw", b"1 | a:1e999\n", 1, "value"),
    ("vw", b"1 |n:1e308 a:10\n", 1, "value"),
    ("vw", b"1 | :2\n", 1, "feature"),
    ("vw", b"1 |ns:x a\n", 1, "namespace"),
    ("vw", b"| a\n", 1, "label"),
    ("vw", b"1| a\n", 1, "label"),
    ("criteo", b"1\t2\t3\n", 1, "fields"),
    ("criteo", ("\t".join(CRITEO_FIELDS[1]) + "\t\n").encode(), 1, "fields"),
    ("criteo", ("\t".join(["2", *CRITEO_FIELDS[1][1:]]) + "\n").encode(), 1, "label"),
    ("criteo", CRITEO + ("\t".join(["1", "0", "x"] + [""] * 37)).encode(), 4, "I2"),
    ("criteo", ("\t".join(["1", "1.5"] + [""] * 38)).encode(), 1, "I1"),
    ("criteo", ("\t".join(["0", *CRITEO_FIELDS[1][1:]])).encode(), 1, None),  # valid: no error
    ("ndjson", b'{"label": 1}\n{"features": {"a": 1}}\n', 2, "label"),
    ("ndjson", b'{"label": 1, "foo": 2}\n', 1, "foo"),
    ("ndjson", b'{"label": 2}\n', 1, "label"),
    ("ndjson", b'{"label": 1, "weight": -1}\n', 1, "weight"),
    ("ndjson", b'{"label": 1, "weight": "x"}\n', 1, "weight"),
    ("ndjson", b'{"label": 1, "features": {"a": [1]}}\n', 1, "features.a"),
    ("ndjson", b'{"label": 1, "features": [1]}\n', 1, "features"),
    ("ndjson", b'{"label": 1, "indices": [1, 99]}\n', 1, "indices"),
    ("ndjson", b'{"label": 1, "indices": [1.5]}\n', 1, "indices"),
    ("ndjson", b'{"label": 1, "indices": [1], "values": [1, 2]}\n', 1, "values"),
    ("ndjson", b'{"label": 1, "indices": [1], "values": ["a"]}\n', 1, "values"),
    ("ndjson", b'{"label": 1, "values": [1]}\n', 1, "values"),
    ("ndjson", b"\n\nnot json\n", 3, "json"),
    ("ndjson", b"[1]\n", 1, "json"),
]


@pytest.mark.parametrize("fmt, data, line, field", BAD)
def test_malformed_line_names_its_line_and_field(fmt, data, line, field) -> None:
    if field is None:
        parse_bytes(data, fmt, dim=DIM[fmt])
        return
    error = parse_error(data, fmt)
    assert (error.line, error.field) == (line, field), str(error)
    assert str(error).startswith(f"line {line}, field '{field}': ")
    assert error.where["line"] == line
    rows_before = sum(b.n_rows for b in error.valid_before)
    assert error.row == rows_before
    if rows_before:  # the valid rows before the bad line are parsed and usable
        assert concat_batches(error.valid_before, DIM[fmt]).labels is not None


def test_rows_before_an_error_are_returned_and_parsing_resumes_after_it() -> None:
    parser = StreamParser("libsvm", dim=8, max_rows_per_batch=2)
    with pytest.raises(ParseError) as info:
        parser.feed(b"1 1:1\n0 2:1\n1 3:1\n1 9:1\n0 4:1\n1 5")
    error = info.value
    assert (error.line, error.row, error.field) == (4, 3, "index")
    assert [b.n_rows for b in error.valid_before] == [2, 1]
    assert "9 is outside [0, 8)" in str(error)
    assert parser.rows_parsed == 3 and parser.lines_read == 4
    rest = parser.feed(b"") + parser.feed(b":1\n") + parser.finish()
    same(concat_batches(rest, 8), parse_bytes(b"0 4:1\n1 5:1\n", "libsvm", dim=8))
    assert parser.lines_read == 6 and parser.rows_parsed == 5


def test_iter_file_batches_yields_the_valid_rows_then_raises() -> None:
    stream = io.BytesIO(b"1 1:1\n0 2:1\n1 x:1\n1 3:1\n")
    seen = []
    with pytest.raises(ParseError) as info:
        for batch in iter_file_batches(stream, "libsvm", dim=8, chunk_bytes=4):
            seen.append(batch)
    assert sum(b.n_rows for b in seen) == 2 and info.value.line == 3
    assert info.value.valid_before == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_too_long_lines_are_refused_with_bounded_memory(fmt: str) -> None:
    short = {
        "libsvm": b"1 1:1\n",
        "vw": b"1 | a\n",
        "criteo": ("\t".join(CRITEO_FIELDS[1]) + "\n").encode(),
        "ndjson": b'{"label": 1}\n',
    }[fmt]
    limit = len(short) + 8
    # a complete long line inside one chunk
    parser = StreamParser(fmt, dim=DIM[fmt], max_line_bytes=limit)
    long_line = short[:-1] + b" " * 20 + b"\n"
    with pytest.raises(ParseError) as info:
        parser.feed(short + long_line + short)
    assert (info.value.line, info.value.field) == (2, "line")
    assert sum(b.n_rows for b in info.value.valid_before) == 1
    assert sum(b.n_rows for b in parser.feed(b"") + parser.finish()) == 1
    # an unterminated line that grows past the limit: refused at once, then skipped
    parser = StreamParser(fmt, dim=DIM[fmt], max_line_bytes=limit)
    assert sum(b.n_rows for b in parser.feed(short)) == 1
    with pytest.raises(ParseError) as info:
        parser.feed(b"x" * (limit + 1))
    assert (info.value.line, info.value.field) == (2, "line")
    for _ in range(100):
        assert parser.feed(b"y" * 1000) == []
        assert parser.buffered_bytes == 0
    batches = parser.feed(b"tail of the long line\n" + short) + parser.finish()
    assert sum(b.n_rows for b in batches) == 1 and parser.lines_read == 3


def test_unlabeled_rows_when_labels_are_not_required() -> None:
    libsvm = parse_bytes(b"3:1 4:2\n5:1\n", "libsvm", dim=8, require_labels=False)
    assert libsvm.labels is None and libsvm.indices.tolist() == [3, 4, 5]
    mixed = parse_bytes(b"1 3:1\n5:1\n", "libsvm", dim=8, require_labels=False)
    assert mixed.labels is None and mixed.n_rows == 2
    labeled = parse_bytes(b"1 3:1\n0 5:1\n", "libsvm", dim=8, require_labels=False)
    assert labeled.labels.tolist() == [1.0, 0.0]
    vw = parse_bytes(b"| a b\n'tag| c\n", "vw", dim=64, require_labels=False)
    assert vw.labels is None and vw.n_rows == 2
    line = "\t".join(CRITEO_FIELDS[2][1:]).encode()
    criteo = parse_bytes(line, "criteo", dim=1 << 16, require_labels=False)
    assert criteo.labels is None and criteo.nnz == 26
    nd = parse_bytes(b'{"indices": [1]}\n', "ndjson", dim=8, require_labels=False)
    assert nd.labels is None


def test_bad_configuration() -> None:
    from optim import ConfigError

    with pytest.raises(ConfigError):
        StreamParser("csv", dim=8)
    with pytest.raises(ConfigError):
        StreamParser("libsvm", dim=0)
    with pytest.raises(ConfigError):
        StreamParser("libsvm", dim=8, max_line_bytes=0)
    with pytest.raises(TypeError):
        StreamParser("libsvm", dim=8).feed("1 1:1\n")  # type: ignore[arg-type]


# -- real files ------------------------------------------------------------------------------


def test_a9a_matches_a_simple_python_reader() -> None:
    path = shared_file("a9a", "a9a")
    X, y = read_text_rows(path)
    batches = list(iter_file_batches(path, "libsvm", dim=X.shape[1], chunk_bytes=1 << 16))
    got = concat_batches(batches, X.shape[1])
    assert got.n_rows == 32_561
    X.sort_indices()
    same(got, Batch(X.indptr, X.indices, X.data, y, None, X.shape[1]))


def test_rcv1_parses_as_vw() -> None:
    path = shared_file("rcv1", "rcv1_small.dat")
    dim = 1 << 18
    h = FeatureHasher(dim)
    rows, labels = [], []
    for line in path.read_text().splitlines():
        head, _, rest = line.partition("|")
        tokens = rest.split()
        assert tokens[0] == "f"
        pairs = [t.partition(":") for t in tokens[1:]]
        rows.append((h.indices(f"f^{name}" for name, _, _ in pairs), [float(v) for *_, v in pairs]))
        labels.append(int(float(head)))
    got = parse_bytes(path.read_bytes(), "vw", dim=dim)
    assert got.n_rows == 1_000
    same(got, expected(rows, labels, dim=dim))


def test_make_clicks_criteo_lines_parse() -> None:
    if not MAKE_CLICKS.exists():
        pytest.skip(f"{MAKE_CLICKS} is absent (it lives beside the repo, not in it)")
    out = subprocess.run(
        [sys.executable, str(MAKE_CLICKS), "--rows", "200", "--seed", "1"],
        check=True,
        capture_output=True,
    ).stdout
    dim = 1 << 20
    got = concat_batches(list(iter_file_batches(io.BytesIO(out), "criteo", dim=dim)), dim)
    lines = [line.split("\t") for line in out.decode().splitlines()]
    want = criteo_reference(lines, dim)
    assert got.n_rows == 200
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-15)
    np.testing.assert_array_equal(got.labels, want.labels)


def test_ndjson_named_features_are_remembered_by_the_model() -> None:
    from optim import OnlineLogisticRegression

    model = OnlineLogisticRegression("adagrad", dim=64)
    batch = parse_bytes(
        b'{"features": {"IQ": 1.2, "city": "paris"}, "label": 1}\n', "ndjson", dim=64
    )
    model.learn_batch(batch)
    names = {model.feature_index("IQ"): "IQ", model.feature_index("city=paris"): "city=paris"}
    assert {i: model.feature_names[i] for i in names} == names
