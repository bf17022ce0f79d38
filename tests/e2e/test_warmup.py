"""Start-up compilation: needed pieces first, readiness, waiting requests, ``adaserve warm``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from datasets import REPO
from fastapi.testclient import TestClient
from servers import free_port

import service.app as app_module
from optim import REGISTRY, kernels
from service.app import create_app
from service.batches import SMALL_BODY_BYTES
from service.cli import main
from service.registry import ManagedModel
from service.settings import Settings
from service.warmup import JSON_READER, Piece, Warmup, plan

ROWS = {"rows": [{"features": {"IQ": 1.2, "city": "paris"}, "label": 1}]}


def record(calls: list[str], name: str) -> Callable[[], None]:
    return lambda: calls.append(name)


def test_plan_puts_models_optimizers_then_the_default_first_and_covers_every_optimizer() -> None:
    pieces = plan(["ftrl", "adam", "ftrl"])
    names = [piece.name for piece in pieces]
    needed = [piece.name for piece in pieces if piece.needed]
    assert needed == ["learn/ftrl", "learn/adam", "learn/adagrad", "update-path"]
    assert names[: len(needed)] == needed
    assert len(names) == len(set(names))
    for optimizer in REGISTRY:
        for kind in ("learn", "reads", "predict"):
            assert f"{kind}/{optimizer}" in names
    assert {JSON_READER, "parser/vw", "parser/libsvm", "parser/criteo", "parser/ndjson"} <= set(
        names
    )
    assert [p.name for p in plan() if p.needed] == ["learn/adagrad", "update-path"]
    # then the first reads of the models in use, then the default optimizer "auto" (not waited for)
    assert names[len(needed) : len(needed) + 3] == ["reads/ftrl", "reads/adam", "reads/adagrad"]
    assert names[len(needed) + 3] == "learn/auto"


def test_ready_once_the_needed_pieces_are_settled_and_the_rest_follows(caplog) -> None:
    calls: list[str] = []
    gate, reached = threading.Event(), threading.Event()

    def later() -> None:
        reached.set()
        gate.wait(10)
        calls.append("later")

    warmup = Warmup([
        Piece("first", record(calls, "first"), needed=True),
        Piece("broken", lambda: 1 / 0, needed=True),
        Piece("later", later),
        Piece("last", record(calls, "last")),
    ])  # fmt: skip
    assert not warmup.is_warm("first") and warmup.is_warm("never-planned")
    with caplog.at_level(logging.INFO, logger="adaserve"):
        thread = threading.Thread(target=warmup.run)
        thread.start()
        assert reached.wait(10)
        # The needed pieces are settled (one failed): ready while "later" compiles.
        assert warmup.ready.is_set() and not warmup.finished.is_set()
        status = warmup.status()
        assert status["status"] == "ready" and status["all_warm"] is False
        assert status["warm"] == ["first"] and status["compiling"] == "later"
        assert status["pending"] == ["last"]
        assert status["failed"] == {"broken": "ZeroDivisionError: division by zero"}
        assert warmup.is_warm("first") and not warmup.is_warm("later")
        gate.set()
        thread.join(10)
    assert calls == ["first", "later", "last"]
    assert warmup.finished.is_set() and warmup.status()["compiling"] is None
    assert warmup.status()["all_warm"] is False  # one piece failed
    text = caplog.text
    assert "compiling first ..." in text and "first warm in" in text
    assert "compiling broken failed" in text and "all compiled code warm" in text


def test_kernels_for_loads_an_optimizer_once_when_threads_ask_at_the_same_time() -> None:
    spec = REGISTRY["nesterov"]
    kernels._LOADED.pop(spec.name, None)
    start = threading.Barrier(4)
    results: list[kernels.Kernels] = []

    def load() -> None:
        start.wait()
        results.append(kernels.kernels_for(spec))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4 and all(result is results[0] for result in results)


@pytest.fixture
def gated_warmup(monkeypatch) -> Iterator[dict[str, threading.Event]]:
    """The app's warm-up replaced by pieces that finish when the test says so."""
    gates = {"needed": threading.Event(), "json": threading.Event()}

    def fake_plan(in_use: list[str] = ()) -> list[Piece]:  # type: ignore[assignment]
        return [
            Piece("learn/adagrad", lambda: gates["needed"].wait(30), needed=True),
            Piece("reads/adagrad", lambda: None),
            Piece(JSON_READER, lambda: gates["json"].wait(30)),
            Piece("predict/adagrad", lambda: None),
        ]

    monkeypatch.setattr(app_module, "plan", fake_plan)
    yield gates
    for gate in gates.values():
        gate.set()


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"condition not met in {seconds} s"
        time.sleep(0.01)


def test_readyz_reports_pieces_and_requests_avoid_the_cold_json_reader(
    tmp_path, gated_warmup, monkeypatch
) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["compiling"] == "learn/adagrad"
        assert response.json()["pending"] == ["reads/adagrad", JSON_READER, "predict/adagrad"]
        # Not ready yet, but answering: a read of a model whose loops are not warm yet runs
        # in a thread (were it compiling, the event loop would wait with it).
        assert (
            client.post(
                "/v1/models", json={"name": "early", "dim": 64, "optimizer": "adagrad"}
            ).status_code
            == 201
        )
        inline_reads: list[bool] = []
        real_read = ManagedModel.read

        def read(self, fn, *, inline=False):  # type: ignore[no-untyped-def]
            inline_reads.append(inline)
            return real_read(self, fn, inline=inline)

        monkeypatch.setattr(ManagedModel, "read", read)
        one_row = {"indptr": [0, 1], "indices": [3], "values": [1.0]}
        assert client.post("/v1/models/early/predict", json=one_row).status_code == 200
        assert inline_reads == [False]
        gated_warmup["needed"].set()
        wait_for(lambda: client.get("/readyz").status_code == 200)
        wait_for(lambda: client.get("/readyz").json()["compiling"] == JSON_READER)
        body = client.get("/readyz").json()
        assert body["warm"] == ["learn/adagrad", "reads/adagrad"]
        assert body["compiling"] == JSON_READER
        assert (
            client.post(
                "/v1/models", json={"name": "m", "dim": 64, "optimizer": "adagrad"}
            ).status_code
            == 201
        )

        # While the one-call predict is not warm, predict takes the general path.
        def no_fast_path(*args: object, **kwargs: object) -> None:
            raise AssertionError("the one-call predict ran before it was warm")

        monkeypatch.setattr("service.routers.learning.scores_of_json", no_fast_path)
        csr = {"indptr": [0, 1], "indices": [3], "values": [1.0]}
        assert client.post("/v1/models/m/predict", json=csr).status_code == 200
        # A body the compiled reader would read is parsed in a parser thread meanwhile.
        inline: list[bool] = []
        real = app_module.learning._parse_inline
        monkeypatch.setattr(
            app_module.learning, "_parse_inline", lambda *a: inline.append(real(*a)) or inline[-1]
        )
        big = {"indptr": list(range(1001)), "indices": [i % 60 for i in range(1000)],
               "values": [1.0] * 1000, "labels": [1] * 1000}  # fmt: skip
        assert len(orjson.dumps(big)) > SMALL_BODY_BYTES
        assert client.post("/v1/models/m/updates", json=big).status_code == 200
        assert inline == [False]
        gated_warmup["json"].set()
        wait_for(lambda: client.get("/readyz").json()["all_warm"])
        assert client.post("/v1/models/m/updates", json=big).status_code == 200
        assert inline == [False, True]
        with pytest.raises(AssertionError, match="before it was warm"):
            client.post("/v1/models/m/predict", json=csr)


def test_readyz_without_warm_up_is_ready_and_says_nothing_was_planned(tmp_path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, warm_kernels=False))) as client:
        response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["all_warm"] is None and response.json()["warm"] == []


def test_warm_command_exits_nonzero_when_a_piece_fails(monkeypatch, caplog) -> None:
    calls: list[str] = []
    monkeypatch.setattr(app_module, "plan", lambda in_use=(): [Piece("a", record(calls, "a"))])
    assert main(["warm"]) == 0 and calls == ["a"]
    monkeypatch.setattr(app_module, "plan", lambda in_use=(): [Piece("b", lambda: 1 / 0)])
    with caplog.at_level(logging.INFO, logger="adaserve"):
        assert main(["warm"]) == 1
    assert "compiling b failed" in caplog.text and "0 piece(s) warm; 1 failed" in caplog.text


def test_cold_server_compiles_the_models_optimizer_first_and_waiting_requests_succeed(
    tmp_path: Path,
) -> None:
    """A fresh install (empty kernel and numba caches) with an FTRL model on disk: a request
    sent before readiness waits for its kernels; /readyz names what is warm and what waits."""
    data_dir = tmp_path / "data"
    with TestClient(create_app(Settings(data_dir=data_dir, warm_kernels=False))) as client:
        response = client.post(
            "/v1/models", json={"name": "f", "hash_bits": 8, "optimizer": "ftrl"}
        )
        assert response.status_code == 201
    env = {**os.environ, "ADASERVE_KERNEL_DIR": str(tmp_path / "kernels"),
           "NUMBA_CACHE_DIR": str(tmp_path / "numba")}  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port),
         "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        wait_for_answer(url, process)
        early = httpx.get(f"{url}/readyz").json()
        assert early["status"] == "compiling kernels", early
        # Sent before the server is ready: waits for the kernels, then is acknowledged.
        response = httpx.post(f"{url}/v1/models/f/updates", json=ROWS, timeout=600)
        assert response.status_code == 200 and response.json()["rows"] == 1
        created = httpx.post(
            f"{url}/v1/models",
            json={"name": "a", "hash_bits": 8, "optimizer": "adagrad"},
            timeout=600,
        )
        assert created.status_code == 201
        response = httpx.post(f"{url}/v1/models/a/updates", json=ROWS, timeout=600)
        assert response.status_code == 200 and response.json()["rows"] == 1
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, 600)
        ready = httpx.get(f"{url}/readyz").json()
        assert {"learn/ftrl", "learn/adagrad", "update-path"} <= set(ready["warm"])
        assert ready["pending"] and ready["all_warm"] is False, ready
    finally:
        process.terminate()
        output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 0, output
    assert output.index("compiling learn/ftrl") < output.index("compiling learn/adagrad")
    assert "learn/ftrl warm in" in output and "ready after" in output


def wait_for_answer(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("the server did not answer in 120 s")


def test_the_docker_image_is_warmed_at_build_time_as_the_user_it_runs_as() -> None:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    assert lines.index("RUN adaserve warm") > lines.index("USER adaserve")
    env = " ".join(line for line in lines if "ADASERVE_KERNEL_DIR=" in line)
    assert "ADASERVE_KERNEL_DIR=/opt/adaserve" in env and "NUMBA_CACHE_DIR=/opt/adaserve" in env
