"""Compressed request bodies (service/encoding.py): ``/updates`` and ``/stream`` take gzip (and
zstd when ``zstandard`` is installed), decompressed as they arrive and bounded by
``max_body_bytes``: a bomb is refused (413) without changing anything, a stream cut in the
middle of a gzip member learns the complete lines before the cut, an unknown encoding is 415.
The client compresses what it streams. The app is driven in process (httpx's ASGI transport)."""

from __future__ import annotations

import asyncio
import gzip
import io
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from optim import OnlineLogisticRegression
from optim.formats import parse_bytes
from service.app import create_app
from service.cli import main
from service.client import AdaserveClient
from service.encoding import Decoder
from service.errors import ApiError
from service.settings import Settings

DIM = 64
OPTIMIZER = {"name": "adagrad", "lr": 0.1}
LIMIT = 1 << 20  # max_body_bytes of these tests


def libsvm_text(count: int, seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(count):
        indices = np.sort(rng.choice(DIM, size=int(rng.integers(1, 8)), replace=False))
        features = " ".join(f"{i}:{rng.normal():.6g}" for i in indices)
        lines.append(f"{int(rng.integers(0, 2))} {features}\n".encode())
    return b"".join(lines)


def zstd_compress(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor().compress(data)


COMPRESS = {"gzip": gzip.compress, "zstd": zstd_compress}


def expected_model(text: bytes) -> OnlineLogisticRegression:
    model = OnlineLogisticRegression(OPTIMIZER, dim=DIM)
    model.learn_batch(parse_bytes(text, "libsvm", dim=DIM))
    return model


async def pieces(data: bytes, size: int = 5_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def run(scenario: Any, tmp_path: Path) -> Any:
    """``scenario(client)`` against a fresh app holding model ``m``."""
    app = create_app(Settings(data_dir=tmp_path, warm_kernels=False, max_body_bytes=LIMIT,
                              stream_batch_rows=100))  # fmt: skip

    async def go() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            config = {"name": "m", "dim": DIM, "optimizer": OPTIMIZER}
            assert (await client.post("/v1/models", json=config)).status_code == 201
            return await scenario(client)

    return asyncio.run(go())


async def stream(client: httpx.AsyncClient, body: bytes, encoding: str) -> httpx.Response:
    headers = {"Content-Type": "text/x-libsvm", "Content-Encoding": encoding}
    return await client.post("/v1/models/m/stream", content=pieces(body), headers=headers)


async def exported(client: httpx.AsyncClient) -> OnlineLogisticRegression:
    content = (await client.get("/v1/models/m/export")).content
    return OnlineLogisticRegression.load(io.BytesIO(content))


def same_model(a: OnlineLogisticRegression, b: OnlineLogisticRegression) -> bool:
    return a.step == b.step and all(
        np.array_equal(x, y) for x, y in zip(a.state_arrays().values(), b.state_arrays().values(),
                                             strict=True)
    )  # fmt: skip


def summary_of(response: httpx.Response) -> dict[str, Any]:
    return orjson.loads(response.content.splitlines()[-1])


# -------------------------------------------------------------------------------- the decoder
@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_decoder_joins_members_and_pieces_and_says_when_cut(encoding: str) -> None:
    text = libsvm_text(2_000)
    body = COMPRESS[encoding](text[:30_000]) + COMPRESS[encoding](text[30_000:])  # two members
    decoder = Decoder(encoding, LIMIT)
    out = b"".join(p for i in range(0, len(body), 333) for p in decoder.feed(body[i : i + 333]))
    decoder.end()
    assert out == text
    cut = Decoder(encoding, LIMIT)
    partial = b"".join(cut.feed(body[: len(body) // 3]))
    assert text.startswith(partial)
    with pytest.raises(ApiError) as truncated:
        cut.end()
    assert truncated.value.code == "truncated_body"


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_decoder_stops_a_bomb_within_a_piece_of_its_bound(encoding: str) -> None:
    bomb = COMPRESS[encoding](b"\n" * (64 << 20))  # 64 MiB of newlines in ~64 KiB (gzip)
    assert len(bomb) < 100_000
    decoder = Decoder(encoding, LIMIT)
    largest = 0
    with pytest.raises(ApiError) as refused:
        for piece in decoder.feed(bomb):
            largest = max(largest, len(piece))
    assert refused.value.status == 413 and f"{LIMIT:,}" in refused.value.detail
    assert "max_body_bytes" in refused.value.detail
    assert decoder.produced <= LIMIT + (2 << 20) and largest <= 2 << 20


def test_decoder_refuses_what_is_not_gzip() -> None:
    with pytest.raises(ApiError) as refused:
        list(Decoder("gzip", LIMIT).feed(b"plain text, not gzip\n"))
    assert refused.value.status == 400 and refused.value.code == "invalid_encoding"


# -------------------------------------------------------------------------------- /updates
@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_updates_learn_a_compressed_body_as_the_plain_one(tmp_path: Path, encoding: str) -> None:
    batch = parse_bytes(libsvm_text(300), "libsvm", dim=DIM)
    arrays = {"indptr": batch.indptr, "indices": batch.indices, "values": batch.values,
              "labels": batch.labels}  # fmt: skip
    body = orjson.dumps({key: array.tolist() for key, array in arrays.items()})
    compressed = COMPRESS[encoding](body)

    async def scenario(client: httpx.AsyncClient) -> OnlineLogisticRegression:
        headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
        answer = await client.post("/v1/models/m/updates", content=compressed, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["rows"] == 300
        return await exported(client)

    model = run(scenario, tmp_path)
    expected = OnlineLogisticRegression(OPTIMIZER, dim=DIM)
    expected.learn_batch(batch)
    assert same_model(model, expected)


def test_updates_refuse_a_bomb_and_a_cut_body_and_change_nothing(tmp_path: Path) -> None:
    bomb = gzip.compress(b" " * (LIMIT * 8))
    cut = gzip.compress(orjson.dumps({"indptr": [0, 1], "indices": [1], "values": [1.0],
                                      "labels": [1]}))[:-12]  # fmt: skip

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        answers = [
            await client.post("/v1/models/m/updates", content=data, headers=headers)
            for data in (bomb, cut, b"not gzip")
        ]
        answers.append(await client.get("/v1/models/m"))
        return answers

    too_large, truncated, invalid, model = run(scenario, tmp_path)
    assert too_large.status_code == 413, too_large.text
    assert too_large.json()["error"] == "payload_too_large"
    assert f"{LIMIT:,} bytes once decompressed" in too_large.json()["detail"]
    assert truncated.status_code == 400 and truncated.json()["error"] == "truncated_body"
    assert invalid.status_code == 400 and invalid.json()["error"] == "invalid_encoding"
    assert model.json()["step"] == 0


@pytest.mark.parametrize("route", ["updates", "stream"])
def test_an_unknown_encoding_is_415_before_the_body_is_read(tmp_path: Path, route: str) -> None:
    read = []

    async def body() -> AsyncIterator[bytes]:
        read.append(1)
        yield b"1 1:1\n"

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        media = "text/x-libsvm" if route == "stream" else "application/json"
        headers = {"Content-Type": media, "Content-Encoding": "br"}
        return await client.post(f"/v1/models/m/{route}", content=body(), headers=headers)

    answer = run(scenario, tmp_path)
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"] == "unsupported_encoding"
    assert answer.json()["where"] == {"field": "Content-Encoding"}
    assert "'br'" in answer.json()["detail"]


# -------------------------------------------------------------------------------- /stream
@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_a_compressed_stream_learns_what_the_plain_one_does(tmp_path: Path, encoding: str) -> None:
    text = libsvm_text(3_000)
    body = COMPRESS[encoding](text[:50_000]) + COMPRESS[encoding](text[50_000:])

    async def scenario(client: httpx.AsyncClient) -> Any:
        answer = await stream(client, body, encoding)
        return answer, await exported(client)

    answer, model = run(scenario, tmp_path)
    assert answer.status_code == 200
    summary = summary_of(answer)
    assert summary["error"] is None and summary["rows"] == 3_000
    assert same_model(model, expected_model(text))


def test_a_stream_cut_in_a_gzip_member_learns_its_complete_lines(tmp_path: Path) -> None:
    text = libsvm_text(3_000)
    body = gzip.compress(text)
    cut = body[: int(len(body) * 0.6)]
    received = zlib.decompressobj(wbits=31).decompress(cut)  # what the server can decompress
    complete = received[: received.rindex(b"\n") + 1]
    half_line = received[len(complete) :]
    assert half_line  # the cut falls inside a line, which would be a valid row at its end

    async def scenario(client: httpx.AsyncClient) -> Any:
        answer = await stream(client, cut, "gzip")
        return answer, await exported(client)

    answer, model = run(scenario, tmp_path)
    assert answer.status_code == 200
    summary = summary_of(answer)
    rows = complete.count(b"\n")
    assert summary["rows"] == rows and model.step == rows
    assert summary["error"]["code"] == "truncated_body"
    assert summary["error"]["field"] == "Content-Encoding"
    assert same_model(model, expected_model(complete))


def test_a_stream_bomb_is_413_and_learns_nothing(tmp_path: Path) -> None:
    # valid rows, so that only the bound stops it
    bomb = gzip.compress(b"1 1:1 2:0.5\n" * (LIMIT // 4))

    async def scenario(client: httpx.AsyncClient) -> Any:
        answer = await stream(client, bomb, "gzip")
        return answer, (await client.get("/v1/models/m")).json()

    answer, model = run(scenario, tmp_path)
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == "payload_too_large"
    assert f"{LIMIT:,}" in answer.json()["detail"]
    assert model["step"] == 0


def test_a_stream_past_the_bound_after_rows_were_learned_says_so_in_its_summary(
    tmp_path: Path,
) -> None:
    text = gzip.compress(libsvm_text(400))
    bomb = gzip.compress(b"1 1:1 2:0.5\n" * (LIMIT // 4))

    async def scenario(client: httpx.AsyncClient) -> Any:
        headers = {"Content-Type": "text/x-libsvm", "Content-Encoding": "gzip"}

        async def slowly() -> AsyncIterator[bytes]:
            yield text
            await asyncio.sleep(0.5)  # the first rows are learned meanwhile
            yield bomb  # a piece making more than the bound: refused whole

        answer = await client.post("/v1/models/m/stream", content=slowly(), headers=headers)
        return answer, (await client.get("/v1/models/m")).json()

    answer, model = run(scenario, tmp_path)
    summary = summary_of(answer)
    assert answer.status_code == 200  # rows were learned: the refusal is in the summary
    assert summary["error"]["code"] == "payload_too_large"
    assert summary["rows"] == model["step"] == 400


# -------------------------------------------------------------------------------- the client
def test_the_client_compresses_what_it_streams_unless_told_not_to(tmp_path: Path) -> None:
    text = libsvm_text(500)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        summary = {"done": True, "rows": 500, "error": None}
        return httpx.Response(200, content=orjson.dumps(summary) + b"\n")

    with AdaserveClient("http://test", transport=httpx.MockTransport(handler)) as client:
        client.stream_file("m", text, "libsvm", progress=False, chunk_bytes=4096)
        source = tmp_path / "rows.libsvm"
        source.write_bytes(text)
        client.stream_file("m", source, "libsvm", progress=False, compress=None)
    compressed, plain = seen
    assert compressed.headers["content-encoding"] == "gzip"
    assert gzip.decompress(compressed.content) == text
    assert "content-encoding" not in plain.headers and plain.content == text


# -------------------------------------------------------------------------------- adaserve train
@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_train_and_predict_read_compressed_files(
    tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = libsvm_text(1_500)
    source = tmp_path / f"rows.libsvm{suffix}"
    compress = COMPRESS["gzip" if suffix == ".gz" else "zstd"]
    source.write_bytes(compress(text[:20_000]) + compress(text[20_000:]))
    out = tmp_path / "model.npz"
    argv = ["train", str(source), "--format", "libsvm", "--dim", str(DIM),
            "--optimizer", "adagrad", "--lr", "0.1"]  # fmt: skip
    assert main([*argv, "-o", str(out), "-q"]) == 0
    assert same_model(OnlineLogisticRegression.load(out), expected_model(text))
    scores = tmp_path / "scores.txt"
    argv = ["predict", str(source), "--format", "libsvm", "-m", str(out), "-o", str(scores), "-q"]
    assert main(argv) == 0
    assert len(scores.read_text().splitlines()) == 1_500


def test_train_stops_at_a_truncated_gzip_file_after_its_complete_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = libsvm_text(1_500)
    body = gzip.compress(text)
    source = tmp_path / "cut.libsvm.gz"
    source.write_bytes(body[: len(body) // 2])
    out = tmp_path / "model.npz"
    argv = ["train", str(source), "--format", "libsvm", "--dim", str(DIM),
            "--optimizer", "adagrad", "--lr", "0.1"]  # fmt: skip
    assert main([*argv, "-o", str(out), "-q", "--save-partial"]) == 2
    err = capsys.readouterr().err
    assert f"{source}: the gzip stream ends in the middle" in err
    learned = OnlineLogisticRegression.load(out)
    assert 0 < learned.step < 1_500
    complete = b"".join(text.splitlines(keepends=True)[: learned.step])
    assert same_model(learned, expected_model(complete))


def test_a_compressed_file_is_read_in_bounded_pieces() -> None:
    from optim.formats.compressed import PIECE_BYTES, DecompressedReader

    bomb = gzip.compress(b"\n" * (64 << 20))  # 64 MiB in ~64 KiB, one raw read
    reader = DecompressedReader(io.BytesIO(bomb), "gzip", chunk_bytes=1 << 20)
    total = 0
    tracemalloc.start()
    try:
        while piece := reader.read(1 << 30):
            total += len(piece)
            del piece
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 64 << 20
    assert peak < 4 * PIECE_BYTES, peak  # not the 64 MiB the one raw read holds
