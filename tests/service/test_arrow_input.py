"""Arrow IPC stream bodies (``application/vnd.apache.arrow.stream``) on /updates, /predict and
/stream (:mod:`optim.formats.arrow`, :mod:`service.columnar`): CSR columns read in place, named
feature columns hashed as named rows are, the same models as the JSON paths, and errors naming
the row and column. Skipped without pyarrow (the ``arrow`` extra)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from optim import Batch
from optim.formats.arrow import ArrowStreamParser, batch_of_ipc
from optim.formats.stream import ParseError
from optim.hashing import FeatureHasher
from service.app import create_app
from service.settings import Settings
from service.warmup import plan

pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install '.[arrow]')")

ARROW = {"Content-Type": "application/vnd.apache.arrow.stream"}
DIM = 1 << 10


def ipc(*tables: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, tables[0].schema) as writer:
        for table in tables:
            writer.write_table(table)
    return sink.getvalue()


def csr_table(rows: int, seed: int) -> tuple[pa.Table, dict]:
    """A CSR table of ``rows`` rows and the same rows as a JSON CSR body."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 6, rows)
    indices = [sorted(rng.choice(DIM, size, replace=False).tolist()) for size in sizes]
    values = [rng.normal(size=size).round(3).tolist() for size in sizes]
    labels = (rng.random(rows) < 0.4).astype(int).tolist()
    weights = rng.uniform(0.5, 2, rows).round(2).tolist()
    table = pa.table({
        "indices": pa.array(indices, pa.list_(pa.int64())), "values": values,
        "label": labels, "weight": weights,
    })  # fmt: skip
    body = {
        "indptr": np.concatenate([[0], np.cumsum(sizes)]).tolist(),
        "indices": [i for row in indices for i in row],
        "values": [v for row in values for v in row], "labels": labels,
        "weights": weights,
    }  # fmt: skip
    return table, body


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, warm_kernels=False, max_rows_per_batch=500)
    with TestClient(create_app(settings)) as c:
        for name in ("json", "arrow"):
            body = {"name": name, "dim": DIM, "optimizer": {"name": "adagrad", "lr": 0.05}}
            assert c.post("/v1/models", json=body).status_code == 201
        yield c


def assert_same_models(client: TestClient) -> None:
    described = [client.get(f"/v1/models/{n}").json() for n in ("json", "arrow")]
    assert described[0]["step"] == described[1]["step"] > 0
    assert described[0]["metrics"] == described[1]["metrics"]
    rates = [client.get(f"/v1/models/{n}/learning-rates/summary").json() for n in ("json", "arrow")]
    assert rates[0] == rates[1]


def test_csr_columns_learn_and_predict_as_json_csr(client: TestClient) -> None:
    for seed in range(3):
        table, body = csr_table(200, seed)
        expected = client.post("/v1/models/json/updates", json=body)
        learned = client.post("/v1/models/arrow/updates", content=ipc(table), headers=ARROW)
        assert learned.status_code == 200, learned.text
        assert learned.json() == expected.json()
    assert_same_models(client)
    table, body = csr_table(50, 9)
    body.pop("labels")
    scored = client.post(
        "/v1/models/arrow/predict", content=ipc(table.drop(["label"])), headers=ARROW
    )
    assert scored.status_code == 200, scored.text
    assert scored.json() == client.post("/v1/models/arrow/predict", json=body).json()


def test_named_columns_are_hashed_as_named_rows(client: TestClient) -> None:
    table = pa.table({
        "IQ": [1.2, None, 0.5, 2.0], "city": ["paris", "rome", None, "paris"],
        "member": [True, False, True, None], "age": pa.array([30, 41, None, 25], pa.int32()),
        "label": [1, 0, 1, 0],
    })  # fmt: skip
    rows = []
    for record in table.to_pylist():
        label = record.pop("label")
        rows.append({"features": {k: v for k, v in record.items() if v is not None},
                     "label": label})  # fmt: skip
    assert client.post("/v1/models/json/updates", json={"rows": rows}).status_code == 200
    learned = client.post("/v1/models/arrow/updates", content=ipc(table, table), headers=ARROW)
    assert learned.status_code == 200 and learned.json()["rows"] == 8, learned.text
    assert client.post("/v1/models/json/updates", json={"rows": rows}).status_code == 200
    assert_same_models(client)
    looked_up = client.get("/v1/models/arrow/learning-rates", params={"features": "city=paris"})
    (paris,) = looked_up.json()["coordinates"]
    assert paris["times_touched"] == 4 and paris["feature"] == "city=paris"


def test_a_stream_of_record_batches_in_pieces_learns_as_updates(client: TestClient) -> None:
    tables = [csr_table(300, seed) for seed in range(4)]
    for _, body in tables:
        assert client.post("/v1/models/json/updates", json=body).status_code == 200
    data = ipc(*(table for table, _ in tables))
    pieces = (data[i : i + 777] for i in range(0, len(data), 777))  # split inside messages
    streamed = client.post("/v1/models/arrow/stream", content=pieces, headers=ARROW)
    assert streamed.status_code == 200
    summary = json.loads(streamed.text.strip().splitlines()[-1])
    assert summary["done"] and summary["error"] is None and summary["rows"] == 1_200
    assert_same_models(client)


def test_a_stream_stops_at_a_bad_row_after_learning_the_rows_before(client: TestClient) -> None:
    good, _ = csr_table(100, 0)
    bad = pa.table({
        "indices": pa.array([[1], [2], [DIM + 5], [3]], pa.list_(pa.int64())),
        "values": [[1.0], [1.0], [1.0], [1.0]], "label": [1, 0, 1, 0], "weight": [1.0] * 4,
    })  # fmt: skip
    streamed = client.post("/v1/models/arrow/stream", content=ipc(good, bad), headers=ARROW)
    summary = json.loads(streamed.text.strip().splitlines()[-1])
    assert summary["rows"] == 102 and summary["error"]["row"] == 102, summary
    assert summary["error"]["field"] == "indices" and summary["error"]["line"] == 103
    assert client.get("/v1/models/arrow").json()["step"] == 102


@pytest.mark.parametrize(
    ("columns", "row", "field", "words"),
    [
        ({"indices": [[1], [2, 3]], "values": [[1.0], [2.0, 3.0]], "label": [1, None]},
         1, "label", "null"),
        ({"indices": [[1], [2, 3]], "values": [[1.0], [2.0]], "label": [1, 0]},
         1, "values", "1 values for 2 indices"),
        ({"indices": [[1], [-2]], "values": [[1.0], [2.0]], "label": [1, 0]},
         1, "indices", ""),
        ({"indices": [[1], [2]], "values": [[1.0], [float("nan")]], "label": [1, 0]},
         1, "values", ""),
        ({"indices": [[1], None], "values": [[1.0], [2.0]], "label": [1, 0]},
         1, "indices", "null"),
        ({"indices": [[1], [2]], "values": [[1.0], [2.0]], "label": [1, 7]},
         1, "label", ""),
        ({"indices": [[1], [2]], "values": [[1.0], [2.0]], "label": [1, 0], "weight": [1, -1]},
         1, "weight", ""),
        ({"indices": [[1]], "values": [[1.0]], "label": [1], "extra": [1]},
         None, "columns", "unknown column"),
        ({"IQ": [1.0, float("inf")], "label": [1, 0]}, 1, "IQ", "finite"),
        ({"when": pa.array([1, 2], pa.timestamp("s")), "label": [1, 0]},
         None, "when", "numbers or strings"),
        ({"IQ": [1.0, 2.0]}, None, "label", "required"),
    ],
)  # fmt: skip
def test_bad_input_names_its_row_and_column(
    client: TestClient, columns: dict, row: int | None, field: str, words: str
) -> None:
    refused = client.post("/v1/models/arrow/updates", content=ipc(pa.table(columns)), headers=ARROW)
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["where"].get("row") == row and body["where"]["field"] == field, body
    assert words in body["detail"]
    assert client.get("/v1/models/arrow").json()["step"] == 0


def test_bodies_that_are_not_arrow_streams_and_limits(client: TestClient) -> None:
    garbage = client.post("/v1/models/arrow/updates", content=b"\x00" * 64, headers=ARROW)
    assert garbage.status_code == 422 and garbage.json()["where"]["field"] == "body"
    table, _ = csr_table(600, 1)
    too_many = client.post("/v1/models/arrow/updates", content=ipc(table), headers=ARROW)
    assert too_many.status_code == 413 and too_many.json()["error"] == "batch_too_large"
    cut = client.post("/v1/models/arrow/stream", content=ipc(table)[:-100], headers=ARROW)
    summary = json.loads(cut.text.strip().splitlines()[-1])
    assert summary["rows"] == 0 and "ends inside a message" in summary["error"]["detail"]


def test_without_pyarrow_an_arrow_body_is_refused_with_415(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    table, _ = csr_table(3, 0)
    data = ipc(table)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    for path in ("updates", "predict", "stream"):
        refused = client.post(f"/v1/models/arrow/{path}", content=data, headers=ARROW)
        assert refused.status_code == 415, refused.text
        assert "adaserve[arrow]" in refused.json()["detail"]


def test_csr_columns_are_read_in_place() -> None:
    table, _ = csr_table(100, 3)
    data = ipc(table)
    batch = batch_of_ipc(data, FeatureHasher(DIM), require_labels=True)
    memory = np.frombuffer(data, np.uint8)
    assert np.shares_memory(batch.indices, memory) and np.shares_memory(batch.values, memory)
    sliced = table.slice(10, 50)  # offsets not from 0, 32-bit: indptr is rebuilt, data not
    part = batch_of_ipc(ipc(sliced), FeatureHasher(DIM), require_labels=True)
    whole = batch_of_ipc(data, FeatureHasher(DIM), require_labels=True)
    start, stop = whole.indptr[10], whole.indptr[60]
    assert np.array_equal(part.indices, whole.indices[start:stop])
    assert np.array_equal(part.indptr, whole.indptr[10:61] - start)


def test_the_stream_parser_cuts_large_record_batches_and_checks_its_end() -> None:
    table, _ = csr_table(25, 4)
    data = ipc(table)
    parser = ArrowStreamParser(dim=DIM, max_rows_per_batch=10)
    batches: list[Batch] = []
    for byte in range(len(data)):
        batches += parser.feed(data[byte : byte + 1])
    batches += parser.finish()
    assert [b.n_rows for b in batches] == [10, 10, 5] and parser.buffered_bytes == 0
    whole = batch_of_ipc(data, FeatureHasher(DIM), require_labels=True)
    assert np.array_equal(Batch.concatenated(batches).indices, whole.indices)
    with pytest.raises(ParseError, match="before its schema"):
        ArrowStreamParser(dim=DIM).finish()
    small = ArrowStreamParser(dim=DIM, max_message_bytes=100)
    with pytest.raises(ParseError, match="more than 100 bytes"):
        small.feed(data)


def test_warm_up_imports_pyarrow_and_reads_an_arrow_body_before_the_first_request() -> None:
    """The server's background warm-up reads an Arrow body (pyarrow's import, 0.2-1 s holding
    the GIL, is not the first Arrow request's); in a fresh interpreter, which had not imported
    pyarrow before."""
    assert "reader/arrow" in [piece.name for piece in plan()]
    code = (
        "import sys; from service.warmup import arrow_reader; "
        "assert 'pyarrow' not in sys.modules, 'imported before the warm-up'; "
        "arrow_reader(); assert 'pyarrow.ipc' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
