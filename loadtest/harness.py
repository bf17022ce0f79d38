"""What the benchmark scripts of ``loadtest/`` share, in one module they import (``import
harness``: beside them when run as ``python loadtest/<script>.py``; pytest finds it through
``pythonpath`` in ``pyproject.toml``).

Importing it puts this checkout first on ``sys.path``, so a script measures the code beside it
rather than an installed copy. Then: the machine and the code measured (``machine_info``,
``code_snapshot``, ``version_of``), the shared click-stream generator (``locate_shared``,
``generate``), the server processes the scripts start and end by their pid (``Server``,
``start_server``, ``wait_ready``, ``stop_server``, ``kill9``), CPU accounting from ``/proc`` and
a small asyncio HTTP/1.1 client for closed-loop load (``closed_loop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import math
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) in sys.path:  # this checkout's optim and service, not an installed copy
    sys.path.remove(str(REPO))
sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------- environment and code


# Beside the repo, unless ADASERVE_SHARED points elsewhere (a git worktree is not beside it).
DEFAULT_SHARED = Path(os.environ.get("ADASERVE_SHARED", REPO.parent / "shared"))


class SharedMissingError(FileNotFoundError):
    """``../shared`` (with tools/make_clicks.py) is not where it should be."""


def locate_shared(override: str | None) -> Path:
    shared = Path(override).expanduser().resolve() if override else DEFAULT_SHARED
    tool = shared / "tools" / "make_clicks.py"
    if not tool.is_file():
        raise SharedMissingError(
            f"{tool} not found: the shared tools live beside the repo at {DEFAULT_SHARED} "
            "(pass --shared DIR to point elsewhere)"
        )
    return shared


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 2**20
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_gb": mem_gb,
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def code_snapshot(packages: tuple[str, ...] = ("optim",)) -> dict[str, Any]:
    """Commit, dirty files under ``packages`` and a digest of their sources (the code measured)."""
    digest = hashlib.sha256()
    for path in sorted(path for package in packages for path in (REPO / package).rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
            ).stdout.rstrip()  # porcelain lines start with a status column: keep its spaces
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [line[3:] for line in git("status", "--porcelain", "--", *packages).splitlines()]
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "dirty": dirty,
        "sha256": digest.hexdigest()[:16],
    }


@dataclass
class Data:
    path: Path
    rows: int
    nnz: int
    dim: int
    command: str
    gen_seconds: float
    stderr: str
    bayes_logloss: float | None
    constant_logloss: float | None
    positive_rate: float | None
    parse_seconds: float = 0.0
    batch_seconds: float = 0.0
    prefix_rows: int = 0


def generate(shared: Path, rows: int, seed: int, bits: int, out_dir: Path) -> Data:
    tool = shared / "tools" / "make_clicks.py"
    args = ["--rows", str(rows), "--seed", str(seed), "--format", "libsvm", "--bits", str(bits)]
    path = out_dir / f"clicks_{rows}_s{seed}_b{bits}.libsvm"
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        proc = subprocess.run([sys.executable, str(tool), *args], stdout=f, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - t0
    err = proc.stderr.decode(errors="replace").strip()
    if proc.returncode:
        raise RuntimeError(f"make_clicks.py failed ({proc.returncode}): {err}")

    def grab(key: str) -> float | None:
        m = re.search(rf"{key}=([0-9.eE+-]+)", err)
        return float(m.group(1)) if m else None

    return Data(
        path=path,
        rows=rows,
        nnz=0,
        dim=2**bits,
        command=f"python {tool} {shlex.join(args)} > {path.name}",
        gen_seconds=seconds,
        stderr=err,
        bayes_logloss=grab("bayes_logloss"),
        constant_logloss=grab("constant_rate_logloss"),
        positive_rate=grab("positive_rate"),
    )


# ---------------------------------------------------------------- processes, servers, load


HOST = "127.0.0.1"


MEASURED = ("optim", "service")  # the packages whose sources the report fingerprints


CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a live process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


def system_busy() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat; idle and iowait excluded)."""
    try:
        with open("/proc/stat") as f:
            parts = [int(x) for x in f.readline().split()[1:]]
        return (sum(parts[:8]) - parts[3] - parts[4]) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A server process a benchmark started (ended by its pid: :func:`stop_server`,
    :func:`kill9`), its port and the file its output goes to."""

    name: str
    proc: subprocess.Popen
    port: int
    log_path: Path
    t0: float = 0.0  # perf_counter just before Popen

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])


def start_server(
    name: str, argv: list[str], log_path: Path, env: dict[str, str], port: int | None = None
) -> Server:
    """``python ARGV --port PORT`` (a free port by default) from the repo, its output to
    ``log_path``; not waited for (:func:`wait_ready`)."""
    port = free_port() if port is None else port
    with open(log_path, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, *argv, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env=env,
        )
    return Server(name, proc, port, log_path, t0)


def wait_ready(server: Server, deadline: float) -> float:
    """Poll GET /readyz until 200; seconds waited. Raises if the process dies or time runs out."""
    import httpx

    t0 = time.perf_counter()
    with httpx.Client(base_url=f"http://{HOST}:{server.port}", timeout=5.0) as http:
        while time.perf_counter() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited: {server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if http.get("/readyz").status_code == 200:
                    return time.perf_counter() - t0
            time.sleep(0.1)
    raise TimeoutError(f"{server.name} not ready in time: {server.log_tail()}")


def kill9(server: Server) -> int | None:
    """SIGKILL (a crash, as the durability rounds need), then its exit status."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.proc.wait(30)
    return server.proc.returncode


def stop_server(server: Server, timeout: float = 60.0) -> int | None:
    """SIGINT (uvicorn's graceful shutdown: the service snapshots its models), then kill."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGINT)
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(10)
    return server.proc.returncode


class ProtocolError(Exception):
    pass


def build_request(
    path: str, body: bytes, port: int, content_type: str = "application/json"
) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_head(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        raise ProtocolError(head[:40])
    return int(head[9:12]), head.lower()


async def iter_chunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers from uvicorn: the final CRLF
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one response: Content-Length or chunked."""
    status, head = await read_head(reader)
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        n = int(head[i + 17 : head.index(b"\r\n", i + 2)])
        body = await reader.readexactly(n) if n else b""
    elif b"\r\ntransfer-encoding: chunked" in head:
        body = b"".join([c async for c in iter_chunked(reader)])
    else:
        raise ProtocolError("response without a length")
    return status, body, b"\r\nconnection: close" not in head


@dataclass
class LoadResult:
    """One measured phase of a closed-loop load: counts, wall time and latencies (seconds)."""

    client: str
    concurrency: int
    seconds: float
    ok: int = 0
    rows: int = 0  # rows in the 2xx answered requests (when the phase is given rows per request)
    non2xx: int = 0
    exceptions: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    max_ms: float | None = None
    error_samples: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return self.ok + self.non2xx + self.exceptions

    @property
    def errors(self) -> int:
        return self.non2xx + self.exceptions

    def finish(self) -> LoadResult:
        if self.latencies:
            lat = np.asarray(self.latencies) * 1e3
            self.p50_ms, self.p90_ms, self.p99_ms = (
                float(x) for x in np.percentile(lat, [50, 90, 99])
            )
            self.mean_ms, self.max_ms = float(lat.mean()), float(lat.max())
        self.latencies = []
        return self


async def closed_loop(
    port: int,
    requests: list[bytes],
    concurrency: int,
    seconds: float,
    max_requests: int,
    grace: float,
    rows: list[int] | None = None,
) -> LoadResult:
    """``concurrency`` keep-alive connections, each sending its next request when answered
    (``rows[j]``: the rows of ``requests[j]``, counted when it is answered 2xx)."""
    result = LoadResult("asyncio", concurrency, 0.0)
    issued = 0
    n = len(requests)

    async def worker(k: int, deadline: float) -> None:
        nonlocal issued
        reader, writer = await asyncio.open_connection(HOST, port)
        i = k
        try:
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                j = i % n
                i += concurrency
                t0 = time.perf_counter()
                try:
                    writer.write(requests[j])
                    status, body, keep = await read_response(reader)
                except (OSError, EOFError, ValueError, ProtocolError) as exc:
                    result.exceptions += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(repr(exc)[:200])
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, port)
                    continue
                result.latencies.append(time.perf_counter() - t0)
                if 200 <= status < 300:
                    result.ok += 1
                    result.rows += rows[j] if rows is not None else 0
                else:
                    result.non2xx += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(f"{status}: {body[:200]!r}")
                if not keep:
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, port)
        finally:
            writer.close()

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(worker(k, t0 + seconds)) for k in range(concurrency)]
    done, pending = await asyncio.wait(tasks, timeout=seconds + grace)
    for task in pending:  # stuck past the grace period: counted as timed out
        task.cancel()
        result.exceptions += 1
        result.error_samples.append("timeout: no answer within the grace period")
    for task in done:
        if task.exception() is not None:  # could not (re)connect
            result.exceptions += 1
            result.error_samples.append(repr(task.exception())[:200])
    result.seconds = time.perf_counter() - t0
    return result.finish()


HTTP_SETTINGS = (
    "fsync", "fsync_interval_ms", "warm_kernels", "stream_batch_rows", "max_body_bytes",
)  # fmt: skip


def service_settings(env: dict[str, str], keys: tuple[str, ...] = HTTP_SETTINGS) -> dict[str, Any]:
    """The settings that shape these numbers: the service's defaults, then ADASERVE_* overrides."""
    from service.settings import Settings

    return {k: env.get(f"ADASERVE_{k.upper()}", Settings.model_fields[k].default) for k in keys}


def num(x: float | None, digits: int = 0) -> str:
    """``x`` with thousands separators and ``digits`` decimals; "—" for None or NaN."""
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def load_text(x: Any) -> str:
    """A load average triple as text ("?" for what is missing)."""
    return "?" if not x else "/".join("?" if v is None else f"{v:.2f}" for v in x)
