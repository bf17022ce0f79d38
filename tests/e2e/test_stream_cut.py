"""A stream cut by the client, against the real server: every complete line the service received
is learned and durable (kill -9, restart: still there), and the half line after them is dropped,
although it would be a valid row if it ended there."""

from __future__ import annotations

import io
import socket
import struct
import time
from pathlib import Path

import httpx
import numpy as np
from servers import free_port, start_server, stop_server

from optim import OnlineLogisticRegression
from optim.formats import parse_bytes

DIM = 64
OPTIMIZER = {"name": "adagrad", "lr": 0.1}
LINES = 3_000
HALF_LINE = b"1 3:0.5 7:2"  # a whole row, had its newline come


def lines_text(count: int) -> bytes:
    rng = np.random.default_rng(11)
    lines = []
    for _ in range(count):
        indices = np.sort(rng.choice(DIM, size=int(rng.integers(1, 8)), replace=False))
        features = " ".join(f"{i}:{rng.normal():.6g}" for i in indices)
        lines.append(f"{int(rng.integers(0, 2))} {features}\n".encode())
    return b"".join(lines)


def step_of(base: str) -> int:
    return httpx.get(f"{base}/v1/models/m").json()["step"]


def wait_for_step(base: str, step: int) -> None:
    deadline = time.monotonic() + 120
    while step_of(base) != step:
        assert time.monotonic() < deadline, f"step {step_of(base)}, expected {step}"
        time.sleep(0.05)


def exported(base: str) -> OnlineLogisticRegression:
    return OnlineLogisticRegression.load(
        io.BytesIO(httpx.get(f"{base}/v1/models/m/export").content)
    )


def test_a_cut_stream_keeps_every_complete_line_and_drops_the_half_line(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port, "--fsync", "always", quiet=True)
    try:
        created = httpx.post(f"{base}/v1/models", json={"name": "m", "dim": DIM,
                                                        "optimizer": OPTIMIZER})  # fmt: skip
        assert created.status_code == 201, created.text
        text = lines_text(LINES)
        expected = OnlineLogisticRegression(OPTIMIZER, dim=DIM)
        expected.learn_batch(parse_bytes(text, "libsvm", dim=DIM))
        head = (
            f"POST /v1/models/m/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: text/x-libsvm\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(head.encode())
        body = text + HALF_LINE
        for start in range(0, len(body), 7_777):  # chunks cut in the middle of lines
            chunk = body[start : start + 7_777]
            client.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        # Every complete line is learned as it arrives (the stream's learner was waiting).
        wait_for_step(base, LINES)
        # Abruptly: a reset, no end of the chunked body.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        time.sleep(1.0)
        assert step_of(base) == LINES  # the half line was dropped, not learned as a row
        assert exported(base).table.tobytes() == expected.table.tobytes()
        server.kill()  # kill -9: only what is in the log and snapshots survives
        server.wait()
        server = start_server(tmp_path, port, "--fsync", "always", quiet=True)
        assert step_of(base) == LINES
        recovered = exported(base)
        assert recovered.table.tobytes() == expected.table.tobytes()
        assert recovered.counters.tobytes() == expected.counters.tobytes()
    finally:
        if server.poll() is None:
            stop_server(server)
