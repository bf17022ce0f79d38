"""The real ``adaserve serve`` process for end-to-end tests: start it, wait for it, stop it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    data_dir: Path, port: int, *flags: str, env: dict[str, str] | None = None, quiet: bool = False
) -> subprocess.Popen:
    """``python -m service serve`` on ``port``, returned once ``/readyz`` answers 200."""
    output = subprocess.DEVNULL if quiet else subprocess.PIPE
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port),
         "--data-dir", str(data_dir), *flags],
        stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            pytest.fail(f"the server exited: {process.stdout.read().decode() if not quiet else ''}")
        time.sleep(0.2)
    process.kill()
    pytest.fail("the server did not become ready in 300 s")


def stop_server(process: subprocess.Popen) -> str:
    """SIGTERM, then the process's output; a graceful shutdown exits 0."""
    process.terminate()
    output = process.communicate(timeout=60)[0]
    text = output.decode() if output else ""
    assert process.returncode == 0, text
    return text
