"""A model instance's life: requests in flight when it is deleted (and its name re-created), a
model that cannot be recovered at start-up (quarantined, never stopping the service), deleting an
experiment's member, and creation off the event loop.

The delete races run against the real server (tests/servers.py): a request's headers and part of
its body are sent on a raw socket, so the server has resolved the model before it is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from servers import free_port, start_server, stop_server

from service.app import create_app
from service.engine import snapshots
from service.engine.errors import ModelDeleted
from service.settings import Settings
from service.storage import read_records

DIM = 64
MODEL = {"name": "m", "dim": DIM, "optimizer": "adagrad"}
JSON = {"Content-Type": "application/json"}
UPDATE = orjson.dumps(
    {"indptr": [0, 2, 3], "indices": [1, 5, 7], "values": [1.0, 2.0, 0.5], "labels": [1, 0]}
)


@contextlib.contextmanager
def serving(data_dir: Path, **env: str) -> Iterator[tuple[httpx.Client, int]]:
    """The real server on a free port, and a client of it."""
    port = free_port()
    env = {"ADASERVE_WARM_KERNELS": "false", **env}
    process = start_server(data_dir, port, env=env, quiet=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client, port
    finally:
        stop_server(process)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[httpx.Client, int]]:
    with serving(tmp_path) as client_and_port:
        yield client_and_port


def begin_request(port: int, head: str, first: bytes) -> socket.socket:
    """A request's headers and the first part of its body; the server is then given time to
    resolve the model (it has the headers) and to wait for the rest."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=60)
    connection.sendall(head.encode() + first)
    time.sleep(1.0)
    return connection


def response_of(connection: socket.socket) -> tuple[int, bytes]:
    """Status and body of the response (read until the server closes or the body is whole)."""
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if b"content-length:" in head.lower() and body:
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(body) >= length:
                break
        if head.lower().count(b"transfer-encoding: chunked") and body.endswith(b"0\r\n\r\n"):
            break
    connection.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def logged_rows(model_dir: Path) -> int:
    return sum(
        batch.n_rows for log in model_dir.glob("wal-*.log") for _, _, batch in read_records(log)[0]
    )


def update_head(port: int) -> str:
    return (
        f"POST /v1/models/m/updates HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(UPDATE)}\r\n\r\n"
    )


@pytest.mark.parametrize("recreate", [True, False], ids=["re-created", "deleted"])
def test_an_update_whose_model_is_deleted_meanwhile_writes_nothing(
    server: Any, tmp_path: Path, recreate: bool
) -> None:
    client, port = server
    assert client.post("/v1/models", json=MODEL).status_code == 201
    connection = begin_request(port, update_head(port), UPDATE[:20])
    assert client.delete("/v1/models/m").status_code == 204
    if recreate:
        assert client.post("/v1/models", json=MODEL).status_code == 201
    connection.sendall(UPDATE[20:])
    status, body = response_of(connection)
    assert status == 404, body
    answer = orjson.loads(body)
    assert answer["error"] == "model_deleted" and answer["where"] == {"model": "m"}
    if recreate:  # the new model learned nothing of it, in memory or in its log
        assert client.get("/v1/models/m").json()["step"] == 0
        assert logged_rows(tmp_path / "models" / "m") == 0
        again = client.post("/v1/models/m/updates", content=UPDATE, headers=JSON)
        assert again.status_code == 200 and again.json()["step"] == 2
        assert logged_rows(tmp_path / "models" / "m") == 2
    else:
        assert client.get("/v1/models/m").status_code == 404
        assert not (tmp_path / "models" / "m").exists()


def test_a_stream_whose_model_is_deleted_ends_with_a_line_saying_so(
    server: Any, tmp_path: Path
) -> None:
    client, port = server
    assert client.post("/v1/models", json=MODEL).status_code == 201
    head = (
        f"POST /v1/models/m/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: text/x-libsvm\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    lines = b"1 1:0.5 3:1\n0 2:1\n1 4:2 5:1\n"

    def chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    connection = begin_request(port, head, chunk(lines))
    deadline = time.monotonic() + 30
    while client.get("/v1/models/m").json()["step"] < 3:  # learned as it arrived
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.delete("/v1/models/m").status_code == 204
    assert client.post("/v1/models", json=MODEL).status_code == 201  # the name, re-created
    connection.sendall(chunk(lines) + b"0\r\n\r\n")
    status, body = response_of(connection)
    assert status == 200
    summary = orjson.loads(dechunk(body).splitlines()[-1])
    assert summary["done"] and summary["rows"] == 3, summary
    assert summary["error"]["code"] == "model_deleted" and summary["error"]["model"] == "m"
    assert client.get("/v1/models/m").json()["step"] == 0
    assert logged_rows(tmp_path / "models" / "m") == 0


# ---------------------------------------------------------------------------------------------
# quarantine: a model nothing can be recovered from never stops the service
# ---------------------------------------------------------------------------------------------


def make_models(data_dir: Path) -> None:
    app = create_app(Settings(data_dir=data_dir, warm_kernels=False))
    with TestClient(app) as client:
        for name in ("good", "bad"):
            assert client.post("/v1/models", json={**MODEL, "name": name}).status_code == 201
            response = client.post(f"/v1/models/{name}/updates", content=UPDATE, headers=JSON)
            assert response.status_code == 200


def no_snapshot(directory: Path) -> None:
    for snapshot in directory.glob("snapshot-*.npz"):
        snapshot.unlink()


def garbage_snapshot(directory: Path) -> None:
    for snapshot in directory.glob("snapshot-*.npz"):
        snapshot.write_bytes(b"PK\x03\x04 not a zip file at all" * 10)


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("damage", [no_snapshot, garbage_snapshot])
def test_a_model_that_cannot_be_recovered_is_quarantined(tmp_path: Path, damage: Any) -> None:
    make_models(tmp_path)
    bad = tmp_path / "models" / "bad"
    damage(bad)
    damaged = files_of(bad)
    app = create_app(Settings(data_dir=tmp_path, warm_kernels=False))
    with TestClient(app) as client:  # starts: the good model serves
        assert client.get("/readyz").status_code == 200
        listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert listed["good"]["status"] == "ready" and listed["good"]["step"] == 2
        assert listed["bad"]["status"] == "unavailable" and listed["bad"]["reason"]
        assert (
            client.post("/v1/models/good/updates", content=UPDATE, headers=JSON).status_code == 200
        )
        for method, path, body in [
            ("GET", "/v1/models/bad", None),
            ("POST", "/v1/models/bad/updates", UPDATE),
            ("POST", "/v1/models/bad/predict", UPDATE),
            ("POST", "/v1/models/bad/snapshot", None),
            ("GET", "/v1/models/bad/export", None),
        ]:
            response = client.request(method, path, content=body, headers=JSON)
            assert response.status_code == 503, (path, response.text)
            answer = response.json()
            assert answer["error"] == "model_unavailable"
            assert listed["bad"]["reason"] in answer["detail"]
        assert client.post("/v1/models", json={**MODEL, "name": "bad"}).status_code == 409
        assert files_of(bad) == damaged  # left for an operator
        assert client.delete("/v1/models/bad").status_code == 204
        assert not bad.exists()
        assert [m["name"] for m in client.get("/v1/models").json()["models"]] == ["good"]
        assert client.post("/v1/models", json={**MODEL, "name": "bad"}).status_code == 201


# ---------------------------------------------------------------------------------------------
# experiments: a member is deleted with its experiment, not alone
# ---------------------------------------------------------------------------------------------


def test_a_member_of_an_experiment_cannot_be_deleted_alone(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, warm_kernels=False))
    with TestClient(app) as client:
        experiment = {"name": "e", "dim": DIM, "models": [{"optimizer": "sgd"}, {}]}
        assert client.post("/v1/experiments", json=experiment).status_code == 201
        refused = client.delete("/v1/models/e.0")
        assert refused.status_code == 409
        assert refused.json()["error"] == "model_in_experiment"
        assert refused.json()["where"] == {"model": "e.0", "experiment": "e"}
        assert "'e'" in refused.json()["detail"]
        assert client.get("/v1/experiments").status_code == 200
        assert (
            client.post("/v1/experiments/e/updates", content=UPDATE, headers=JSON).status_code
            == 200
        )
        assert client.delete("/v1/experiments/e").status_code == 204
        assert client.get("/v1/models").json()["models"] == []


# ---------------------------------------------------------------------------------------------
# creation runs off the event loop
# ---------------------------------------------------------------------------------------------


def probed_while(port: int, call: Any) -> tuple[httpx.Response, list[float]]:
    """``call()``'s response, and the latencies of /healthz probed every ~10 ms meanwhile."""
    answers: list[httpx.Response] = []
    calling = threading.Thread(target=lambda: answers.append(call()))
    latencies = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as probe:
        probe.get("/healthz")  # the connection is open before the call begins
        calling.start()
        while calling.is_alive():
            began = time.perf_counter()
            assert probe.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - began)
            time.sleep(0.01)
    calling.join()
    return answers[0], latencies


def test_health_answers_while_a_large_model_is_created_and_imported(tmp_path: Path) -> None:
    """/healthz is probed while a 2**22-coordinate AdaGrad model (~100 MB of state, its first
    snapshot written and synced) is created, then while its file is imported. The machine is
    shared and noisy: the bound is on the median probe, the largest is printed."""
    with serving(tmp_path, ADASERVE_MAX_BODY_BYTES=str(1 << 30)) as (client, port):
        probe_create_and_import(client, port)


def probe_create_and_import(client: httpx.Client, port: int) -> None:
    big = {"name": "big", "hash_bits": 22, "optimizer": "adagrad"}
    created, during_create = probed_while(port, lambda: client.post("/v1/models", json=big))
    assert created.status_code == 201, created.text
    exported = client.get("/v1/models/big/export").content
    imported, during_import = probed_while(
        port,
        lambda: client.post(
            "/v1/models/big/import",
            content=exported,
            headers={"Content-Type": "application/x-adaserve-model"},
        ),
    )
    assert imported.status_code == 200, imported.text
    for what, latencies in (("create", during_create), ("import", during_import)):
        median, largest = statistics.median(latencies) * 1e3, max(latencies) * 1e3
        print(
            f"healthz during {what}: {len(latencies)} probes, "
            f"median {median:.1f} ms, max {largest:.1f} ms"
        )
        assert len(latencies) >= 5  # probed while it ran
        assert median < 50


def test_an_experiment_with_a_quarantined_member_still_lists(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, warm_kernels=False))
    with TestClient(app) as client:
        experiment = {"name": "e", "dim": DIM, "models": [{"optimizer": "sgd"}, {}]}
        assert client.post("/v1/experiments", json=experiment).status_code == 201
    no_snapshot(tmp_path / "models" / "e.1")
    app = create_app(Settings(data_dir=tmp_path, warm_kernels=False))
    with TestClient(app) as client:
        (listed,) = client.get("/v1/experiments").json()["experiments"]
        assert [m["model"] for m in listed["members"]] == ["e.0"]
        assert list(listed["unavailable"]) == ["e.1"] and listed["unavailable"]["e.1"]
        refused = client.post("/v1/experiments/e/updates", content=UPDATE, headers=JSON)
        assert refused.status_code == 503 and refused.json()["where"] == {"model": "e.1"}
        assert client.delete("/v1/experiments/e").status_code == 204
        assert client.get("/v1/models").json()["models"] == []
        assert not (tmp_path / "models" / "e.1").exists()


# ---------------------------------------------------------------------------------------------
# in process: what a deleted instance still holds never reaches the files
# ---------------------------------------------------------------------------------------------


def test_a_snapshot_begun_before_a_delete_never_writes_into_the_new_model(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, warm_kernels=False))

    async def scenario() -> None:
        registry = app.state.registry
        old = await registry.create("m", {"dim": DIM})
        await old.learn(next(iter(parsed_rows())))
        # the state copied in the writer; the file is to be written after the delete
        finish, step, _, _ = await old.write(lambda model: snapshots.begin(old, model))
        await registry.delete("m")
        await registry.create("m", {"dim": DIM})
        with pytest.raises(ModelDeleted):
            await asyncio.to_thread(finish)
        assert sorted(p.name for p in (tmp_path / "models" / "m").glob("snapshot-*")) == [
            "snapshot-0.npz"
        ]
        with pytest.raises(ModelDeleted):
            await old.learn(next(iter(parsed_rows())))
        with pytest.raises(ModelDeleted):
            await old.snapshot_in_background()
        assert step == 2

    asyncio.run(scenario())


def test_a_delete_waits_for_the_groups_whose_log_write_is_running(tmp_path: Path) -> None:
    """A group logged while it is learned (overlap) is acknowledged before the delete queued
    after it runs; the update queued after the delete is refused and logs nothing."""
    app = create_app(Settings(data_dir=tmp_path, warm_kernels=False, overlap_log_nnz=0))

    async def scenario() -> None:
        registry = app.state.registry
        managed = await registry.create("m", {"dim": DIM})
        release, real_append = threading.Event(), managed.storage.append_all
        writes: list[int] = []

        def held(records: list[Any]) -> None:
            writes.append(len(records))
            release.wait(30)
            real_append(records)

        managed.storage.append_all = held  # type: ignore[method-assign]
        batch = next(iter(parsed_rows()))
        first = asyncio.create_task(managed.learn(batch))
        async with asyncio.timeout(30):
            while not writes:  # its log write is running
                await asyncio.sleep(0.002)
        deleting = asyncio.create_task(registry.delete("m"))
        later = asyncio.create_task(managed.learn(batch))
        await asyncio.sleep(0.05)
        assert not deleting.done() and not first.done()
        release.set()
        assert (await first).step == 2
        await deleting
        with pytest.raises(ModelDeleted):
            await later
        assert writes == [1] and not (tmp_path / "models" / "m").exists()

    asyncio.run(scenario())


def parsed_rows() -> list[Any]:
    """Two labelled rows as one batch."""
    from optim.formats import StreamParser

    parser = StreamParser("libsvm", dim=DIM)
    return parser.feed(b"1 1:0.5 3:1\n0 2:1\n") + parser.finish()
