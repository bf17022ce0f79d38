"""Fuzzing the HTTP API: schemathesis over /openapi.json, and hypothesis-broken batches and streams.

1. Every operation of the OpenAPI document, in-process (ASGI, no network), with an admin token:
   no 5xx, every response conforming to its documented status, content type and schema. A model
   ``m`` exists and the path parameter ``name`` is ``m`` about half the time.
2. A valid CSR or named-rows body broken in one random way is refused by ``/updates`` and
   ``/predict`` with a documented 422 body, and the model stays byte-identical.
3. A stream (all four content types) with a random malformed line learns exactly the valid rows
   before it and says in its final NDJSON line which line was bad.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from collections.abc import Iterator

import numpy as np
import orjson
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from optim import OnlineLogisticRegression
from optim.formats import parse_bytes
from service.app import create_app
from service.settings import Settings

DIM = 64
MODEL = {"name": "m", "dim": DIM, "optimizer": {"name": "adagrad", "lr": 0.5}}
ADMIN = "fuzz-admin-token"
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]

# ---------------------------------------------------------------------------------------------
# 1. schemathesis over the OpenAPI document
# ---------------------------------------------------------------------------------------------

# The document does not depend on the settings; it is read from a throwaway app at collection.
with tempfile.TemporaryDirectory() as _data_dir:
    SPEC = create_app(Settings(data_dir=_data_dir, warm_kernels=False)).openapi()
schema = schemathesis.openapi.from_dict(SPEC)
# The model file and the stream bodies are sent as bytes and text.
schemathesis.serializer.alias("application/x-adaserve-model", "application/octet-stream")
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
schemathesis.serializer.alias("application/vnd.apache.arrow.stream", "application/octet-stream")


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """``name`` is the existing model ``m`` about half the time."""
    if not path_parameters or "name" not in path_parameters:
        return st.just(path_parameters)
    return st.sampled_from([{**path_parameters, "name": "m"}, path_parameters])


@schema.hook
def flatmap_body(context, body):
    """Creations get a valid name and a small dim about half the time (the rest stays random)."""
    if context.operation.label != "POST /v1/models" or not isinstance(body, dict):
        return st.just(body)
    rest = {k: v for k, v in body.items() if k not in ("name", "dim", "hash_bits")}
    names = st.from_regex(r"[a-z]{1,8}", fullmatch=True)
    return st.one_of(st.just(body), names.map(lambda name: {**rest, "name": name, "dim": 8}))


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[FastAPI, asgi.ASGIClient]]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("schemathesis"),
        warm_kernels=False,
        tokens=f"admin:{ADMIN}",
        memory_budget_bytes=64 << 20,
        max_models=100,
        max_body_bytes=1 << 20,
    )
    app = create_app(settings)
    # schemathesis' own ASGI client: it runs the app's lifespan once, on its event loop thread.
    with asgi.get_client(app) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN}"
        assert client.post("/v1/models", json=MODEL).status_code == 201
        yield app, client
    asgi.shutdown_lifespans()


def ensure_model(app: FastAPI, client: asgi.ASGIClient) -> None:
    """Recreate ``m`` when a generated DELETE removed it."""
    if "m" not in app.state.registry.models:
        assert client.post("/v1/models", json=MODEL).status_code == 201


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_openapi_operations(case, served) -> None:
    app, client = served
    ensure_model(app, client)
    case.call_and_validate(base_url="http://testserver", session=client, checks=CHECKS)


CSR = {"indptr": [0, 2, 3], "indices": [1, 5, 5], "values": [1.0, 2.0, -1.0], "labels": [1, 0]}
ROWS = {"rows": [{"features": {"IQ": 1.2, "city": "paris"}, "label": True, "weight": 2.0}]}
LIBSVM = b"1 1:0.5 7:2\n0 3:1\n"


def test_known_good_requests_conform(served) -> None:
    """The success responses random data rarely reaches, validated against the document."""
    app, client = served
    JSON = "application/json"  # the batch routes also take an Arrow IPC stream
    ensure_model(app, client)
    name = {"name": "m"}
    cases = [
        schema["/v1/models/{name}/updates"]["POST"].Case(
            path_parameters=name, body=CSR, query={"return_predictions": True}, media_type=JSON
        ),
        schema["/v1/models/{name}/updates"]["POST"].Case(
            path_parameters=name, body=ROWS, media_type=JSON
        ),
        schema["/v1/models/{name}/predict"]["POST"].Case(
            path_parameters=name, body=CSR, media_type=JSON
        ),
        schema["/v1/models/{name}/predict"]["POST"].Case(
            path_parameters=name, body=ROWS, media_type=JSON
        ),
        schema["/v1/models/{name}/stream"]["POST"].Case(
            path_parameters=name, body=LIBSVM.decode(), media_type="text/x-libsvm"
        ),
        schema["/v1/models/{name}/learning-rates"]["GET"].Case(
            path_parameters=name, query={"indices": "1,5", "features": "IQ,city"}
        ),
        schema["/v1/models/{name}/learning-rates/summary"]["GET"].Case(
            path_parameters=name, query={"top": 3, "bins": 4}
        ),
        schema["/v1/models/{name}"]["GET"].Case(path_parameters=name),
        schema["/v1/models"]["GET"].Case(),
        schema["/v1/models/{name}/snapshot"]["POST"].Case(path_parameters=name),
    ]
    for case in cases:
        response = case.call_and_validate(
            base_url="http://testserver", session=client, checks=CHECKS
        )
        assert response.status_code == 200, (case.operation.label, response.text)
    exported = client.get("/v1/models/m/export").content
    imported = schema["/v1/models/{name}/import"]["POST"].Case(
        path_parameters=name, body=exported, media_type="application/x-adaserve-model"
    )
    response = imported.call_and_validate(
        base_url="http://testserver", session=client, checks=CHECKS
    )
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------------------------------------
# 2. broken batches over HTTP
# ---------------------------------------------------------------------------------------------

RAW = "\x00raw:"  # a string starting with this is written into the JSON text as a bare token


def raw(token: str) -> str:
    return RAW + token


def encode(body: object) -> bytes:
    text = json.dumps(body)
    return re.sub(r'"\\u0000raw:([^"]*)"', lambda m: m.group(1), text).encode()


NON_FINITE = st.sampled_from(
    [raw("NaN"), raw("Infinity"), raw("-Infinity"), raw("1e400"), raw("-1e400"), raw("9" * 400)]
)
NOT_A_NUMBER = st.one_of(
    st.sampled_from(["1.0", "x", "", None, [1.0], [], {"v": 1}]), st.text(max_size=3)
)
BAD_NUMBER = st.one_of(NON_FINITE, NOT_A_NUMBER)
BAD_INTEGER = st.one_of(
    BAD_NUMBER,
    st.floats(-1e3, 1e3).filter(lambda x: x != int(x)),
    st.integers(DIM, 10**30),
    st.integers(-(10**30), -1),
)
BAD_LABEL = st.one_of(
    st.sampled_from([2, -2, 0.5, 1.5, "yes", "1", [1], {"y": 1}, 10**30, raw("NaN")]),
    st.integers(2, 10**6),
    st.floats(-1e6, 1e6).filter(lambda y: y not in (0, 1, -1)),
)
BAD_WEIGHT = st.one_of(
    NON_FINITE, st.sampled_from(["1", "x", [1.0], {"w": 1}]), st.floats(-1e6, -1e-9)
)
NOT_A_LIST = st.one_of(
    st.sampled_from(["1,2", "", {"a": 1}, {}]), st.integers(-5, 5), st.floats(-5, 5)
)
NOT_AN_OBJECT = st.one_of(
    st.lists(st.integers(), max_size=3),
    st.text(max_size=5),
    st.integers(),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
FINITE = st.floats(-1e3, 1e3, allow_nan=False)
NAMES = st.sampled_from(["IQ", "CGPA", "city", "a", "b", "é"])


@st.composite
def csr_bodies(draw) -> dict:
    rows = draw(
        st.lists(
            st.lists(st.tuples(st.integers(0, DIM - 1), FINITE), min_size=1, max_size=4),
            min_size=1,
            max_size=4,
        )
    )
    indptr = [0]
    for row in rows:
        indptr.append(indptr[-1] + len(row))
    body = {
        "indptr": indptr,
        "indices": [i for row in rows for i, _ in row],
        "values": [v for row in rows for _, v in row],
        "labels": draw(
            st.lists(
                st.sampled_from([0, 1, -1, True, False]), min_size=len(rows), max_size=len(rows)
            )
        ),
    }
    if draw(st.booleans()):
        body["weights"] = draw(st.lists(st.floats(0, 10), min_size=len(rows), max_size=len(rows)))
    return body


@st.composite
def row_bodies(draw) -> dict:
    value = st.one_of(FINITE, st.sampled_from(["paris", "rome"]), st.booleans())
    row = st.fixed_dictionaries(
        {
            "features": st.dictionaries(NAMES, value, min_size=1, max_size=3),
            "label": st.sampled_from([0, 1, -1, True, False]),
        },
        optional={"weight": st.floats(0, 10)},
    )
    return {"rows": draw(st.lists(row, min_size=1, max_size=4))}


def _position(draw, items: list) -> int:
    return draw(st.integers(0, len(items) - 1))


CSR_BREAKS = [
    "indptr_start",
    "indptr_decrease",
    "indptr_end",
    "length",
    "index_range",
    "junk",
    "labels",
    "weights",
    "keys",
    "not_a_list",
    "not_an_object",
    "invalid_json",
]


@st.composite
def broken_csr(draw, kind: str, updates: bool) -> bytes:
    """A valid CSR body broken in the way ``kind`` names (the ways are in ``CSR_BREAKS``)."""
    body = draw(csr_bodies())
    n_rows = len(body["indptr"]) - 1
    if kind == "indptr_start":
        body["indptr"][0] = draw(st.integers(1, 50) | st.integers(-50, -1))
    elif kind == "indptr_decrease":
        i = draw(st.integers(1, n_rows))
        body["indptr"][i] = body["indptr"][i - 1] - draw(st.integers(1, 5))
    elif kind == "indptr_end":
        body["indptr"][-1] += draw(st.sampled_from([-3, -2, -1, 1, 2, 3]))
    elif kind == "length":
        key = draw(st.sampled_from(["indices", "values", "labels", "weights"]))
        items = body.setdefault(key, [1.0] * n_rows)
        if draw(st.booleans()) and items:
            items.pop()
        else:
            items.append(1)
    elif kind == "index_range":
        out = st.integers(DIM, 10**30) | st.integers(-(10**30), -1)
        body["indices"][_position(draw, body["indices"])] = draw(out)
    elif kind == "junk":
        key = draw(st.sampled_from(["indptr", "indices", "values"]))
        bad = BAD_NUMBER if key == "values" else BAD_INTEGER
        body[key][_position(draw, body[key])] = draw(bad)
    elif kind == "labels":
        body["labels"][_position(draw, body["labels"])] = draw(BAD_LABEL | st.none())
    elif kind == "weights":
        weights = body.setdefault("weights", [1.0] * n_rows)
        weights[_position(draw, weights)] = draw(BAD_WEIGHT | st.none())
    elif kind == "keys":
        change = draw(st.sampled_from(["extra", "rename", "drop"]))
        if change == "extra":
            body[draw(st.sampled_from(["colour", "rows", "index", "label", ""]))] = 1
        else:
            key = draw(st.sampled_from(["indptr", "indices", "values"] + ["labels"] * updates))
            value = body.pop(key)
            if change == "rename":
                body[key.upper()] = value
    elif kind == "not_a_list":
        key = draw(st.sampled_from(["indptr", "indices", "values", "labels", "weights"]))
        # null is a valid "no weights", and "no labels" to predict
        null_is_bad = key in ("indptr", "indices", "values") or (key == "labels" and updates)
        body[key] = draw(NOT_A_LIST | (st.none() if null_is_bad else st.nothing()))
    elif kind == "not_an_object":
        return encode(draw(NOT_AN_OBJECT))
    else:
        assert kind == "invalid_json", kind
        return _invalid_json(draw, encode(body))
    return encode(body)


def _invalid_json(draw, text: bytes) -> bytes:
    how = draw(st.sampled_from(["truncate", "garbage", "quotes", "bytes", "empty"]))
    if how == "truncate":
        return text[: draw(st.integers(1, len(text) - 1))]
    if how == "garbage":
        return text + draw(st.sampled_from([b"x", b"}", b",", b"]"]))
    if how == "quotes":
        return text.replace(b'"', b"'")
    if how == "bytes":
        return draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\x00"])) + text
    return b""


ROW_BREAKS = [
    "rows_not_a_list",
    "row_not_an_object",
    "no_features",
    "row_key",
    "features",
    "feature_value",
    "label",
    "weight",
    "top_key",
    "not_an_object",
    "invalid_json",
]


@st.composite
def broken_rows(draw, kind: str, updates: bool) -> bytes:
    """A valid named-rows body broken in the way ``kind`` names (see ``ROW_BREAKS``)."""
    body = draw(row_bodies())
    rows = body["rows"]
    r = _position(draw, rows)
    if kind == "rows_not_a_list":
        body["rows"] = draw(st.one_of(NOT_A_LIST, st.none(), st.just({"features": {"a": 1}})))
    elif kind == "row_not_an_object":
        rows[r] = draw(NOT_AN_OBJECT)
    elif kind == "no_features":
        del rows[r]["features"]
    elif kind == "row_key":
        rows[r][draw(st.sampled_from(["colour", "labels", "weights", "Features", ""]))] = 1
    elif kind == "features":
        rows[r]["features"] = draw(
            st.one_of(
                st.lists(FINITE, min_size=1, max_size=3),
                st.text(min_size=1, max_size=3),
                st.integers(),
                st.none(),
            )
        )
    elif kind == "feature_value":
        junk = st.one_of(NON_FINITE, st.sampled_from([None, [1.0], [], {"b": 1}, {}]))
        rows[r]["features"][draw(NAMES)] = draw(junk)
    elif kind == "label":
        rows[r]["label"] = draw(BAD_LABEL | (st.none() if updates else st.nothing()))
    elif kind == "weight":
        rows[r]["weight"] = draw(BAD_WEIGHT)
    elif kind == "top_key":
        body[draw(st.sampled_from(["indptr", "colour", "Rows", ""]))] = draw(st.integers())
    elif kind == "not_an_object":
        return encode(draw(NOT_AN_OBJECT))
    else:
        assert kind == "invalid_json", kind
        return _invalid_json(draw, encode(body))
    return encode(body)


BREAKS = [("csr", kind) for kind in CSR_BREAKS] + [("rows", kind) for kind in ROW_BREAKS]


def broken(shape: str, kind: str, updates: bool) -> st.SearchStrategy[bytes]:
    return (broken_csr if shape == "csr" else broken_rows)(kind, updates)


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("batches"),
        warm_kernels=False,
        stream_batch_rows=2,
        max_body_bytes=1 << 20,
        fsync="off",
    )
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/models", json=MODEL).status_code == 201
        # a model with some state, so that a change would show
        assert c.post("/v1/models/m/updates", json=CSR).status_code == 200
        assert c.post("/v1/models/m/updates", json=ROWS).status_code == 200
        yield c


def state(client: TestClient) -> tuple:
    model = client.app.state.registry.get("m").model
    return (
        model.table.tobytes(),
        model.counters.tobytes(),
        model.step,
        model.metrics.rows,
        dict(model.feature_names),
    )


def assert_refused(response, sent: object) -> None:
    """A 422 with the documented error body."""
    assert response.status_code == 422, (sent, response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "detail", "where"}, (sent, body)
    assert isinstance(body["error"], str) and body["error"], (sent, body)
    assert isinstance(body["detail"], str) and body["detail"], (sent, body)
    assert isinstance(body["where"], dict), (sent, body)


JSON = {"Content-Type": "application/json"}
BROKEN = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("shape, kind", BREAKS, ids=[f"{s}-{k}" for s, k in BREAKS])
def test_broken_updates_are_refused_and_change_nothing(client: TestClient, shape, kind) -> None:
    @BROKEN
    @given(content=broken(shape, kind, updates=True))
    def check(content: bytes) -> None:
        before, exported = state(client), client.get("/v1/models/m/export").content
        response = client.post("/v1/models/m/updates", content=content, headers=JSON)
        assert_refused(response, content)
        assert state(client) == before, content
        assert client.get("/v1/models/m/export").content == exported, content

    check()


@pytest.mark.parametrize("shape, kind", BREAKS, ids=[f"{s}-{k}" for s, k in BREAKS])
def test_broken_predictions_are_refused(client: TestClient, shape, kind) -> None:
    @BROKEN
    @given(content=broken(shape, kind, updates=False))
    def check(content: bytes) -> None:
        before = state(client)
        response = client.post("/v1/models/m/predict", content=content, headers=JSON)
        assert_refused(response, content)
        assert state(client) == before, content

    check()


@settings(max_examples=30, deadline=None)
@given(body=st.one_of(csr_bodies(), row_bodies()))
def test_the_unbroken_bodies_are_valid(client: TestClient, body: dict) -> None:
    """The bodies the breakers start from are accepted: each refusal is the breakage's."""
    before = state(client)
    response = client.post("/v1/models/m/predict", content=encode(body), headers=JSON)
    assert response.status_code == 200, response.text
    assert state(client) == before


# ---------------------------------------------------------------------------------------------
# 3. streams with a malformed line
# ---------------------------------------------------------------------------------------------

LABELS = st.sampled_from(["1", "0", "-1", "+1"])
NUMBER = FINITE.map(repr)
WORD = st.from_regex(r"[a-z]{1,4}", fullmatch=True)
BAD_TOKEN_NUMBER = st.sampled_from(["nan", "inf", "-inf", "1e400", "-1e999", "x", "", "1..2"])
BAD_LABEL_TOKEN = st.sampled_from(["2", "-2", "0.5", "yes", "x", "1e400"])


@st.composite
def libsvm_line(draw) -> str:
    pairs = draw(st.lists(st.tuples(st.integers(0, DIM - 1), NUMBER), max_size=4))
    return " ".join([draw(LABELS)] + [f"{i}:{v}" for i, v in pairs])


@st.composite
def bad_libsvm_line(draw) -> str:
    good = draw(libsvm_line())
    label, *features = good.split(" ")
    bad_feature = draw(
        st.one_of(
            st.integers(DIM, 10**25).map(lambda i: f"{i}:1"),
            st.integers(-(10**6), -1).map(lambda i: f"{i}:1"),
            st.sampled_from(["1.5:1", "a:1", ":1", "3", "3:1:1"]),
            BAD_TOKEN_NUMBER.map(lambda v: f"3:{v}"),
        )
    )
    if draw(st.booleans()):
        return " ".join([draw(BAD_LABEL_TOKEN), *features])
    features.insert(draw(st.integers(0, len(features))), bad_feature)
    return " ".join([label, *features])


@st.composite
def vw_line(draw) -> str:
    head = draw(LABELS) + draw(st.sampled_from(["", " 0.5", " 2"]))
    features = draw(st.lists(st.tuples(WORD, NUMBER), max_size=4))
    return f"{head} |s " + " ".join(f"{f}:{v}" for f, v in features)


@st.composite
def bad_vw_line(draw) -> str:
    features = draw(st.lists(st.tuples(WORD, NUMBER), max_size=3))
    body = " ".join(f"{f}:{v}" for f, v in features)
    how = draw(st.sampled_from(["label", "value", "importance", "extra", "no_bar", "scale"]))
    if how == "label":
        return f"{draw(BAD_LABEL_TOKEN)} |s {body}"
    if how == "value":
        return f"1 |s {body} a:{draw(BAD_TOKEN_NUMBER.filter(bool))}"
    if how == "importance":
        weight = draw(st.sampled_from(["-1", "-0.5", "inf", "1e400", "2e308", "nan"]))
        return f"1 {weight} |s {body}"
    if how == "extra":
        return f"1 1 2 |s {body}"
    if how == "no_bar":
        return f"1 {body} a"
    scale = draw(st.sampled_from(["inf", "1e400", "-1e309", "x", "nan"]))
    return f"1 |s:{scale} a {body}"


CRITEO_INT = st.one_of(st.just(""), st.integers(-10, 10**6).map(str))
CRITEO_CAT = st.from_regex(r"[0-9a-f]{0,8}", fullmatch=True)


@st.composite
def criteo_line(draw) -> str:
    ints = draw(st.lists(CRITEO_INT, min_size=13, max_size=13))
    cats = draw(st.lists(CRITEO_CAT, min_size=26, max_size=26))
    return "\t".join([draw(LABELS), *ints, *cats])


@st.composite
def bad_criteo_line(draw) -> str:
    fields = draw(criteo_line()).split("\t")
    how = draw(st.sampled_from(["fewer", "more", "label", "int"]))
    if how == "fewer":
        start = draw(st.integers(0, 39))
        del fields[start : start + draw(st.integers(1, 3))]
    elif how == "more":
        fields += ["x"] * draw(st.integers(1, 3))
    elif how == "label":
        fields[0] = draw(BAD_LABEL_TOKEN)
    else:
        fields[draw(st.integers(1, 13))] = draw(st.sampled_from(["x", "1.5", "1e400", "0x1f"]))
    return "\t".join(fields)


@st.composite
def ndjson_line(draw) -> str:
    label = draw(st.sampled_from([0, 1, -1, True, False]))
    if draw(st.booleans()):
        features = draw(st.dictionaries(NAMES, FINITE | st.sampled_from(["paris"]), max_size=3))
        return json.dumps({"features": features, "label": label})
    indices = draw(st.lists(st.integers(0, DIM - 1), max_size=3))
    values = draw(st.lists(FINITE, min_size=len(indices), max_size=len(indices)))
    return json.dumps({"indices": indices, "values": values, "label": label})


@st.composite
def bad_ndjson_line(draw) -> str:
    row = json.loads(draw(ndjson_line()))
    how = draw(
        st.sampled_from(["json", "object", "key", "label", "features", "index", "length", "weight"])
    )
    if how == "json":
        return _invalid_json(draw, encode(row)).decode(errors="replace").replace("\n", " ") or "{"
    if how == "object":
        return encode(draw(NOT_AN_OBJECT.filter(lambda v: v != "" and not isinstance(v, dict))))
    if how == "key":
        row[draw(st.sampled_from(["colour", "labels", "Features", ""]))] = 1
    elif how == "label":
        row["label"] = draw(BAD_LABEL)
    elif how == "features":
        row.pop("indices", None)
        row.pop("values", None)
        row["features"] = draw(
            st.one_of(
                st.lists(FINITE, min_size=1, max_size=2),
                st.integers(),
                st.text(max_size=2),
                st.fixed_dictionaries({"a": st.sampled_from([None, [1.0], {"b": 1}])}),
                NON_FINITE.map(lambda v: {"a": v}),
            )
        )
    elif how == "index":
        row.pop("features", None)
        row["indices"] = [draw(st.integers(DIM, 10**6) | st.integers(-(10**6), -1) | BAD_INTEGER)]
        row["values"] = [1.0]
    elif how == "length":
        row.pop("features", None)
        row["indices"] = [1, 2]
        row["values"] = [1.0] * draw(st.sampled_from([1, 3]))
    else:
        row["weight"] = draw(BAD_WEIGHT)
    return encode(row).decode()


def _line_text(line: bytes | str) -> str:
    return line.decode() if isinstance(line, bytes) else line


FORMATS = {
    "libsvm": ("text/x-libsvm", libsvm_line(), bad_libsvm_line()),
    "vw": ("text/x-vw", vw_line(), bad_vw_line()),
    "criteo": ("text/x-criteo", criteo_line(), bad_criteo_line()),
    "ndjson": ("application/x-ndjson", ndjson_line(), bad_ndjson_line()),
}


@st.composite
def broken_streams(draw, fmt: str) -> tuple[list[str], str, list[str]]:
    """Valid lines, a malformed one, valid lines."""
    _, good, bad = FORMATS[fmt]
    return draw(st.lists(good, max_size=5)), _line_text(draw(bad)), draw(st.lists(good, max_size=2))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_malformed_line_stops_the_stream_after_the_valid_rows(client: TestClient, fmt) -> None:
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(stream=broken_streams(fmt))
    def check(stream: tuple[list[str], str, list[str]]) -> None:
        check_stream(client, fmt, *stream)

    check()


def check_stream(client: TestClient, fmt: str, before: list[str], bad_line: str, after: list[str]):
    assert bad_line and not bad_line.startswith("#"), bad_line  # not a skipped line
    managed = client.app.state.registry.get("m")
    replica = OnlineLogisticRegression.load(io.BytesIO(managed.model.to_bytes()))
    text = "".join(line + "\n" for line in [*before, bad_line, *after])
    response = client.post(
        "/v1/models/m/stream", content=text.encode(), headers={"Content-Type": FORMATS[fmt][0]}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    summary = orjson.loads(response.content.splitlines()[-1])
    assert summary["done"] is True and summary["rows"] == len(before), (fmt, bad_line, summary)
    error = summary["error"]
    assert error is not None and error["line"] == len(before) + 1, (fmt, bad_line, summary)
    assert isinstance(error["detail"], str) and error["detail"], summary
    # exactly the valid rows before the bad line were learned, as a local model learns them
    if before:
        prefix = "".join(line + "\n" for line in before).encode()
        replica.learn_batch(parse_bytes(prefix, fmt, dim=DIM))
    model = managed.model
    assert model.step == replica.step == summary["step"], (fmt, bad_line)
    assert model.table.tobytes() == replica.table.tobytes(), (fmt, bad_line)
    assert model.counters.tobytes() == replica.counters.tobytes(), (fmt, bad_line)


# ---------------------------------------------------------------------------------------------
# regressions the fuzzing found
# ---------------------------------------------------------------------------------------------


HUGE = b"1" + b"0" * 400  # an integer JSON allows and no float holds


@pytest.mark.parametrize(
    "body, field",
    [
        (b'{"name": "w", "dim": 8, "recent_window": 1000000000000}', "recent_window"),
        (
            b'{"name": "w", "dim": 8, "optimizer": {"name": "adam", "lr": ' + HUGE + b"}}",
            "optimizer.lr",
        ),
        (
            b'{"name": "w", "dim": 8, "optimizer": {"betas": [0.9, '
            + HUGE
            + b'], "name": "adam"}}',
            "optimizer.betas[1]",
        ),
    ],
)
def test_create_refuses_huge_numbers(client: TestClient, body: bytes, field: str) -> None:
    response = client.post("/v1/models", content=body, headers=JSON)
    assert_refused(response, field)
    assert response.json()["where"]["field"] == field


@pytest.mark.parametrize(
    "line", [b"1 1e400 |s a\n", b"1 2e308 |s a\n", b"1 |s:1e309 a\n", b"0 |s:-1e400 b:1\n"]
)
def test_vw_refuses_overflowing_importance_and_scale(client: TestClient, line: bytes) -> None:
    step = client.app.state.registry.get("m").model.step
    response = client.post(
        "/v1/models/m/stream", content=line, headers={"Content-Type": "text/x-vw"}
    )
    summary = orjson.loads(response.content.splitlines()[-1])
    assert summary["rows"] == 0 and summary["error"]["line"] == 1, summary
    assert summary["error"]["field"] in ("importance", "namespace"), summary
    assert client.app.state.registry.get("m").model.step == step


def test_predict_refuses_an_overflowing_margin(client: TestClient) -> None:
    """JSON has no infinity: an overflowing margin would have been answered as null."""
    config = {"name": "big", "dim": 8, "optimizer": {"name": "sgd", "lr": 10}}
    assert client.post("/v1/models", json=config).status_code == 201
    one = {"indptr": [0, 1], "indices": [1], "values": [1.0], "labels": [1]}
    assert client.post("/v1/models/big/updates", json=one).status_code == 200  # weight 5
    body = {"indptr": [0, 1, 2], "indices": [1, 1], "values": [1.0, 1e308]}
    response = client.post("/v1/models/big/predict", json=body)
    assert_refused(response, "margin")
    assert response.json()["where"] == {"row": 1, "field": "values"}


def test_huge_finite_values_keep_the_state_finite(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, warm_kernels=False)
    with TestClient(create_app(settings)) as c:
        c.post("/v1/models", json={"name": "f", "dim": 8, "optimizer": "ftrl"})
        body = {"indptr": [0, 1], "indices": [1], "values": [1e200], "labels": [1]}
        response = c.post("/v1/models/f/updates", json=body)
        model = c.app.state.registry.get("f").model
        assert response.status_code == 422 and np.isfinite(model.table).all()
        assert response.json()["where"] == {"row": 0, "field": "values"}
        assert model.step == 0
