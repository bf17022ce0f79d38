"""Every error that stops a stream names its line (service/routers/streams.py): a malformed line,
a line of more than ``ADASERVE_MAX_NNZ_PER_ROW`` non-zeros, a row a model refuses to learn (a
value of 1e300) and a batch the log refused. Every valid row before it is learned, exactly as a
serial parse and learn of the lines before it would; the line numbers count blank and comment
lines, across batches of a few rows."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from optim import OnlineLogisticRegression
from optim.formats import parse_bytes
from service.app import create_app
from service.engine.errors import StorageUnavailable
from service.registry import ManagedModel
from service.routers import streams
from service.settings import Settings
from service.warmup import CRITEO_LINE

DIM = 1 << 10
OPTIMIZER = {"name": "adagrad", "lr": 0.1}
CONTENT_TYPES = {
    "libsvm": "text/x-libsvm", "vw": "text/x-vw", "ndjson": "application/x-ndjson",
    "criteo": "text/x-criteo",
}  # fmt: skip
MAX_NNZ = 30  # below a Criteo line's 39 features


def row(fmt: str, i: int, values: list[str] | None = None) -> bytes:
    """Line ``i`` of a stream in ``fmt``: a few features, or one per entry of ``values`` (written
    as given: ``1e300`` stays ``1e300``)."""
    label = i % 2
    if fmt == "criteo":
        return criteo_row(label, i, wide=values is not None)
    values = values or [f"{(i % 7) / 7 + 0.5:g}", "1", "-0.25"]
    indices = [(i + 3 * k) % DIM for k in range(len(values))]
    if fmt == "ndjson":
        return f'{{"indices":{indices},"values":[{",".join(values)}],"label":{label}}}\n'.encode()
    if fmt == "libsvm":
        features = " ".join(f"{j}:{v}" for j, v in zip(indices, values, strict=True))
        return f"{label} {features}\n".encode()
    features = " ".join(f"x{j}:{v}" for j, v in zip(indices, values, strict=True))
    return f"{label} |f {features}\n".encode()


def criteo_row(label: int, i: int, *, wide: bool) -> bytes:
    """A few of the 39 columns filled (an empty one is missing), or all of them if ``wide``."""
    integers = [str(i % 5) if wide or k < 3 else "" for k in range(13)]
    categories = [f"c{i % 3}" if wide or k < 5 else "" for k in range(26)]
    return "\t".join([str(label), *integers, *categories]).encode() + b"\n"


def wide(fmt: str, i: int) -> bytes:
    """A line of more than MAX_NNZ non-zeros."""
    if fmt == "criteo":
        return criteo_row(1, i, wide=True)  # 39 features
    return row(fmt, i, [f"{1 + k / 100:g}" for k in range(MAX_NNZ + 20)])


def huge(fmt: str, i: int) -> bytes:
    """A line a model refuses to learn (criteo: its integer columns refuse 1e300 as they parse)."""
    if fmt == "criteo":
        return CRITEO_LINE.replace(b"\t1\t", b"\t1e300\t", 1)
    return row(fmt, i, ["1", "1e300"])


def stream_text(fmt: str, bad_at: int, bad: bytes, skipped: bool) -> tuple[bytes, bytes, int]:
    """The body (rows, with blank and comment lines among them if ``skipped``, ``bad`` as line
    ``bad_at`` and rows after it), the body's text before the bad line, and the bad line's
    number."""
    lines: list[bytes] = []
    i = 0
    while len(lines) < bad_at - 1:
        if skipped and len(lines) % 9 == 4:
            lines.append(b"\n")
        elif skipped and len(lines) % 11 == 6 and fmt != "criteo":
            lines.append(b"# a comment\n")
        else:
            lines.append(row(fmt, i))
            i += 1
    before = b"".join(lines)
    after = b"".join(row(fmt, i + k) + (b"\n" if skipped else b"") for k in range(1, 20))
    return before + bad + after, before, bad_at


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app(
        Settings(data_dir=tmp_path, warm_kernels=False, max_nnz_per_row=MAX_NNZ,
                 stream_batch_rows=7)
    )  # fmt: skip


def stream(app: Any, fmt: str, body: bytes, piece: int | None = None) -> tuple[dict, bytes]:
    """Create model ``m``, stream ``body`` to it, and give the summary line and the model file.
    With ``piece``, the body arrives in pieces of that many bytes (cut anywhere in a line), each
    an ASGI message, parsed in blocks of at most 256 bytes (streams.BLOCK_MAX_BYTES, patched by
    the ``small_blocks`` fixture): the parser holds a half line between blocks."""

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), piece or len(body)):
            yield body[start : start + (piece or len(body))]
            await asyncio.sleep(0)  # let the pipeline parse and learn while the body arrives

    async def scenario() -> tuple[httpx.Response, bytes]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            config = {"name": "m", "dim": DIM, "optimizer": OPTIMIZER}
            assert (await client.post("/v1/models", json=config)).status_code == 201
            response = await client.post(
                "/v1/models/m/stream", content=body if piece is None else pieces(),
                headers={"Content-Type": CONTENT_TYPES[fmt]},
            )  # fmt: skip
            return response, (await client.get("/v1/models/m/export")).content

    response, exported = asyncio.run(scenario())
    assert response.status_code == 200, response.text
    summary = orjson.loads(response.text.splitlines()[-1])
    assert summary["done"] is True
    return summary, exported


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "BLOCK_MIN_BYTES", 64)
    monkeypatch.setattr(streams, "BLOCK_MAX_BYTES", 256)


def assert_learned_exactly(exported: bytes, fmt: str, before: bytes) -> None:
    """The model is a serial parse and learn of ``before``: every valid row, nothing after."""
    expected = OnlineLogisticRegression(OPTIMIZER, dim=DIM)
    if before:
        expected.learn_batch(parse_bytes(before, fmt, dim=DIM))
    model = OnlineLogisticRegression.load(io.BytesIO(exported))
    assert model.step == expected.step
    assert model.table.tobytes() == expected.table.tobytes()


PIECES = pytest.mark.parametrize("piece", [None, 37], ids=["at-once", "in-pieces"])
SKIPPED = pytest.mark.parametrize("skipped", [False, True], ids=["rows", "with-blank-lines"])


@PIECES
@SKIPPED
@pytest.mark.parametrize("fmt", list(CONTENT_TYPES))
@pytest.mark.parametrize("bad_at", [1, 2, 16, 41])  # in the first batch, across several
def test_a_row_over_max_nnz_stops_the_stream_at_its_line(
    app, small_blocks, fmt, bad_at, skipped, piece
) -> None:
    body, before, line = stream_text(fmt, bad_at, wide(fmt, 1000), skipped)
    summary, exported = stream(app, fmt, body, piece)
    rows_before = parse_bytes(before, fmt, dim=DIM).n_rows if before else 0
    error = summary["error"]
    assert error["line"] == line and error["row"] == rows_before
    assert f"line {line}: " in error["detail"]
    assert f"at most {MAX_NNZ} per row" in error["detail"]
    assert summary["rows"] == rows_before
    assert_learned_exactly(exported, fmt, before)


@PIECES
@SKIPPED
@pytest.mark.parametrize("fmt", list(CONTENT_TYPES))
@pytest.mark.parametrize("bad_at", [1, 3, 16, 41])
def test_a_value_a_model_refuses_names_its_line(
    app, small_blocks, fmt, bad_at, skipped, piece
) -> None:
    body, before, line = stream_text(fmt, bad_at, huge(fmt, 1000), skipped)
    summary, exported = stream(app, fmt, body, piece)
    rows_before = parse_bytes(before, fmt, dim=DIM).n_rows if before else 0
    error = summary["error"]
    assert error["line"] == line and error["row"] == rows_before, error
    assert f"line {line}, field " in error["detail"]
    assert summary["rows"] == rows_before
    assert_learned_exactly(exported, fmt, before)


def test_a_batch_the_log_refuses_names_its_first_line(app, monkeypatch) -> None:
    learn = ManagedModel.learn
    calls = 0

    async def refusing_the_third_batch(self, batch, *args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise StorageUnavailable(self.name, "the log could not be written")
        return await learn(self, batch, *args, **kwargs)

    monkeypatch.setattr(ManagedModel, "learn", refusing_the_third_batch)
    body = b"# a header\n" + b"".join(row("libsvm", i) for i in range(30))
    summary, _ = stream(app, "libsvm", body)
    # batches of 7 rows: the third starts at row 14, line 16 (after the comment)
    assert summary["error"] == {
        "code": "storage_unavailable", "model": "m", "line": 16, "row": 14,
        "detail": "line 16: the log could not be written",
    }  # fmt: skip
    assert summary["rows"] == 14


def test_a_stream_without_errors_ends_with_none(app) -> None:
    body = b"".join(row("vw", i) for i in range(50))
    summary, _ = stream(app, "vw", body, piece=13)
    assert summary["error"] is None and summary["rows"] == 50
