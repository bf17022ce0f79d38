"""The streaming pipeline (service/routers/streams.py): the body is received, coalesced, parsed
and learned in overlapping stages. It must learn exactly what a serial in-process parse + learn
learns, stop at a malformed line after every valid row before it, stop cleanly (no task left) when
the client goes away, keep memory bounded whatever the body's length, and keep a slow stream's
rows flowing as they arrive. A large batch is logged while it is learned (engine log pipeline):
a log that refuses it leaves the model as if the batch had never come.

The app is driven as ASGI directly, so that the body arrives in pieces chosen here (as uvicorn
hands them over: ~256 KiB socket reads, cut anywhere in a line) and the client can vanish.
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from optim import OnlineLogisticRegression
from optim.formats import StreamParser
from service import storage as storage_module
from service.app import create_app
from service.engine.errors import StorageUnavailable
from service.routers import streams
from service.settings import Settings
from service.storage import ModelStorage

DIM = 64
OPTIMIZER = {"name": "adagrad", "lr": 0.1}
CONTENT_TYPES = {"libsvm": "text/x-libsvm", "vw": "text/x-vw", "ndjson": "application/x-ndjson"}


class Disconnect(Exception):
    """Raised by a body's pieces: the client goes away there."""


def rows_text(fmt: str, count: int, seed: int) -> list[bytes]:
    """``count`` random rows (vw ones with importance weights), each line ending in a newline."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(count):
        k = int(rng.integers(1, 12))
        indices = np.sort(rng.choice(DIM - 1, size=k, replace=False))
        values = rng.normal(size=k)
        label = int(rng.integers(0, 2))
        if fmt == "libsvm":
            features = " ".join(f"{i}:{v:.6g}" for i, v in zip(indices, values, strict=True))
            lines.append(f"{label} {features}\n".encode())
        elif fmt == "ndjson":
            row = {"indices": indices.tolist(), "values": values.tolist(), "label": label}
            lines.append(orjson.dumps(row) + b"\n")
        else:
            features = " ".join(f"f{i}:{v:.6g}" for i, v in zip(indices, values, strict=True))
            weight = rng.uniform(0.5, 2.0)
            lines.append(f"{2 * label - 1} {weight:.4g} |s {features}\n".encode())
    return lines


def cut(text: bytes, seed: int, largest: int) -> list[bytes]:
    """``text`` in pieces of random sizes, cut anywhere (mid-line, mid-number)."""
    rng = np.random.default_rng(seed)
    pieces, at = [], 0
    while at < len(text):
        size = int(rng.integers(1, largest + 1))
        pieces.append(text[at : at + size])
        at += size
    return pieces


async def pieces_of(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def replay(fmt: str, text: bytes) -> tuple[OnlineLogisticRegression, list[float], float]:
    """The serial in-process reference: parse all of ``text``, learn each batch in turn.
    Returns the model, each row's pre-update probability and the weighted mean log-loss."""
    model = OnlineLogisticRegression(OPTIMIZER, dim=DIM)
    parser = StreamParser(fmt, dim=DIM, max_rows_per_batch=1_000)
    probabilities: list[float] = []
    loss = weight = 0.0
    for batch in parser.feed(text) + parser.finish():
        result = model.learn_batch(batch)
        probabilities += result.probabilities.tolist()
        w = float(batch.weights.sum()) if batch.weights is not None else batch.n_rows
        loss, weight = loss + result.log_loss * w, weight + w
    return model, probabilities, loss / weight if weight else 0.0


def assert_same_model(a: OnlineLogisticRegression, b: OnlineLogisticRegression) -> None:
    assert a.step == b.step
    assert a.table.tobytes() == b.table.tobytes()
    assert a.counters.tobytes() == b.counters.tobytes()


async def post_stream(
    app: Any, path: str, content_type: str, body: AsyncIterator[bytes], query: str = ""
) -> tuple[int, list[dict[str, Any]]]:
    """POST ``body`` (its pieces one ASGI message each) as uvicorn would; the response's status
    and NDJSON lines. A ``Disconnect`` raised by ``body`` becomes ``http.disconnect``."""
    gone = False

    async def receive() -> dict[str, Any]:
        nonlocal gone
        if gone:
            return {"type": "http.disconnect"}
        try:
            piece = await anext(body)
        except StopAsyncIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        except Disconnect:
            gone = True
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": piece, "more_body": True}

    status, out = 0, bytearray()

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            out.extend(message.get("body", b""))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"test"), (b"content-type", content_type.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    await app(scope, receive, send)
    return status, [orjson.loads(line) for line in out.splitlines() if line]


def running_tasks() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


def make_app(tmp_path: Path, **settings: Any) -> Any:
    return create_app(Settings(data_dir=tmp_path, warm_kernels=False, **settings))


async def create_model(app: Any, name: str = "m") -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        config = {"name": name, "dim": DIM, "optimizer": OPTIMIZER}
        assert (await client.post("/v1/models", json=config)).status_code == 201


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 1-4 KiB: the small bodies of these tests go through many blocks and batches."""
    monkeypatch.setattr(streams, "BLOCK_MIN_BYTES", 1 << 10)
    monkeypatch.setattr(streams, "BLOCK_MAX_BYTES", 4 << 10)


@pytest.mark.parametrize("fmt", ["libsvm", "vw", "ndjson"])
@pytest.mark.parametrize("overlap", [False, True], ids=["log-then-learn", "log-while-learning"])
def test_pipelined_stream_learns_exactly_the_serial_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_blocks: None, fmt: str, overlap: bool
) -> None:
    # with overlap, every batch logged in the log-writer thread while it is learned
    tuning = {"overlap_log_nnz": 0} if overlap else {}
    text = b"".join(rows_text(fmt, 3_000, seed=1))
    app = make_app(
        tmp_path, stream_batch_rows=97, stream_progress_rows=500, fsync="always", **tuning
    )

    async def scenario() -> tuple[int, list[dict[str, Any]]]:
        await create_model(app)
        body = pieces_of(cut(text, seed=2, largest=3_000))
        result = await post_stream(
            app, "/v1/models/m/stream", CONTENT_TYPES[fmt], body, "return_predictions=true"
        )
        assert not running_tasks()
        return result

    status, lines = asyncio.run(scenario())
    expected, probabilities, log_loss = replay(fmt, text)
    assert status == 200
    summary = lines[-1]
    assert summary["done"] and summary["error"] is None and summary["rows"] == 3_000
    assert summary["log_loss"] == pytest.approx(log_loss, rel=1e-12)
    served = app.state.registry.get("m").model
    assert_same_model(served, expected)
    # the same pre-update probabilities, row by row, bit for bit
    streamed = [p for line in lines if "probabilities" in line for p in line["probabilities"]]
    assert streamed == probabilities
    # a progress line after the batch that crosses each multiple of 500 rows
    progress = [line["rows"] for line in lines if "step" in line and not line.get("done")]
    assert [rows // 500 for rows in progress] == [1, 2, 3, 4, 5, 6]
    # what was acknowledged is in the log, in order: recovery rebuilds the same model
    recovered = ModelStorage(tmp_path / "models" / "m").recover()
    assert_same_model(recovered.model, expected)


def test_malformed_line_mid_pipeline_stops_after_every_valid_row(
    tmp_path: Path, small_blocks: None
) -> None:
    before, after = rows_text("libsvm", 800, seed=3), rows_text("libsvm", 300, seed=4)
    text = b"".join([*before, b"1 3:0.5 7:oops\n", *after])
    app = make_app(tmp_path, stream_batch_rows=33, fsync="off")

    async def scenario() -> list[dict[str, Any]]:
        await create_model(app)
        body = pieces_of(cut(text, seed=5, largest=2_000))
        status, lines = await post_stream(app, "/v1/models/m/stream", "text/x-libsvm", body)
        assert status == 200 and not running_tasks()
        return lines

    summary = asyncio.run(scenario())[-1]
    assert summary["rows"] == 800 and summary["error"]["line"] == 801, summary
    assert summary["error"]["field"] is not None
    expected, _, _ = replay("libsvm", b"".join(before))
    assert_same_model(app.state.registry.get("m").model, expected)


def test_disconnect_mid_stream_learns_the_complete_lines_and_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_blocks: None
) -> None:
    lines = rows_text("libsvm", 2_000, seed=6)
    app = make_app(tmp_path, stream_batch_rows=50, fsync="off")
    parsing = []  # feeds under way in worker threads
    feed = StreamParser.feed

    def slow_feed(self: StreamParser, chunk: bytes) -> list:
        parsing.append(chunk)
        try:
            time.sleep(0.01)  # a parse under way when the client goes away
            return feed(self, chunk)
        finally:
            parsing.remove(chunk)

    monkeypatch.setattr(StreamParser, "feed", slow_feed)

    sent = cut(b"".join(lines), seed=7, largest=1_500)[:40]
    assert not b"".join(sent).endswith(b"\n")  # the client goes away in the middle of a line

    async def body() -> AsyncIterator[bytes]:
        for piece in sent:
            yield piece
            await asyncio.sleep(0)  # let the pipeline work while the body arrives
        raise Disconnect

    async def scenario() -> list[dict[str, Any]]:
        await create_model(app)
        status, out = await post_stream(app, "/v1/models/m/stream", "text/x-libsvm", body())
        assert status == 200
        assert not running_tasks()  # the receive and parse tasks ended with the request
        assert not parsing  # and no worker thread still parses for it
        return out

    out = asyncio.run(scenario())
    assert not any(line.get("done") for line in out)  # nobody to read a summary
    model = app.state.registry.get("m").model
    # every complete line received, the half line dropped
    assert model.step == b"".join(sent).count(b"\n")
    expected, _, _ = replay("libsvm", b"".join(lines[: model.step]))
    assert_same_model(model, expected)


def test_memory_stays_bounded_while_the_learner_is_blocked(
    tmp_path: Path, small_blocks: None
) -> None:
    """An endless body, a model whose writer lock is held elsewhere: the pipeline takes a bounded
    amount of the body, then stops reading it (the client is slowed down, memory does not grow).
    """
    app = make_app(tmp_path, stream_batch_rows=20, fsync="off")
    line = rows_text("libsvm", 1, seed=8)[0]
    piece = line * 8
    taken = 0
    stop = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        nonlocal taken
        while not stop.is_set():
            taken += len(piece)
            yield piece
            await asyncio.sleep(0)
        raise Disconnect

    async def scenario() -> None:
        await create_model(app)
        managed = app.state.registry.get("m")
        with managed.state_lock:  # a read or write in progress: the stream's learner must wait
            request = asyncio.create_task(
                post_stream(app, "/v1/models/m/stream", "text/x-libsvm", endless())
            )
            stalled_at, seen = -1, None
            for _ in range(200):  # until the pipeline stops taking pieces
                await asyncio.sleep(0.02)
                if taken == seen:
                    stalled_at = taken
                    break
                seen = taken
            assert stalled_at > 0, "the pipeline kept reading the body"
            # One batch at the learner, QUEUED_BATCHES queued, the rest of one parsed block, a
            # block coalesced: about four blocks of at most BLOCK_MAX_BYTES (+ one piece).
            assert stalled_at <= 4 * streams.BLOCK_MAX_BYTES + 2 * len(piece), stalled_at
            assert managed.model.step == 0
            stop.set()
        await asyncio.wait_for(request, 30)
        assert not running_tasks()

    asyncio.run(scenario())


def test_a_slow_stream_is_learned_as_it_arrives(tmp_path: Path) -> None:
    """Coalescing waits for more of the body only while the learner is busy: each piece of a
    trickling body is learned before the next one is sent (else this would never finish)."""
    app = make_app(tmp_path, stream_batch_rows=10_000, fsync="off")
    pieces = [b"".join(rows_text("libsvm", 5, seed=10 + k)) for k in range(6)]

    async def trickle() -> AsyncIterator[bytes]:
        managed = app.state.registry.get("m")
        for k, piece in enumerate(pieces):
            yield piece
            async with asyncio.timeout(30):
                while managed.model.step < 5 * (k + 1):
                    await asyncio.sleep(0.005)

    async def scenario() -> list[dict[str, Any]]:
        await create_model(app)
        _, lines = await post_stream(app, "/v1/models/m/stream", "text/x-libsvm", trickle())
        return lines

    summary = asyncio.run(scenario())[-1]
    assert summary["rows"] == 30 and summary["error"] is None


# ---------------------------------------------------------------------------------------------
# a large batch is logged while it is learned: a refused log rolls the model back
# ---------------------------------------------------------------------------------------------


def stream_body(seed: int, rows: int = 200) -> bytes:
    return b"".join(rows_text("libsvm", rows, seed=seed))


@pytest.mark.parametrize("failing", ["write", "sync"])
def test_a_log_refused_while_learning_leaves_the_model_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    app = make_app(tmp_path, fsync="always", overlap_log_nnz=0)

    async def scenario() -> None:
        await create_model(app)
        managed = app.state.registry.get("m")
        ok = await post_stream(
            app, "/v1/models/m/stream", "text/x-libsvm", pieces_of([stream_body(11)])
        )
        assert ok[1][-1]["error"] is None
        before = managed.model.to_bytes()
        handle = managed.storage._wal
        size = os.fstat(handle.fileno()).st_size
        real_writev = storage_module.os.writev
        if failing == "write":

            def full_disk(descriptor: int, parts: list[Any]) -> int:
                whole = b"".join(parts)
                real_writev(descriptor, [whole[: len(whole) // 2]])  # part of it is written
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(storage_module.os, "writev", full_disk)
        else:  # the log is O_DSYNC: a failed sync is the write's error, every byte written

            def written_not_synced(descriptor: int, parts: list[Any]) -> int:
                real_writev(descriptor, parts)
                raise OSError(errno.EIO, "Input/output error")

            monkeypatch.setattr(storage_module.os, "writev", written_not_synced)
        status, lines = await post_stream(
            app, "/v1/models/m/stream", "text/x-libsvm", pieces_of([stream_body(12)])
        )
        monkeypatch.undo()
        assert status == 200
        summary = lines[-1]
        assert summary["rows"] == 0 and summary["error"] is not None, summary
        assert ("No space left" if failing == "write" else "Input/output") in str(summary)
        # the model is what it was (reloaded from its files), the log as long as before
        assert managed.model.to_bytes() == before
        managed.storage._wal.flush()
        assert os.fstat(managed.storage._wal.fileno()).st_size == size
        # and learning goes on, into the log
        again = await post_stream(
            app, "/v1/models/m/stream", "text/x-libsvm", pieces_of([stream_body(13)])
        )
        assert again[1][-1]["error"] is None and again[1][-1]["rows"] == 200

    asyncio.run(scenario())
    expected, _, _ = replay("libsvm", stream_body(11) + stream_body(13))
    assert_same_model(app.state.registry.get("m").model, expected)
    assert_same_model(ModelStorage(tmp_path / "models" / "m").recover().model, expected)


def test_a_model_that_cannot_be_rolled_back_refuses_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log refused a batch learned meanwhile and the files cannot be read back: memory is a
    batch ahead of the log, so nothing more may be logged (recovery would drop it): 503s."""
    app = make_app(tmp_path, fsync="always", overlap_log_nnz=0)

    async def scenario() -> None:
        await create_model(app)
        managed = app.state.registry.get("m")

        def broken(*_: Any) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(managed.storage, "append_all", broken)
        monkeypatch.setattr(managed.storage, "reload", broken)
        _, lines = await post_stream(
            app, "/v1/models/m/stream", "text/x-libsvm", pieces_of([stream_body(14)])
        )
        assert lines[-1]["error"] is not None and lines[-1]["rows"] == 0
        monkeypatch.undo()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            body = {"indptr": [0, 1], "indices": [1], "values": [1.0], "labels": [1]}
            response = await client.post("/v1/models/m/updates", json=body)
            assert response.status_code == 503, response.text
            assert "restart" in response.json()["detail"]
            snapshot_files = sorted(p.name for p in (tmp_path / "models" / "m").iterdir())
            response = await client.post("/v1/models/m/snapshot")  # would save the refused batch
            assert response.status_code == 503, response.text
            assert sorted(p.name for p in (tmp_path / "models" / "m").iterdir()) == snapshot_files

    asyncio.run(scenario())


def test_a_background_snapshot_that_fails_leaves_its_rows_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot whose file cannot be written: its rows are still only in the logs, so they are
    counted again and the next snapshot is due as if this one never began; the next one
    succeeds, and the files recover the model."""
    app = make_app(tmp_path)

    async def scenario() -> None:
        await create_model(app)
        managed = app.state.registry.get("m")
        _, lines = await post_stream(
            app, "/v1/models/m/stream", "text/x-libsvm", pieces_of([stream_body(15)])
        )
        rows = lines[-1]["rows"]
        assert managed.rows_since_snapshot == rows > 0
        due_since = managed.last_snapshot

        def full_disk(*_: Any) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(storage_module, "write_atomically", full_disk)
        with pytest.raises(StorageUnavailable) as refused:
            await managed.snapshot_in_background()
        assert "snapshot" in refused.value.detail
        assert managed.rows_since_snapshot == rows and managed.last_snapshot == due_since
        monkeypatch.undo()
        path, step = await managed.snapshot_in_background()
        assert path.exists() and step == managed.model.step == rows
        assert managed.rows_since_snapshot == 0 and managed.last_snapshot > due_since

    asyncio.run(scenario())
    expected, _, _ = replay("libsvm", stream_body(15))
    assert_same_model(ModelStorage(tmp_path / "models" / "m").recover().model, expected)


def test_recover_reads_a_log_written_in_pieces(tmp_path: Path) -> None:
    """The record is written piece by piece from the batch's own arrays (no copy): the bytes
    are those of one ``encode_batch`` record, and recovery reads them back."""
    text = stream_body(15, rows=500)
    parser = StreamParser("libsvm", dim=DIM, max_rows_per_batch=128)
    batches = parser.feed(text) + parser.finish()
    storage = ModelStorage(tmp_path / "m")
    model = OnlineLogisticRegression(OPTIMIZER, dim=DIM)
    storage.create(model)
    incarnation = bytes.fromhex(storage.incarnation)
    expected = io.BytesIO()
    for batch in batches:
        expected.write(storage_module.encode_batch(batch, model.step, incarnation))
        storage.append(batch, model.step)
        model.learn_batch(batch)
    storage.close()
    assert (tmp_path / "m" / "wal-0.log").read_bytes() == expected.getvalue()
    assert_same_model(ModelStorage(tmp_path / "m").recover().model, model)


def csr_body(batch: Any) -> dict[str, Any]:
    """A labelled batch as a JSON CSR body for /updates."""
    return {"indptr": batch.indptr.tolist(), "indices": batch.indices.tolist(),
            "values": batch.values.tolist(), "labels": batch.labels.tolist()}  # fmt: skip


def test_groups_learned_while_the_log_writes_share_its_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a group's log write runs, the writer learns up to max_in_flight - 1 more groups;
    those are logged together when it ends (one synchronized write), each acknowledged at its
    own step, and the log recovers them all in order."""
    # every group logged meanwhile, and each batch its own group
    app = make_app(tmp_path, fsync="always", overlap_log_nnz=0, group_max_nnz=1)
    parser = StreamParser("libsvm", dim=DIM, max_rows_per_batch=100)
    held, *later = parser.feed(stream_body(17, rows=400)) + parser.finish()
    assert len(later) == app.state.settings.max_in_flight - 1

    async def scenario() -> list[int]:
        await create_model(app)
        managed = app.state.registry.get("m")
        release, writes = threading.Event(), []
        real_append = managed.storage.append_all

        def held_first(records: list[Any]) -> None:
            writes.append([step for _, step, _ in records])
            if len(writes) == 1:
                release.wait(30)  # until the later groups have been learned
            real_append(records)

        monkeypatch.setattr(managed.storage, "append_all", held_first)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            posts = []
            for batch in (held, *later):
                post = client.post("/v1/models/m/updates", json=csr_body(batch))
                posts.append(asyncio.create_task(post))
                async with asyncio.timeout(30):  # each its own group, in this order
                    while managed.model.step < 100 * len(posts):
                        await asyncio.sleep(0.002)
            release.set()
            answers = await asyncio.gather(*posts)
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        assert writes == [[0], [100, 200, 300]]
        return [a.json()["step"] for a in answers]

    assert asyncio.run(scenario()) == [100, 200, 300, 400]
    expected = OnlineLogisticRegression(OPTIMIZER, dim=DIM)
    for batch in (held, *later):
        expected.learn_batch(batch)
    assert_same_model(ModelStorage(tmp_path / "models" / "m").recover().model, expected)


def test_a_group_the_log_refuses_refuses_the_group_learned_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit, pipelined: a group is learned while the log write of the one before is
    still running. When that write fails, both are refused (503; the later one was learned on
    top of it), the model goes back to its files, and nothing of either is in the log."""
    # every group logged meanwhile, and each batch its own group
    app = make_app(tmp_path, fsync="always", overlap_log_nnz=0, group_max_nnz=1)
    parser = StreamParser("libsvm", dim=DIM, max_rows_per_batch=100)
    first, held, later, after = parser.feed(stream_body(16, rows=400)) + parser.finish()

    async def scenario() -> None:
        await create_model(app)
        managed = app.state.registry.get("m")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first_post = await client.post("/v1/models/m/updates", json=csr_body(first))
            assert first_post.status_code == 200
            before, size = managed.model.to_bytes(), os.fstat(managed.storage._wal.fileno()).st_size
            release, writes = threading.Event(), []
            real_append = managed.storage.append_all

            def held_then_failing(records: list[Any]) -> None:
                writes.append(len(records))
                if len(writes) == 1:
                    release.wait(30)  # until the next group has been learned
                    raise storage_module.StorageError(errno.EIO, "Input/output error")
                real_append(records)

            monkeypatch.setattr(managed.storage, "append_all", held_then_failing)
            posts = [
                asyncio.create_task(client.post("/v1/models/m/updates", json=csr_body(b)))
                for b in (held, later)
            ]
            async with asyncio.timeout(30):
                while managed.model.step < 300:  # both learned, the first one's log held
                    await asyncio.sleep(0.005)
            release.set()
            answers = await asyncio.gather(*posts)
            assert [a.status_code for a in answers] == [503, 503], [a.text for a in answers]
            assert all("Input/output error" in a.json()["detail"] for a in answers)
            # The later group was never written after the hole: either the failed write held
            # the first group alone, or both (learned before that write began, they share it)
            assert writes in ([1], [2]), writes
            assert managed.model.to_bytes() == before
            assert os.fstat(managed.storage._wal.fileno()).st_size == size
            monkeypatch.setattr(managed.storage, "append_all", real_append)
            after_post = await client.post("/v1/models/m/updates", json=csr_body(after))
            assert after_post.status_code == 200

    asyncio.run(scenario())
    expected = OnlineLogisticRegression(OPTIMIZER, dim=DIM)
    for batch in (first, after):
        expected.learn_batch(batch)
    assert_same_model(app.state.registry.get("m").model, expected)
    assert_same_model(ModelStorage(tmp_path / "models" / "m").recover().model, expected)
