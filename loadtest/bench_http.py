"""One command, one run, loopback only: the service's HTTP throughput against a bare FastAPI route.

    python loadtest/bench_http.py          # 200k rows, 10 s per scenario -> loadtest/REPORT_HTTP.md
    python loadtest/bench_http.py --smoke  # 2k rows, 1 s per scenario -> a temp dir

Steps:

1. Start two servers as subprocesses on free 127.0.0.1 ports, both by ``uvicorn.run(app,
   host, port, log_level="info")`` (one worker, the same loop and HTTP implementation, access
   log on, written to a file): the real service (``python -m service serve --port P --data-dir
   <temp>``, kernels warmed at start-up as shipped; ``--smoke`` skips that warm-up) and
   ``loadtest/bare_app.py`` (``POST /echo``: decode the JSON body, answer its length), the
   ceiling of a FastAPI route here.  Wait for both ``/readyz``.  A third tiny server,
   ``bare_app.py --raw`` (plain asyncio, no framework), measures the load generators' ceiling.
2. Meanwhile generate ``make_clicks.py --format libsvm --bits 20`` rows once, rewrite them
   0-based (a ``hash_bits`` 20 model takes coordinates in ``[0, 2**20)``; make_clicks writes
   ``j + 1``), and pre-encode every body once: single-row CSR JSON bodies (predict, update),
   1,000-row CSR JSON batches, the libsvm text and the same rows as NDJSON.
3. Fixed-request scenarios (a) bare echo, (b) single-row predict, (c) single-row update,
   (d) 1,000-row CSR batches to ``/updates``: ``--concurrency`` persistent keep-alive HTTP/1.1
   connections in a closed loop, ``--warmup`` seconds (not counted, Python generator) then
   ``--duration`` seconds measured, at most ``--max-requests`` requests.  The generator is
   ``wrk`` (C, epoll; a Lua script cycles through the pre-built bodies and counts non-2xx) when
   it is on PATH, else the hand-written asyncio client below (``--client`` chooses).
4. Streams (e) libsvm and (f) NDJSON: the whole file in one ``POST /stream`` request, each
   repeat into a fresh model; rows/s from the first byte sent to the final summary line
   received; the summary must say ``"error": null`` and the full row count.
5. Client ceilings: each generator (asyncio, httpx, wrk) against the bare echo and the raw
   server, so the report says whether the generator or the server limits a number.
6. In-process references (this process, no HTTP): the same JSON decode + ``Batch`` + learn,
   and the same ``StreamParser`` + learn, to place the HTTP numbers.

Writes ``REPORT_HTTP.md`` (to ``loadtest/``) and ``bench_http.json`` (to ``loadtest/out/``,
git-ignored); ``--out DIR`` puts both in ``DIR``; ``--smoke`` without ``--out`` uses a temp dir.
``--only a,b`` runs just those scenarios (no ceilings, no in-process references) into a temp dir
unless ``--out``: a quick before/after of one route, e.g. predict against the bare echo.

``--feedback`` measures delayed labels instead (:func:`feedback_bench`, synthetic rows, the
asyncio client): single-row predict-with-id + feedback pairs/s against plain single-row
predicts/s (alternating windows, same run), feedback rows/s in batches of 1,000 rows, and the
memory of a pending row (in this process, tracemalloc); it writes the report's "Delayed labels"
section (in place of the previous one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness  # noqa: F401 - first: this checkout's code on sys.path
import numpy as np
import orjson
from harness import (
    HERE,
    HOST,
    MEASURED,
    REPO,
    LoadResult,
    Server,
    SharedMissingError,
    build_request,
    closed_loop,
    code_snapshot,
    generate,
    iter_chunked,
    locate_shared,
    machine_info,
    num,
    proc_cpu,
    read_head,
    read_response,
    service_settings,
    start_server,
    stop_server,
    system_busy,
    version_of,
    wait_ready,
)

REPORT_NAME = "REPORT_HTTP.md"
JSON_NAME = "bench_http.json"
MODEL = {"hash_bits": 20, "optimizer": {"name": "adagrad", "lr": 0.1}}

SCENARIO_KEYS = ("a", "b", "c", "d", "e", "f")

# The brief's targets.
PREDICT_VS_BARE = 0.80
JSON_BATCH_ROWS_S = 250_000
STREAM_LIBSVM_ROWS_S = 300_000
STREAM_NDJSON_ROWS_S = 150_000


def log(msg: str) -> None:
    print(f"[bench_http] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- CPU accounting


def own_cpu() -> float:
    """CPU seconds of this process and its reaped children (wrk runs as a child)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class CpuWindow:
    """CPU used by the servers, the load generator and everything else over a measured window."""

    pids: dict[str, int]
    wall: float = 0.0
    t0: float = 0.0
    start: dict[str, float] = field(default_factory=dict)
    cores: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> CpuWindow:
        self.start = {n: proc_cpu(p) for n, p in self.pids.items()}
        self.start["client"], self.start["system"] = own_cpu(), system_busy()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self.t0
        end = {n: proc_cpu(p) for n, p in self.pids.items()}
        end["client"], end["system"] = own_cpu(), system_busy()
        w = max(self.wall, 1e-9)
        self.cores = {n: (end[n] - self.start[n]) / w for n in end}
        # Everything on the machine that is neither our servers nor the generator.
        ours = sum(v for n, v in self.cores.items() if n != "system")
        self.cores["other"] = max(0.0, self.cores["system"] - ours)


# ---------------------------------------------------------------- servers


# ---------------------------------------------------------------- the asyncio HTTP/1.1 client


async def _httpx_phase(
    port: int,
    path: str,
    bodies: list[bytes],
    content_type: str,
    concurrency: int,
    seconds: float,
    max_requests: int,
    grace: float,
) -> LoadResult:
    import httpx

    result = LoadResult("httpx", concurrency, 0.0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Content-Type": content_type}
    issued = 0
    n = len(bodies)
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{port}", limits=limits, timeout=seconds + grace
    ) as client:

        async def worker(k: int, deadline: float) -> None:
            nonlocal issued
            i = k
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                body = bodies[i % n]
                i += concurrency
                t0 = time.perf_counter()
                try:
                    response = await client.post(path, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    result.exceptions += 1
                    result.error_samples.append(repr(exc)[:200])
                    continue
                result.latencies.append(time.perf_counter() - t0)
                if response.is_success:
                    result.ok += 1
                else:
                    result.non2xx += 1

        t0 = time.perf_counter()
        tasks = [asyncio.create_task(worker(k, t0 + seconds)) for k in range(concurrency)]
        _, pending = await asyncio.wait(tasks, timeout=seconds + grace)
        for task in pending:
            task.cancel()
            result.exceptions += 1
        result.seconds = time.perf_counter() - t0
    return result.finish()


# ---------------------------------------------------------------- wrk

WRK_LUA = r"""
-- Generated by loadtest/bench_http.py: cycle through pre-built bodies (one per line of
-- BODIES), count non-2xx answers, stop after MAX requests per thread, print a JSON summary.
local BODIES, PATH, CTYPE, MAX = "%(bodies)s", "%(path)s", "%(ctype)s", %(max)d
local threads = {}
function setup(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end
local reqs, idx, answered = {}, 0, 0
non2xx = 0  -- a global: done() reads it from each thread with thread:get
function init(args)
  for line in io.lines(BODIES) do
    reqs[#reqs + 1] = wrk.format("POST", PATH, {["Content-Type"] = CTYPE}, line)
  end
  idx = offset or 0
end
function request()
  idx = idx %% #reqs + 1
  return reqs[idx]
end
function response(status, headers, body)
  answered = answered + 1
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
  if answered >= MAX then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("non2xx") end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%.0f, "duration_us": %%.0f, "connect": %%.0f, "read": %%.0f, ' ..
    '"write": %%.0f, "status": %%.0f, "timeout": %%.0f, "non2xx": %%.0f, "p50_us": %%.1f, ' ..
    '"p90_us": %%.1f, "p99_us": %%.1f, "mean_us": %%.1f, "max_us": %%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, n,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max))
end
"""


def wrk_version(wrk: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
        first = (out.stdout or out.stderr).strip().splitlines()
        return first[0] if first else "?"
    return "?"


def run_wrk(
    wrk: str,
    port: int,
    path: str,
    bodies: list[bytes],
    content_type: str,
    concurrency: int,
    seconds: float,
    max_requests: int,
    grace: float,
    work: Path,
) -> LoadResult:
    """One wrk run (1 thread; whole seconds, at least 1) with the generated Lua script."""
    if any(b"\n" in b for b in bodies):
        raise ValueError("wrk bodies are read one per line: no newlines allowed")
    key = hashlib.sha256(b"".join(bodies[:4]) + path.encode()).hexdigest()[:12]
    bodies_path = work / f"wrk_{key}.bodies"
    if not bodies_path.exists():
        bodies_path.write_bytes(b"\n".join(bodies) + b"\n")
    script = work / f"wrk_{key}.lua"
    script.write_text(
        WRK_LUA % {"bodies": bodies_path, "path": path, "ctype": content_type, "max": max_requests}
    )
    whole = max(1, math.ceil(seconds))
    argv = [
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{whole}s",
        f"--timeout={max(1, math.ceil(grace))}s",
        "-s",
        str(script),
        f"http://{HOST}:{port}{path}",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=whole + grace + 30)
    match = re.search(r"^WRKJSON (\{.*\})$", proc.stdout, re.M)
    if proc.returncode or not match:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-500:]} {proc.stderr}")
    s = json.loads(match.group(1))
    socket_errors = int(s["connect"] + s["read"] + s["write"] + s["timeout"])
    non2xx = int(s["non2xx"])
    result = LoadResult(
        "wrk",
        concurrency,
        s["duration_us"] / 1e6,
        ok=int(s["requests"]) - non2xx,
        non2xx=non2xx,
        exceptions=socket_errors,
    )
    result.p50_ms, result.p90_ms, result.p99_ms = (
        s[k] / 1e3 for k in ("p50_us", "p90_us", "p99_us")
    )
    result.mean_ms, result.max_ms = s["mean_us"] / 1e3, s["max_us"] / 1e3
    if socket_errors:
        result.error_samples.append(
            f"socket errors: connect {s['connect']:.0f}, read {s['read']:.0f}, "
            f"write {s['write']:.0f}, timeout {s['timeout']:.0f}"
        )
    return result


# ---------------------------------------------------------------- fixed-request scenarios


@dataclass
class Scenario:
    key: str
    title: str
    server: str  # "service", "bare" or "raw"
    path: str
    bodies: list[bytes]
    rows_per_request: int
    content_type: str = "application/json"


@dataclass
class Measured:
    scenario: str
    title: str
    server: str
    path: str
    rows_per_request: int
    body_bytes_mean: float
    result: dict[str, Any]
    requests_per_s: float
    rows_per_s: float
    cpu_cores: dict[str, float]
    load1_after: float | None
    warmup_ok: int = 0
    check: str = ""


class Runner:
    """Runs the load phases against the started servers with the chosen generator."""

    def __init__(self, args: argparse.Namespace, servers: dict[str, Server], work: Path) -> None:
        self.args, self.servers, self.work = args, servers, work
        self.wrk = shutil.which("wrk")
        self.pids = {name: s.pid for name, s in servers.items()}

    def client_for(self) -> str:
        choice = self.args.client
        if choice == "auto":
            return "wrk" if self.wrk else "asyncio"
        if choice == "wrk" and not self.wrk:
            raise SystemExit("error: --client wrk but wrk is not on PATH")
        return choice

    def phase(self, sc: Scenario, client: str, seconds: float) -> LoadResult:
        port = self.servers[sc.server].port
        a = self.args
        if client == "wrk":
            assert self.wrk is not None
            return run_wrk(
                self.wrk,
                port,
                sc.path,
                sc.bodies,
                sc.content_type,
                a.concurrency,
                seconds,
                a.max_requests,
                a.grace,
                self.work,
            )
        if client == "httpx":
            return asyncio.run(
                _httpx_phase(
                    port,
                    sc.path,
                    sc.bodies,
                    sc.content_type,
                    a.concurrency,
                    seconds,
                    a.max_requests,
                    a.grace,
                )
            )
        requests = [build_request(sc.path, b, port, sc.content_type) for b in sc.bodies]
        return asyncio.run(
            closed_loop(port, requests, a.concurrency, seconds, a.max_requests, a.grace)
        )

    def measure(self, sc: Scenario, client: str, seconds: float, warmup: float) -> Measured:
        warm_ok = 0
        if warmup > 0:  # the asyncio generator warms every client's server (fractional seconds)
            w = self.phase(sc, "asyncio", warmup)
            warm_ok = w.ok
            if w.errors:
                log(f"{sc.key}: warm-up had {w.errors} error(s): {w.error_samples[:2]}")
        with CpuWindow(self.pids) as cpu:
            r = self.phase(sc, client, seconds)
        rps = r.ok / r.seconds if r.seconds > 0 else 0.0
        load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        m = Measured(
            sc.key,
            sc.title,
            sc.server,
            sc.path,
            sc.rows_per_request,
            float(np.mean([len(b) for b in sc.bodies])),
            # errors too (a property, not a field): evaluate() reads it once a target is met
            {k: v for k, v in asdict(r).items() if k != "latencies"}
            | {"requests": r.requests, "errors": r.errors},
            rps,
            rps * sc.rows_per_request,
            cpu.cores,
            load1,
            warm_ok,
        )
        log(
            f"{sc.key} [{client}]: {rps:,.0f} req/s, {m.rows_per_s:,.0f} rows/s, "
            f"p50 {r.p50_ms or 0:.2f} ms, p99 {r.p99_ms or 0:.2f} ms, errors {r.errors} "
            f"(server cores {cpu.cores.get(sc.server, 0):.2f}, client {cpu.cores['client']:.2f}, "
            f"other {cpu.cores['other']:.2f})"
        )
        return m


def paired_ratios(
    runner: Runner, bare: Scenario, predict: Scenario, client: str, pairs: int, seconds: float
) -> dict[str, Any]:
    """(b) req/s over (a) req/s from short windows run back to back, in the order a b, b a, ...

    The 10-s windows of (a) and (b) run one after the other; on a shared machine whose speed
    drifts, their ratio moves with the drift (runs here gave 58-81% for the same code). Each
    pair here sees nearly the same machine, the alternating order cancels a steady trend, and
    the median of the pairs' ratios is the estimate.
    """
    ratios, rates = [], []
    for k in range(pairs):
        order = (bare, predict) if k % 2 == 0 else (predict, bare)
        rate = {}
        for sc in order:
            r = runner.phase(sc, client, seconds)
            rate[sc.key] = r.ok / r.seconds if r.seconds > 0 and not r.errors else 0.0
        rates.append(rate)
        ratios.append(rate[predict.key] / rate[bare.key] if rate[bare.key] > 0 else 0.0)
    median = float(statistics.median(ratios))
    log(f"paired (b)/(a): median {median:.0%} of {', '.join(f'{x:.0%}' for x in ratios)}")
    return {"seconds": seconds, "ratios": ratios, "rates": rates, "median": median}


# ---------------------------------------------------------------- streams


@dataclass
class StreamRun:
    rows_per_s: float
    seconds: float
    send_seconds: float | None
    status: int
    summary: dict[str, Any] | None
    progress_lines: int
    cpu_cores: dict[str, float]


async def _stream_once(
    port: int, path: str, content_type: str, body: bytes, chunk_bytes: int, timeout: float
) -> tuple[float, float | None, int, dict[str, Any] | None, int]:
    """(seconds to the summary, seconds to the last byte sent, status, summary, progress lines)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sent_at: list[float] = []

    async def send() -> None:
        writer.write(head)
        view = memoryview(body)
        for offset in range(0, len(view), chunk_bytes):
            writer.write(view[offset : offset + chunk_bytes])
            await writer.drain()
        sent_at.append(time.perf_counter())

    t0 = time.perf_counter()
    sender = asyncio.create_task(send())
    summary, progress, status = None, 0, 0
    try:
        async with asyncio.timeout(timeout):
            status, headers = await read_head(reader)
            if b"\r\ntransfer-encoding: chunked" in headers:
                pending = b""
                async for chunk in iter_chunked(reader):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if not line:
                            continue
                        obj = orjson.loads(line)
                        if obj.get("done"):
                            summary = obj
                        else:
                            progress += 1
                    if summary is not None:
                        break
            else:  # an error answer (4xx) with a length
                i = headers.find(b"\r\ncontent-length:")
                n = int(headers[i + 17 : headers.index(b"\r\n", i + 2)]) if i >= 0 else 0
                summary = {"http_error": (await reader.readexactly(n)).decode(errors="replace")}
            t_done = time.perf_counter()
            await sender
    finally:
        sender.cancel()
        writer.close()
    send_s = sent_at[0] - t0 if sent_at else None
    return t_done - t0, send_s, status, summary, progress


# ---------------------------------------------------------------- data


@dataclass
class Bodies:
    rows: int
    nnz: int
    dim: int
    libsvm: bytes
    ndjson: bytes
    predict: list[bytes]
    update: list[bytes]
    batches: list[bytes]
    batch_rows: int
    single_row_nnz_mean: float
    prepare_seconds: float


def prepare(path: Path, bits: int, batch_rows: int, single_rows: int) -> Bodies:
    """Parse the 1-based libsvm once; build every body the scenarios send, 0-based."""
    from optim.formats import parse_bytes

    t0 = time.perf_counter()
    dim = 2**bits
    raw = path.read_bytes()
    batch = parse_bytes(raw, "libsvm", dim=dim + 1)  # make_clicks writes coordinate j as j + 1
    indptr, values = batch.indptr, batch.values
    indices = batch.indices - 1
    assert batch.labels is not None
    labels = (batch.labels > 0).astype(np.int64)
    if indices.size and indices.min() < 0:
        raise ValueError("libsvm index 0 in a 1-based file")
    n = batch.n_rows
    lines, nd = [], []
    idx_l, val_l, lab_l, ptr_l = indices.tolist(), values.tolist(), labels.tolist(), indptr.tolist()
    for r in range(n):
        a, b = ptr_l[r], ptr_l[r + 1]
        idx, val = idx_l[a:b], val_l[a:b]
        tokens = " ".join(f"{j}:{v:.6g}" for j, v in zip(idx, val, strict=True))
        lines.append(f"{lab_l[r]} {tokens}\n")
        nd.append(orjson.dumps({"indices": idx, "values": val, "label": lab_l[r]}) + b"\n")

    def csr(r0: int, r1: int, with_labels: bool) -> bytes:
        a, b = ptr_l[r0], ptr_l[r1]
        body: dict[str, Any] = {
            "indptr": [p - a for p in ptr_l[r0 : r1 + 1]],
            "indices": idx_l[a:b],
            "values": val_l[a:b],
        }
        if with_labels:
            body["labels"] = lab_l[r0:r1]
        return orjson.dumps(body)

    k = min(single_rows, n)
    batches = [csr(r, min(r + batch_rows, n), True) for r in range(0, n, batch_rows)]
    return Bodies(
        rows=n,
        nnz=int(indices.size),
        dim=dim,
        libsvm="".join(lines).encode(),
        ndjson=b"".join(nd),
        predict=[csr(r, r + 1, False) for r in range(k)],
        update=[csr(r, r + 1, True) for r in range(k)],
        batches=batches,
        batch_rows=batch_rows,
        single_row_nnz_mean=float(np.diff(indptr[: k + 1]).mean()),
        prepare_seconds=time.perf_counter() - t0,
    )


# ---------------------------------------------------------------- in-process references


def in_process_references(data: Bodies, chunk_bytes: int, single: int) -> dict[str, Any]:
    """The work behind each HTTP scenario, in this process without HTTP (ceilings, not targets)."""
    from optim import Batch, OnlineLogisticRegression
    from optim.formats import StreamParser
    from service.batches import batch_from_body
    from service.settings import Settings

    settings = Settings()
    out: dict[str, Any] = {}

    def fresh() -> OnlineLogisticRegression:
        return OnlineLogisticRegression(MODEL["optimizer"], dim=data.dim)

    # Warm (compile or load from cache) outside the timings.
    warm = fresh()
    warm.learn_batch(Batch.from_arrays([0, 1], [0], [1.0], [1], dim=data.dim))
    warm.decision_function(Batch.from_arrays([0, 1], [0], [1.0], dim=data.dim))
    for fmt in ("libsvm", "ndjson"):
        p = StreamParser(fmt, dim=data.dim, max_rows_per_batch=settings.stream_batch_rows)
        p.feed(data.libsvm[:2000] if fmt == "libsvm" else data.ndjson[:2000])

    # (b) single-row predict: the body to a Batch as the service reads it, then scoring.
    model = fresh()
    bodies = data.predict[:single]
    t0 = time.perf_counter()
    for body in bodies:
        model.decision_function(batch_from_body(body, model, settings, require_labels=False))
    out["single-row predict"] = {"rows_per_s": len(bodies) / (time.perf_counter() - t0)}

    # (d) JSON CSR batches: the body to a validated Batch (batch_from_body), then learn_batch.
    model = fresh()
    build = learn = 0.0
    for body in data.batches:
        t0 = time.perf_counter()
        b = batch_from_body(body, model, settings, require_labels=True)
        t1 = time.perf_counter()
        model.learn_batch(b)
        build, learn = build + t1 - t0, learn + time.perf_counter() - t1
    out["json csr batches"] = {
        "rows_per_s": data.rows / (build + learn),
        "split_seconds": {"batch_from_body": build, "learn_batch": learn},
    }

    # (e)/(f) streams: StreamParser.feed over chunks + learn_batch per batch.
    for key, fmt, text in (
        ("stream libsvm", "libsvm", data.libsvm),
        ("stream ndjson", "ndjson", data.ndjson),
    ):
        model = fresh()
        parser = StreamParser(fmt, dim=data.dim, max_rows_per_batch=settings.stream_batch_rows)
        parse = learn = 0.0
        rows = 0
        view = memoryview(text)
        for offset in range(0, len(view) + 1, chunk_bytes):
            t0 = time.perf_counter()
            if offset < len(view):
                batches = parser.feed(view[offset : offset + chunk_bytes])
            else:
                batches = parser.finish()
            t1 = time.perf_counter()
            for b in batches:
                rows += model.learn_batch(b).rows
            parse, learn = parse + t1 - t0, learn + time.perf_counter() - t1
        out[key] = {
            "rows": rows,
            "rows_per_s": rows / (parse + learn),
            "parse_rows_per_s": rows / parse,
            "split_seconds": {"parse": parse, "learn_batch": learn},
        }
    return out


# ---------------------------------------------------------------- versions


def versions(wrk: str | None) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in (
        "fastapi",
        "starlette",
        "uvicorn",
        "h11",
        "httptools",
        "uvloop",
        "anyio",
        "pydantic",
        "orjson",
        "httpx",
        "prometheus-client",
        "numpy",
        "numba",
    ):
        out[dist] = version_of(dist)
    out["wrk"] = wrk_version(wrk) if wrk else "not installed"
    return out


# ---------------------------------------------------------------- report


BUSY_CORES = 0.5  # 'other' cores above this in a measured window: the machine was shared


def _busy(info: dict[str, Any]) -> str:
    if info["other_cores_max"] <= BUSY_CORES:
        return ""
    return (
        f" — **the machine was not idle**: other processes took up to "
        f"{info['other_cores_max']:.2f} of {info['machine']['nproc']} CPUs while we measured, so "
        "a server (one event loop, ~1 core at most) and its worker threads were descheduled; "
        "absolute rates are lower than on an idle machine; 'req per server CPU-s' (requests "
        "per second of the server's own CPU time) is the steadier figure to compare"
    )


# The service settings that shape these numbers (reported with their values in the run).


def _env(env: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in env.items()) if env else "?"


def evaluate(info: dict[str, Any], judge: bool) -> list[dict[str, Any]]:
    fixed = {m["scenario"]: m for m in info["scenarios"]}
    streams = info["streams"]
    targets: list[dict[str, Any]] = []

    def add(what: str, threshold: str, value: float | None, ok: bool | None, shown: str) -> None:
        status = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        if not judge and ok is not None:
            status = "not judged (smoke)"
        targets.append(
            {
                "target": what,
                "threshold": threshold,
                "value": value,
                "shown": shown,
                "status": status,
            }
        )

    bare, pred = fixed.get("a"), fixed.get("b")
    if bare and pred and bare["requests_per_s"] > 0:
        ratio = pred["requests_per_s"] / bare["requests_per_s"]
        shown = (
            f"10-s windows in turn: {pred['requests_per_s']:,.0f} / "
            f"{bare['requests_per_s']:,.0f} = {ratio:.0%}"
        )
        cpu_b, cpu_a = pred["cpu_cores"].get("service", 0), bare["cpu_cores"].get("bare", 0)
        if cpu_a > 0 and cpu_b > 0:  # the same ratio per second of each server's own CPU
            per_cpu = (pred["requests_per_s"] / cpu_b) / (bare["requests_per_s"] / cpu_a)
            shown += f" (per server CPU-second: {per_cpu:.0%})"
        pairs = info.get("predict_pairs")
        if pairs:  # the estimate judged: robust to the machine's drift (see paired_ratios)
            ratio = pairs["median"]
            shown = (
                f"**{ratio:.0%}**, median of {len(pairs['ratios'])} alternating "
                f"{pairs['seconds']:g}-s pairs ({', '.join(f'{x:.0%}' for x in pairs['ratios'])}); "
                + shown
            )
        ok = ratio >= PREDICT_VS_BARE and pred["result"]["errors"] == 0
        add("(b) single-row predict req/s ÷ (a) bare echo req/s", f">= {PREDICT_VS_BARE:.0%}",
            ratio, ok, shown)  # fmt: skip
    for key, what, floor in (
        ("d", "(d) JSON CSR 1,000-row batches, rows/s learned", JSON_BATCH_ROWS_S),
    ):
        m = fixed.get(key)
        v = m["rows_per_s"] if m else None
        ok = None if m is None else (v >= floor and m["result"]["errors"] == 0)
        add(what, f">= {floor:,}", v, ok, num(v))
    for key, what, floor in (
        ("e", "(e) /stream libsvm, rows/s learned (median)", STREAM_LIBSVM_ROWS_S),
        ("f", "(f) /stream NDJSON, rows/s learned (median)", STREAM_NDJSON_ROWS_S),
    ):
        s = streams.get(key)
        v = s["rows_per_s"] if s else None
        ok = None if s is None else (v >= floor and s["all_ok"])
        add(what, f">= {floor:,}", v, ok, num(v))
    return targets


CAVEATS = [
    "Loopback only, one machine: the load generator, both servers and anything else running "
    "share the CPUs. Each table row shows the CPU cores used, during the measured window, by "
    "the server measured, by the generator (this process plus wrk) and by everything else "
    "(/proc/stat busy time minus those): a server at ~1.0 core is its single event loop (and "
    "the GIL) saturated; 'other' well above 0 means another workload competed for the 2 CPUs.",
    "Both FastAPI servers run as the service's CLI runs uvicorn: one worker, default loop and "
    "HTTP implementation (see the versions: with httptools/uvloop absent that is asyncio + "
    "h11, pure Python), access log on at INFO, redirected to a file.",
    "Closed loop: each connection sends its next request when the previous one is answered, so "
    "latency ≈ concurrency ÷ throughput; p50/p99 are per request over the measured window "
    "(wrk's are its own histogram). Warm-up requests (asyncio generator) are not counted.",
    "The predict target (b)/(a) is judged on the median of short (a)/(b) windows run back to "
    "back in alternating order after the scenarios (--pairs, --pair-seconds): on this shared "
    "machine the speed drifts between the two 10-s windows, which alone moved their ratio "
    "between 58% and 81% for the same code. The 10-s ratio is shown beside it.",
    "Single-row bodies cycle through the first 1,000 rows of the file (different rows, the same "
    "~34 non-zeros); the echo sends the same bodies as predict. Batches cycle through the file "
    "in 1,000-row JSON CSR bodies encoded once before timing; the single-row update and "
    "batch scenarios keep learning into the same model (its step is checked afterwards).",
    "make_clicks writes coordinate j as j + 1; the rows are rewritten 0-based (the same rows, "
    "values printed with 6 significant digits as make_clicks does) so a hash_bits 20 model "
    "takes every index. "
    "Each stream run learns into a fresh model that is deleted afterwards.",
    "Stream rows/s is rows ÷ (first byte sent → summary line received), the body sent in 1 MiB "
    "writes with Content-Length over one connection; the libsvm and NDJSON texts are built in "
    "memory before timing.",
    "In-process references run in the generator's process after the HTTP scenarios, without "
    "HTTP, on the same bodies: they bound what the HTTP path could reach on this machine.",
]


def render(info: dict[str, Any]) -> str:
    m = info["machine"]
    v = info["versions"]
    d = info["data"]
    lines = [
        "# adaserve over HTTP: throughput and latency on loopback",
        "",
        f"Generated {info['date']} by `{info['command']}`; total run {info['total_seconds']:.0f}s."
        + (
            " **Smoke mode**: tiny data and 1 s scenarios, targets not judged."
            if info["smoke"]
            else ""
        ),
        "",
        "## Machine, versions, load",
        "",
        f"- CPU: {m['cpu_model']}, nproc {m['nproc']} (cpu_count {m['cpu_count']}); memory "
        f"{num(m['mem_total_gb'], 1)} GiB; {m['platform']}",
        "- load average (1/5/15 min) before "
        + "/".join(f"{x:.2f}" for x in m["loadavg_start"])
        + ", after "
        + "/".join(f"{x:.2f}" for x in m["loadavg_end"])
        + f"; other processes used {info['other_cores_max']:.2f} cores at most during a "
        "measured window (column 'other cores' below)" + _busy(info),
        "- " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- code measured: commit {info['code']['commit']}, optim+service sha256 "
        f"{info['code']['sha256']}"
        + (
            f", uncommitted changes in {', '.join(info['code']['dirty'])}"
            if info["code"]["dirty"]
            else ""
        )
        + (
            "; **the sources changed during the run**"
            if info["code"].get("changed_during_run")
            else ""
        ),
        f"- servers: service `{info['servers']['service']['argv']}` (ready after "
        f"{info['servers']['service']['ready_seconds']:.1f}s; settings "
        f"{_env(info['service_settings'])}), "
        f"bare `{info['servers']['bare']['argv']}`, "
        f"raw `{info['servers']['raw']['argv']}`; load generator: **{info['client']}**, "
        f"{info['concurrency']} keep-alive connections, {info['duration']:g}s measured after "
        f"{info['warmup']:g}s warm-up per scenario, at most {info['max_requests']:,} requests",
        "",
        "## Data",
        "",
        f"- `{d['command']}` ({d['gen_seconds']:.1f}s): {d['rows']:,} rows, {d['nnz']:,} non-zeros "
        f"({d['nnz'] / max(d['rows'], 1):.1f}/row), dim {d['dim']:,}; bodies built in "
        f"{d['prepare_seconds']:.1f}s (untimed)",
        f"- single-row bodies: {d['single_bodies']:,} distinct rows, "
        f"{d['single_row_nnz_mean']:.1f} "
        f"non-zeros and {d['predict_bytes_mean']:.0f} bytes each on average; {d['batches']:,} "
        f"batches of {d['batch_rows']:,} rows, {d['batch_bytes_mean'] / 1e3:,.0f} kB each; libsvm "
        f"{d['libsvm_bytes'] / 1e6:.1f} MB, NDJSON {d['ndjson_bytes'] / 1e6:.1f} MB",
        "",
        "## Targets",
        "",
        "| target | threshold | value | status |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {t['target']} | {t['threshold']} | {t['shown']} | {t['status']} |"
        for t in info["targets"]
    ]
    lines += [
        "",
        "## Fixed-request scenarios",
        "",
        "| scenario | route | client | requests | req/s | rows/req | rows/s | p50 ms | p90 ms | "
        "p99 ms | errors (non-2xx / exc.) | server cores | req per server CPU-s | client cores "
        "| other cores | check |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for s in info["scenarios"]:
        r, c = s["result"], s["cpu_cores"]
        server = c.get(s["server"], 0.0)
        per_cpu = s["requests_per_s"] / server if server > 0 else None
        lines.append(
            f"| ({s['scenario']}) {s['title']} | `{s['path']}` | {r['client']} | {r['requests']:,} "
            f"| **{s['requests_per_s']:,.0f}** | {s['rows_per_request']:,} "
            f"| {s['rows_per_s']:,.0f} "
            f"| {num(r['p50_ms'], 2)} | {num(r['p90_ms'], 2)} | {num(r['p99_ms'], 2)} "
            f"| {r['non2xx']} / {r['exceptions']} | {server:.2f} | {num(per_cpu)} "
            f"| {c['client']:.2f} | {c['other']:.2f} | {s['check']} |"
        )
    errs = [
        f"- ({s['scenario']}) error samples: {s['result']['error_samples']}"
        for s in info["scenarios"]
        if s["result"]["error_samples"]
    ]
    lines += ["", *errs] if errs else []
    lines += [
        "",
        "## Streams: the whole file in one `POST /v1/models/{name}/stream`",
        "",
        "| scenario | Content-Type | rows | MB | runs | rows/s (median) | min–max rows/s | MB/s "
        "| s to summary | s to last byte sent | summary | server cores | other cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for key, s in info["streams"].items():
        runs = s["runs"]
        sent = [r["send_seconds"] for r in runs if r["send_seconds"] is not None]
        lines.append(
            f"| ({key}) {s['title']} | `{s['content_type']}` | {s['rows']:,} "
            f"| {s['bytes'] / 1e6:.1f} "
            f"| {len(runs)} | **{s['rows_per_s']:,.0f}** "
            f"| {min(r['rows_per_s'] for r in runs):,.0f}–"
            f"{max(r['rows_per_s'] for r in runs):,.0f} | {s['bytes'] / 1e6 / s['seconds']:.1f} "
            f"| {s['seconds']:.2f} | {statistics.median(sent) if sent else float('nan'):.2f} "
            f"| {s['summary_note']} "
            f"| {statistics.median(r['cpu_cores'].get('service', 0) for r in runs):.2f} "
            f"| {statistics.median(r['cpu_cores']['other'] for r in runs):.2f} |"
        )
    lines += [
        "",
        "## Load generators' ceilings",
        "",
        "Each generator against the bare FastAPI echo and against `bare_app.py --raw` (a plain "
        "asyncio protocol answering a fixed response, no framework): where a generator's numbers "
        "on the raw server are far above the FastAPI numbers, the generator is not what limits "
        "them.",
        "",
        "| client | server | req/s | p50 ms | p99 ms | errors | server cores | client cores "
        "| other cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in info["ceilings"]:
        r, c = s["result"], s["cpu_cores"]
        lines.append(
            f"| {r['client']} | {s['server']} | {s['requests_per_s']:,.0f} | {num(r['p50_ms'], 2)} "
            f"| {num(r['p99_ms'], 2)} | {r['non2xx'] + r['exceptions']} "
            f"| {c.get(s['server'], 0):.2f} "
            f"| {c['client']:.2f} | {c['other']:.2f} |"
        )
    lines += [
        "",
        f"Generator used for the scenarios above: **{info['client']}** ({info['client_why']}).",
        "",
    ]
    ref = info.get("in_process") or {}
    lines += ["## In-process references (no HTTP, same bodies, this process)", ""]
    if "error" in ref:
        lines.append(f"Not run: {ref['error']}")
    else:
        lines += ["| work | rows/s | split |", "|---|---:|---|"]
        for k, x in ref.items():
            split = ", ".join(f"{a} {b:.3f}s" for a, b in (x.get("split_seconds") or {}).items())
            if "parse_rows_per_s" in x:
                split += f"; parse alone {x['parse_rows_per_s']:,.0f} rows/s"
            lines.append(f"| {k} | {x['rows_per_s']:,.0f} | {split or '—'} |")
    lines += ["", "## Caveats", "", *[f"- {c}" for c in CAVEATS], ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=200_000, help="rows to generate (200000)")
    ap.add_argument("--batch-rows", type=int, default=1_000, help="rows per JSON batch (1000)")
    ap.add_argument("--concurrency", type=int, default=16, help="connections (16)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds measured per scenario")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per scenario")
    ap.add_argument(
        "--pairs",
        type=int,
        default=6,
        help="alternating (a)/(b) window pairs for the predict ratio (6; 0: none)",
    )
    ap.add_argument("--pair-seconds", type=float, default=2.0, help="seconds per paired window")
    ap.add_argument("--ceiling-duration", type=float, default=5.0, help="per client ceiling run")
    ap.add_argument("--max-requests", type=int, default=1_000_000, help="per measured phase")
    ap.add_argument("--stream-repeat", type=int, default=3, help="runs of each stream (3)")
    ap.add_argument("--stream-timeout", type=float, default=300.0, help="seconds per stream")
    ap.add_argument("--grace", type=float, default=30.0, help="seconds a request may lag the end")
    ap.add_argument(
        "--ready-timeout", type=float, default=900.0, help="seconds to wait for /readyz"
    )
    ap.add_argument(
        "--client",
        choices=("auto", "wrk", "asyncio", "httpx"),
        default="auto",
        help="generator for the fixed-request scenarios (auto: wrk if on PATH)",
    )
    ap.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the service, e.g. ADASERVE_FSYNC=off (repeatable; default: "
        "the shipped settings)",
    )
    ap.add_argument(
        "--feedback", action="store_true", help="delayed labels only (see the module docstring)"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bits", type=int, default=20)
    ap.add_argument("--shared", default=None, help="shared dir (default ../shared)")
    ap.add_argument("--out", default=None, help="write the report and the JSON into this dir")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="2000 rows, 1 s scenarios, kernels not pre-warmed, to a temp dir",
    )
    ap.add_argument(
        "--only",
        type=lambda text: {k.strip() for k in text.split(",") if k.strip()},
        default=None,
        metavar="KEYS",
        help="comma-separated scenarios to run, e.g. a,b (of a-f); skips the others, the "
        "ceilings and the in-process references; writes to a temp dir unless --out",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.feedback:
        return feedback_bench(args, argv)
    if args.smoke:
        args.rows, args.duration, args.warmup = min(args.rows, 2_000), 1.0, 0.3
        args.ceiling_duration, args.stream_repeat, args.ready_timeout = 0.5, 1, 120.0
        args.pairs, args.pair_seconds = min(args.pairs, 1), 0.5
    if min(args.rows, args.batch_rows, args.concurrency, args.max_requests, args.stream_repeat) < 1:
        print("error: counts must be positive", file=sys.stderr)
        return 2
    if args.only is not None and (not args.only or args.only - set(SCENARIO_KEYS)):
        print(f"error: --only takes scenario keys among {','.join(SCENARIO_KEYS)}", file=sys.stderr)
        return 2
    try:
        shared = locate_shared(args.shared)
    except SharedMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        report_path = Path(args.out) / REPORT_NAME
        json_path = Path(args.out) / JSON_NAME
    elif args.smoke or args.only:  # never overwrite the committed report with a partial run
        tmp_out = Path(
            tempfile.mkdtemp(prefix="bench_http_smoke_" if args.smoke else "bench_http_")
        )
        report_path, json_path = tmp_out / REPORT_NAME, tmp_out / JSON_NAME
    else:
        report_path, json_path = HERE / REPORT_NAME, HERE / "out" / JSON_NAME
    report_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)

    t_start = time.perf_counter()
    machine = machine_info()
    code = code_snapshot(MEASURED)
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": shlex.join(["python", "loadtest/bench_http.py", *argv]),
        "smoke": args.smoke,
        "machine": machine,
        "versions": versions(shutil.which("wrk")),
        "code": code,
        "concurrency": args.concurrency,
        "duration": args.duration,
        "warmup": args.warmup,
        "max_requests": args.max_requests,
    }
    with tempfile.TemporaryDirectory(prefix="bench_http_") as tmp:
        work = Path(tmp)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        service_env = dict(env)
        for pair in args.service_env:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise SystemExit(f"error: --service-env wants KEY=VALUE, got {pair!r}")
            service_env[key] = value
        if args.smoke:
            service_env["ADASERVE_WARM_KERNELS"] = "false"  # the priming requests load adagrad only
        info["service_env"] = {k: v for k, v in service_env.items() if k.startswith("ADASERVE_")}
        info["service_settings"] = service_settings(info["service_env"])
        argvs = {
            "service": ["-m", "service", "serve", "--data-dir", str(work / "data")],
            "bare": [str(HERE / "bare_app.py")],
            "raw": [str(HERE / "bare_app.py"), "--raw"],
        }
        servers: dict[str, Server] = {}
        try:
            for name, a in argvs.items():
                servers[name] = start_server(
                    name, a, work / f"{name}.log", service_env if name == "service" else env
                )
            log(
                "servers started: "
                + ", ".join(f"{n} :{s.port} (pid {s.pid})" for n, s in servers.items())
            )

            log(f"generating {args.rows:,} rows with {shared / 'tools' / 'make_clicks.py'}")
            gen = generate(shared, args.rows, args.seed, args.bits, work)
            log(gen.stderr)
            data = prepare(gen.path, args.bits, args.batch_rows, 1_000)
            gen.path.unlink()
            log(f"bodies built in {data.prepare_seconds:.1f}s")
            info["data"] = {
                "command": gen.command,
                "gen_seconds": gen.gen_seconds,
                "make_clicks": gen.stderr,
                "rows": data.rows,
                "nnz": data.nnz,
                "dim": data.dim,
                "prepare_seconds": data.prepare_seconds,
                "single_bodies": len(data.predict),
                "single_row_nnz_mean": data.single_row_nnz_mean,
                "predict_bytes_mean": float(np.mean([len(b) for b in data.predict])),
                "batches": len(data.batches),
                "batch_rows": data.batch_rows,
                "batch_bytes_mean": float(np.mean([len(b) for b in data.batches])),
                "libsvm_bytes": len(data.libsvm),
                "ndjson_bytes": len(data.ndjson),
            }

            deadline = time.perf_counter() + args.ready_timeout
            ready = {n: wait_ready(s, deadline) for n, s in servers.items()}
            log("ready: " + ", ".join(f"{n} after {x:.1f}s more" for n, x in ready.items()))
            info["servers"] = {
                n: {
                    "argv": shlex.join(["python", *argvs[n], "--port", str(s.port)]),
                    "pid": s.pid,
                    "ready_seconds": ready[n],
                }
                for n, s in servers.items()
            }
            run_everything(args, info, servers, work, data)
        finally:
            for s in servers.values():
                rc = stop_server(s)
                info.setdefault("exit_codes", {})[s.name] = rc
    info["code"]["changed_during_run"] = code_snapshot(MEASURED)["sha256"] != code["sha256"]
    machine["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    windows = [s["cpu_cores"]["other"] for s in info["scenarios"] + info["ceilings"]]
    windows += [r["cpu_cores"]["other"] for s in info["streams"].values() for r in s["runs"]]
    info["other_cores_max"] = max(windows, default=0.0)
    info["targets"] = evaluate(info, judge=not args.smoke)
    info["total_seconds"] = time.perf_counter() - t_start
    report_path.write_text(render(info))
    json_path.write_text(json.dumps(info, indent=1, default=str))
    log(f"wrote {report_path} and {json_path}")
    for t in info["targets"]:
        log(f"{t['status']:4}  {t['target']}: {t['shown']} ({t['threshold']})")
    return 0


def run_everything(
    args: argparse.Namespace,
    info: dict[str, Any],
    servers: dict[str, Server],
    work: Path,
    data: Bodies,
) -> None:
    import httpx

    runner = Runner(args, servers, work)
    client = runner.client_for()
    info["client"] = client
    info["client_why"] = {
        "wrk": "wrk is on PATH: C and epoll, it leaves the CPU to the server (ceilings below)",
        "asyncio": "wrk is not on PATH" if args.client == "auto" else "chosen with --client",
        "httpx": "chosen with --client",
    }[client]
    http = httpx.Client(base_url=f"http://{HOST}:{servers['service'].port}", timeout=120.0)

    def call(method: str, path: str, **kw: Any) -> Any:
        r = http.request(method, path, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def create(name: str) -> None:
        call("POST", "/v1/models", json={"name": name, **MODEL})

    def step(name: str) -> int:
        return int(call("GET", f"/v1/models/{name}")["step"])

    with http:
        # Prime: every route measured, once, untimed (compiles/loads what --smoke did not warm).
        create("clicks")
        call(
            "POST",
            "/v1/models/clicks/updates",
            content=data.batches[0],
            headers={"Content-Type": "application/json"},
        )
        call(
            "POST",
            "/v1/models/clicks/predict",
            content=data.predict[0],
            headers={"Content-Type": "application/json"},
        )
        create("prime")
        for ct, text in (("text/x-libsvm", data.libsvm), ("application/x-ndjson", data.ndjson)):
            head = text[: text.index(b"\n", min(len(text) - 1, 20_000)) + 1]
            http.post("/v1/models/prime/stream", content=head, headers={"Content-Type": ct}).read()
        call("DELETE", "/v1/models/prime")

        scenarios = [
            Scenario("a", "bare echo, single-row predict body", "bare", "/echo", data.predict, 1),
            Scenario(
                "b", "single-row predict", "service", "/v1/models/clicks/predict", data.predict, 1
            ),
            Scenario(
                "c", "single-row update", "service", "/v1/models/clicks/updates", data.update, 1
            ),
            Scenario(
                "d",
                f"JSON CSR batches of {data.batch_rows:,} rows",
                "service",
                "/v1/models/clicks/updates",
                data.batches,
                data.batch_rows,
            ),
        ]
        if args.only:
            scenarios = [sc for sc in scenarios if sc.key in args.only]
        results = []
        for sc in scenarios:
            before = step("clicks") if sc.path.endswith("/updates") else 0
            m = runner.measure(sc, client, args.duration, args.warmup)
            if sc.path.endswith("/updates"):
                # The server's step counts every learned row (warm-up included): at least the
                # rows of the measured 2xx answers, at most those plus what was in flight.
                # The model's step counts every row learned: the 2xx answers' rows (warm-up
                # included) plus at most one request per connection still in flight at the end.
                learned = step("clicks") - before
                answered = (m.warmup_ok + m.result["ok"]) * sc.rows_per_request
                in_flight = learned - answered
                fine = 0 <= in_flight <= args.concurrency * sc.rows_per_request
                m.check = (
                    f"model learned {learned:,} rows = 2xx answers' {answered:,} + {in_flight:,} "
                    f"in flight: {'ok' if fine else '**MISMATCH**'}"
                )
            results.append(m)
        info["scenarios"] = [asdict(m) for m in results]
        by_key = {sc.key: sc for sc in scenarios}
        if "a" in by_key and "b" in by_key and args.pairs > 0:
            info["predict_pairs"] = paired_ratios(
                runner, by_key["a"], by_key["b"], client, args.pairs, args.pair_seconds
            )

        streams: dict[str, Any] = {}
        for key, title, ct, text in (
            ("e", "libsvm", "text/x-libsvm", data.libsvm),
            ("f", "NDJSON", "application/x-ndjson", data.ndjson),
        ):
            if args.only and key not in args.only:
                continue
            runs = []
            for rep in range(args.stream_repeat):
                name = f"stream-{key}-{rep}"
                create(name)
                with CpuWindow(runner.pids) as cpu:
                    seconds, sent, status, summary, progress = asyncio.run(
                        _stream_once(
                            servers["service"].port,
                            f"/v1/models/{name}/stream",
                            ct,
                            text,
                            1 << 20,
                            args.stream_timeout,
                        )
                    )
                call("DELETE", f"/v1/models/{name}")
                ok = (
                    status == 200
                    and summary is not None
                    and summary.get("error", "?") is None
                    and summary.get("rows") == data.rows
                )
                runs.append(
                    asdict(
                        StreamRun(
                            data.rows / seconds,
                            seconds,
                            sent,
                            status,
                            summary,
                            progress,
                            cpu.cores,
                        )
                    )
                    | {"ok": ok}
                )
                log(
                    f"{key} stream {title} run {rep + 1}: {data.rows / seconds:,.0f} rows/s "
                    f"({seconds:.2f}s; last byte sent at {sent or float('nan'):.2f}s) status "
                    f"{status} summary {summary}"
                )
            median_s = statistics.median(r["seconds"] for r in runs)
            all_ok = all(r["ok"] for r in runs)
            last = runs[-1]["summary"] or {}
            note = (
                f"error null, rows {last.get('rows'):,}, log-loss {last.get('log_loss'):.4f}"
                if all_ok
                else "**" + "; ".join(str(r["summary"])[:200] for r in runs if not r["ok"]) + "**"
            )
            streams[key] = {
                "title": title,
                "content_type": ct,
                "rows": data.rows,
                "bytes": len(text),
                "seconds": median_s,
                "rows_per_s": data.rows / median_s,
                "all_ok": all_ok,
                "summary_note": note,
                "runs": runs,
            }
        info["streams"] = streams

    if args.only:  # a quick partial run: no ceilings, no in-process references
        info["ceilings"] = []
        info["in_process"] = {"error": f"skipped (--only {','.join(sorted(args.only))})"}
        return
    # Generators' ceilings: each client against the bare echo and the raw asyncio server.
    ceilings = []
    clients = ["asyncio", "httpx"] + (["wrk"] if runner.wrk else [])
    for server in ("bare", "raw"):
        sc = Scenario("ceiling", f"ceiling on {server}", server, "/echo", data.predict, 1)
        for c in clients:
            m = runner.measure(sc, c, args.ceiling_duration, 0.2 if args.smoke else 1.0)
            ceilings.append(asdict(m))
    info["ceilings"] = ceilings

    try:
        log("in-process references")
        info["in_process"] = in_process_references(data, 1 << 20, 2_000)
    except Exception as exc:  # a reference must not sink the report (optim may be mid-change)
        info["in_process"] = {"error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------- delayed labels (--feedback)

FEEDBACK_SECTION = "## Delayed labels: predict with ids, then feedback"
FEEDBACK_NNZ = 30  # non-zeros of a synthetic row (about make_clicks' 33.8)


def _synthetic_rows(rng: np.random.Generator, n: int, dim: int) -> list[tuple[list[int], list]]:
    out = []
    for _ in range(n):
        indices = np.sort(rng.choice(dim, FEEDBACK_NNZ, replace=False)).tolist()
        out.append((indices, np.round(rng.uniform(0.1, 1.0, FEEDBACK_NNZ), 3).tolist()))
    return out


def _csr_json(rows: list[tuple[list[int], list]], ids: list[str] | None = None) -> bytes:
    indptr = np.cumsum([0, *(len(r[0]) for r in rows)]).tolist()
    body: dict[str, Any] = {
        "indptr": indptr,
        "indices": [i for r in rows for i in r[0]],
        "values": [v for r in rows for v in r[1]],
    }
    if ids is not None:
        body["ids"] = ids
    return orjson.dumps(body)


async def _pairs_or_predicts(
    port: int, model: str, rows: list, concurrency: int, seconds: float, with_ids: bool, tag: str
) -> tuple[int, int, float]:
    """Closed loop: each connection sends a single-row predict (``with_ids``: with a fresh id,
    then the feedback for it) until ``seconds`` pass: (units done, errors, seconds)."""
    done = errors = 0

    async def worker(k: int, deadline: float) -> None:
        nonlocal done, errors
        reader, writer = await asyncio.open_connection(HOST, port)
        n = 0
        try:
            while time.perf_counter() < deadline:
                row = rows[(k + n * concurrency) % len(rows)]
                ident = f"{tag}-{k}-{n}"
                n += 1
                body = _csr_json([row], [ident] if with_ids else None)
                writer.write(build_request(f"/v1/models/{model}/predict", body, port))
                status, _, _ = await read_response(reader)
                ok = status == 200
                if with_ids and ok:
                    label = b'{"ids":["%s"],"labels":[%d]}' % (ident.encode(), n % 2)
                    writer.write(build_request(f"/v1/models/{model}/feedback", label, port))
                    status, _, _ = await read_response(reader)
                    ok = status == 200
                done += ok
                errors += not ok
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k, t0 + seconds) for k in range(concurrency)))
    return done, errors, time.perf_counter() - t0


async def _feedback_batches(
    port: int, model: str, rows: list, batches: int, batch_rows: int, concurrency: int
) -> tuple[int, int, float]:
    """Predict ``batches`` batches of ``batch_rows`` rows with ids (untimed), then send their
    labels in batches of ``batch_rows`` over ``concurrency`` connections: (rows, errors, s)."""
    rng = np.random.default_rng(1)
    reader, writer = await asyncio.open_connection(HOST, port)
    labels_bodies = []
    for b in range(batches):
        ids = [f"batch-{b}-{j}" for j in range(batch_rows)]
        chosen = [rows[(b * batch_rows + j) % len(rows)] for j in range(batch_rows)]
        writer.write(build_request(f"/v1/models/{model}/predict", _csr_json(chosen, ids), port))
        status, body, _ = await read_response(reader)
        if status != 200:
            raise RuntimeError(f"predict with ids: {status} {body[:200]!r}")
        order = rng.permutation(batch_rows)
        labels_bodies.append(
            orjson.dumps(
                {"ids": [ids[j] for j in order], "labels": rng.integers(0, 2, batch_rows).tolist()}
            )
        )
    writer.close()
    learned = errors = 0
    queue = list(labels_bodies)

    async def worker() -> None:
        nonlocal learned, errors
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while queue:
                body = queue.pop()
                writer.write(build_request(f"/v1/models/{model}/feedback", body, port))
                status, _, _ = await read_response(reader)
                learned += batch_rows if status == 200 else 0
                errors += status != 200
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return learned, errors, time.perf_counter() - t0


def pending_row_memory(rows: int = 20_000, dim: int = 1 << 20) -> dict[str, float]:
    """Bytes one pending row holds in this process (tracemalloc: Python objects and numpy
    arrays) against what the memory budget counts for it, rows of FEEDBACK_NNZ non-zeros."""
    import tracemalloc

    from optim import Batch
    from optim.feedback import Feedback, FeedbackPolicy

    rng = np.random.default_rng(3)
    data = _synthetic_rows(rng, rows, dim)
    batch = Batch.from_arrays(
        np.cumsum([0, *(FEEDBACK_NNZ for _ in data)]), [i for r in data for i in r[0]],
        [v for r in data for v in r[1]], dim=dim,
    )  # fmt: skip
    table = Feedback(FeedbackPolicy(3600.0, "negative"), 1, dim)
    ids = [f"impression-{k:012d}" for k in range(rows)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table.remember(ids, batch, np.zeros(rows), 0.0)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {
        "rows": rows,
        "nnz_per_row": FEEDBACK_NNZ,
        "id_chars": len(ids[0]),
        "measured_bytes_per_row": (after - before) / rows,
        "counted_bytes_per_row": table.pending_bytes / rows,
    }


def feedback_bench(args: argparse.Namespace, argv: list[str]) -> int:
    import httpx

    seconds = 1.0 if args.smoke else args.pair_seconds
    windows = 2 if args.smoke else max(args.pairs, 3)
    batches = 4 if args.smoke else 40
    report = (
        Path(args.out) / REPORT_NAME
        if args.out
        else (Path(tempfile.mkdtemp(prefix="bench_feedback_")) / REPORT_NAME)
        if args.smoke
        else HERE / REPORT_NAME
    )
    load_before = os.getloadavg()
    rng = np.random.default_rng(args.seed)
    rows = _synthetic_rows(rng, 1_000, 1 << 20)
    with tempfile.TemporaryDirectory(prefix="bench_feedback_") as tmp:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        argv_service = ["-m", "service", "serve", "--data-dir", str(Path(tmp) / "data")]
        server = start_server("service", argv_service, Path(tmp), env)
        try:
            wait_ready(server, time.perf_counter() + args.ready_timeout)
            with httpx.Client(base_url=f"http://{HOST}:{server.port}", timeout=300) as http:
                r = http.post(
                    "/v1/models",
                    json={
                        "name": "fb",
                        "hash_bits": 20,
                        "optimizer": "adagrad",
                        "feedback": {"ttl_seconds": 3600},
                    },
                )
                r.raise_for_status()
                # first use compiles what the routes need: not measured
                warm = _csr_json(rows[:1], ["warm"])
                headers = {"content-type": "application/json"}
                http.post("/v1/models/fb/predict", content=warm, headers=headers)
                http.post("/v1/models/fb/feedback", json={"ids": ["warm"], "labels": [1]})
            plain, pairs = [], []
            for w in range(windows):  # alternating windows: the same load for both
                for with_ids, out in ((False, plain), (True, pairs)):
                    done, errors, took = asyncio.run(
                        _pairs_or_predicts(
                            server.port, "fb", rows, args.concurrency, seconds, with_ids, f"w{w}"
                        )
                    )
                    out.append((done / took, errors))
            learned, batch_errors, took = asyncio.run(
                _feedback_batches(server.port, "fb", rows, batches, 1_000, 4)
            )
            with httpx.Client(base_url=f"http://{HOST}:{server.port}", timeout=60) as http:
                info = http.get("/v1/models/fb").json()["feedback"]
        finally:
            stop_server(server)
    memory = pending_row_memory(2_000 if args.smoke else 20_000)
    ratios = [p / q for (p, _), (q, _) in zip(pairs, plain, strict=True)]
    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": shlex.join(["python", "loadtest/bench_http.py", *argv]),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "concurrency": args.concurrency,
        "seconds": seconds,
        "plain": plain,
        "pairs": pairs,
        "ratio_median": statistics.median(ratios),
        "feedback_rows_per_s": learned / took,
        "feedback_batches": batches,
        "feedback_errors": batch_errors,
        "memory": memory,
        "served_log_loss": info["served"]["overall"]["log_loss"],
        "labelled": info["labelled"],
    }
    _write_feedback_section(report, result)
    log(f"delayed labels: {json.dumps(result)}")
    log(f"section written to {report}")
    return 0


def _write_feedback_section(report: Path, r: dict[str, Any]) -> None:
    m = r["memory"]
    plain = ", ".join(f"{x:,.0f}" for x, _ in r["plain"])
    pairs = ", ".join(f"{x:,.0f}" for x, _ in r["pairs"])
    errors = sum(e for _, e in r["plain"]) + sum(e for _, e in r["pairs"])
    load = "/".join(f"{x:.2f}" for x in r["load_before"])
    load_after = "/".join(f"{x:.2f}" for x in r["load_after"])
    median_plain = statistics.median(x for x, _ in r["plain"])
    median_pairs = statistics.median(x for x, _ in r["pairs"])
    figures = [
        ("plain single-row predicts/s (windows)", f"median **{median_plain:,.0f}** ({plain})"),
        (
            "predict-with-id + feedback pairs/s (each: 2 requests; the row remembered and "
            "logged, then learned and logged)",
            f"median **{median_pairs:,.0f}** ({pairs})",
        ),
        (
            "pairs/s ÷ plain predicts/s, median of the windows' ratios",
            f"**{r['ratio_median']:.0%}**",
        ),
        (
            f"feedback rows/s learned, batches of 1,000 labels in a shuffled order, "
            f"4 connections ({r['feedback_batches']} batches)",
            f"**{r['feedback_rows_per_s']:,.0f}**",
        ),
        (
            f"memory per pending row ({m['nnz_per_row']} non-zeros, {m['id_chars']}-character "
            f"id; tracemalloc over {m['rows']:,} rows)",
            f"**{m['measured_bytes_per_row']:,.0f} bytes** measured; "
            f"{m['counted_bytes_per_row']:,.0f} counted in the memory budget",
        ),
        ("non-2xx answers", str(errors + r["feedback_errors"])),
    ]
    table = "\n".join(["| figure | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in figures)])
    section = f"""{FEEDBACK_SECTION}

Generated {r["date"]} by `{r["command"]}` (a short run). **The machine was loaded**: 2 cores
shared with other work (load average 1/5/15 min {load} before, {load_after} after), so the
absolute figures are low and noisy; the ratio of alternating windows of the same run is the
figure to read. Service with `--fsync always`, kernels warmed; a model of `hash_bits` 20 with
`feedback` (TTL 3,600 s); synthetic rows of {FEEDBACK_NNZ} non-zeros; the asyncio client of this
file, {r["concurrency"]} keep-alive connections, {r["seconds"]:g}-s windows alternating.

{table}

A pair costs two requests and two synchronized log writes (the rows remembered, then the label
learned), against one request and no write for a plain predict: its rate is bounded by the
writes' group commit as well as by the HTTP layer.
"""
    text = report.read_text() if report.exists() else ""
    start = text.find(FEEDBACK_SECTION)
    if start >= 0:
        end = text.find("\n## ", start + len(FEEDBACK_SECTION))
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section if text else section
    report.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
