"""One command, one run, loopback only: what the write-ahead log guarantees and what it costs.

    python loadtest/bench_durability.py          # 10 kill rounds, 1M-row log, 10 s runs
    python loadtest/bench_durability.py --smoke  # 2 rounds, 20k-row log, 2 s runs -> a temp dir
    python loadtest/bench_durability.py --faults-only --faults 10  # section 4 only, in place

Steps (every server is the real one, ``python -m service serve --port P --data-dir D --fsync M``,
a subprocess on 127.0.0.1; data directories live under ``--data-root``, default the system
temp dir, and are removed at the end unless ``--keep-data``):

1. kill -9 rounds (``--fsync always``): one model (dim 2**16, Adam). Each round a client sends
   sequential JSON CSR updates (1..100 random sparse rows each) and counts the rows the server
   acknowledged (200); a timer SIGKILLs the server 0.2–2 s into the round. The server restarts
   on the same data directory; restart time is from ``Popen`` to the first ``/readyz`` 200.
   ``GET /v1/models/m`` gives the served step: rows lost = max(0, acknowledged − served). The
   batch in flight at the kill may or may not have reached the log; it counts as neither lost
   nor extra and the report says how often it was logged. As a stronger check the exported
   model is compared bit for bit with an in-process replay of the acknowledged batches.
2. Recovery of a long log: ``make_clicks.py --format libsvm --bits 20`` rows, parsed by
   ``optim.formats.iter_file_batches`` and cut into 1,000-row ``Batch`` objects (0-based), are
   appended in-process with ``ModelStorage.append`` after a snapshot at step 0 (AdaGrad,
   hash_bits 20). Then (a) ``ModelStorage(dir).recover()`` in this process and (b) the real
   server's start until ``/readyz`` 200 and ``GET /v1/models/m`` shows every row. The server is
   SIGKILLed after each measurement so the directory stays as built (a graceful stop would
   snapshot and start an empty log). An empty data directory gives the start-up baseline.
3. Update throughput per fsync mode (always, interval, off): a fresh server and model per mode,
   pre-encoded 1,000-row JSON CSR bodies of the same click rows, a closed loop of 1 and then of
   8 keep-alive connections (hand-written asyncio HTTP/1.1 client) for ``--duration`` seconds
   each, at most ``--max-requests`` requests; rows/s and latency percentiles. A raw fsync probe
   and ``df -h`` describe the disk under the data directory.

4. Fault injection (``fault_rounds.py``, the rounds ``tests/e2e/test_fault_injection.py`` runs a few
   of): ``--faults N`` rounds of kill -9 at random moments, bytes flipped in snapshots and logs,
   a full disk, concurrent creates, deletes, re-creates, imports, updates and streams on
   several models and hypothesis-built bad bodies; every model checked against the replay of
   what was acknowledged. ``--fault-seed`` replays a run (the seed is printed);
   ``--faults-only`` runs just this and writes its section into the existing report.

Writes ``REPORT_DURABILITY.md`` (to ``loadtest/``) and ``bench_durability.json`` (to
``loadtest/out/``, git-ignored); ``--out DIR`` puts both in ``DIR``; ``--smoke`` without
``--out`` uses a temp dir. Exit status 1 when an acknowledged row was lost or recovery came back
short.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import io
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(HERE), str(REPO)):  # this checkout's optim/service and bench_learners beside us
    if _p in sys.path:
        sys.path.remove(_p)
    sys.path.insert(0, _p)

import fault_rounds  # noqa: E402
from bench_http import (  # noqa: E402
    MEASURED,
    LoadResult,
    _n,
    build_request,
    closed_loop,
    free_port,
    proc_cpu,
    service_settings,
    system_busy,
)
from bench_learners import (  # noqa: E402
    SharedMissingError,
    _load,
    code_snapshot,
    generate,
    locate_shared,
    machine_info,
    version_of,
)

from optim import Batch, OnlineLogisticRegression  # noqa: E402
from optim.formats import concat_batches, iter_file_batches  # noqa: E402
from service.storage import ModelStorage, encode_batch, read_records  # noqa: E402

HOST = "127.0.0.1"
REPORT_NAME = "REPORT_DURABILITY.md"
JSON_NAME = "bench_durability.json"
MODEL = "m"
KILL_DIM = 2**16
KILL_OPTIMIZER = {"name": "adam"}
KILL_MAX_ROWS = 100
KILL_MAX_NNZ = 30
KILL_WINDOW = (0.2, 2.0)  # seconds into a round at which the server is SIGKILLed
KILL_MAX_BATCHES = 200_000  # per round; the kill comes long before
ADAGRAD = {"name": "adagrad", "lr": 0.1}
MODES = ("always", "interval", "off")
POLL = 0.02  # seconds between readiness polls
BUSY_LOAD_PER_CPU = 0.75
GRACE = 60.0  # seconds a request may lag the end of a measured phase
# The service settings that shape these numbers (reported with their values in the run).
DURABILITY_SETTINGS = (
    "fsync_interval_ms", "snapshot_every_rows", "snapshot_every_seconds", "warm_kernels",
)  # fmt: skip


def log(msg: str) -> None:
    print(f"[bench_durability] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- CPU accounting


def own_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def proc_status_kb(pid: int | str, key: str) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def load1() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log_path: Path
    t0: float  # perf_counter just before Popen

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])


class Servers:
    """Every server this run started, so the ``finally`` of ``main`` can end them (by pid)."""

    def __init__(self, env: dict[str, str], ready_timeout: float) -> None:
        self.env = env
        self.ready_timeout = ready_timeout
        self.started: list[Server] = []

    def start(self, data_dir: Path, fsync: str, log_path: Path) -> Server:
        port = free_port()
        argv = [sys.executable, "-m", "service", "serve", "--port", str(port)]
        argv += ["--data-dir", str(data_dir), "--fsync", fsync]
        with open(log_path, "wb") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env=self.env,
            )
        server = Server(proc, port, log_path, t0)
        self.started.append(server)
        return server

    def wait_ready(self, server: Server) -> tuple[float, float]:
        """Seconds from Popen to the first HTTP answer (any status) and to ``/readyz`` 200."""
        import httpx

        first = None
        deadline = server.t0 + self.ready_timeout
        with httpx.Client(base_url=server.url, timeout=2.0) as http:
            while time.perf_counter() < deadline:
                if server.proc.poll() is not None:
                    raise RuntimeError(f"the server exited: {server.log_tail()}")
                try:
                    status = http.get("/readyz").status_code
                except httpx.HTTPError:
                    time.sleep(POLL)
                    continue
                now = time.perf_counter() - server.t0
                first = now if first is None else first
                if status == 200:
                    return first, now
                time.sleep(POLL)
        raise TimeoutError(f"the server was not ready in {self.ready_timeout:.0f}s")

    @staticmethod
    def kill9(server: Server) -> int | None:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(30)
        return server.proc.returncode

    @staticmethod
    def stop(server: Server, timeout: float = 60.0) -> int | None:
        """SIGINT (graceful: the service snapshots its models), SIGKILL after ``timeout``."""
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGINT)
            try:
                server.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait(10)
        return server.proc.returncode

    def end_all(self) -> None:
        for server in self.started:
            if server.proc.poll() is None:
                self.kill9(server)


# ---------------------------------------------------------------- 1. kill -9 rounds


def random_batch(rng: np.random.Generator) -> tuple[dict[str, Any], int]:
    """1..100 rows, 1..30 distinct coordinates of [0, 2**16) each, normal values, 0/1 labels."""
    rows = int(rng.integers(1, KILL_MAX_ROWS + 1))
    indptr, indices, values = [0], [], []
    for _ in range(rows):
        cols = np.unique(rng.integers(0, KILL_DIM, int(rng.integers(1, KILL_MAX_NNZ + 1))))
        indices += cols.tolist()
        values += rng.normal(size=cols.size).tolist()
        indptr.append(len(indices))
    labels = rng.integers(0, 2, rows).tolist()
    return {"indptr": indptr, "indices": indices, "values": values, "labels": labels}, rows


def learn_body(model: OnlineLogisticRegression, body: dict[str, Any]) -> None:
    batch = Batch.from_arrays(
        body["indptr"], body["indices"], body["values"], body["labels"], dim=KILL_DIM
    )
    model.learn_batch(batch)


def kill_rounds(rounds: int, seed: int, work: Path, servers: Servers) -> dict[str, Any]:
    import httpx

    rng = np.random.default_rng(seed)
    data_dir = work / "kill"
    logs = work / "logs"
    server = servers.start(data_dir, "always", logs / "kill-start.log")
    first_start = dict(zip(("first_answer_s", "ready_s"), servers.wait_ready(server), strict=True))
    log(f"kill: server ready in {first_start['ready_s']:.2f}s")
    headers = {"Content-Type": "application/json"}
    created = httpx.post(
        f"{server.url}/v1/models",
        json={"name": MODEL, "dim": KILL_DIM, "optimizer": KILL_OPTIMIZER},
        timeout=30,
    )
    if created.status_code != 201:
        raise RuntimeError(f"could not create the model: {created.status_code} {created.text}")
    replay = OnlineLogisticRegression(KILL_OPTIMIZER, dim=KILL_DIM)
    step = 0  # rows the server holds for sure (acknowledged, or verified after a restart)
    out: list[dict[str, Any]] = []
    for r in range(rounds):
        delay = float(rng.uniform(*KILL_WINDOW))
        victim = server
        # The timer starts at the round's first acknowledgement: a server that is still
        # loading its kernels (warm-up off in --smoke, a slow patch of the machine) is not
        # killed before it has acknowledged anything.
        killer = threading.Timer(delay, os.kill, (victim.proc.pid, signal.SIGKILL))
        t_round = time.perf_counter()
        acked_rows = acked_batches = 0
        in_flight: dict[str, Any] | None = None
        in_flight_rows = 0
        errors: list[str] = []
        step_mismatches = 0
        # A long timeout: with the warm-up off (--smoke) in a fresh checkout, the first update
        # compiles the JSON reader (numba, seconds); a timeout would end the round unanswered.
        with httpx.Client(base_url=victim.url, timeout=120) as client:
            while acked_batches < KILL_MAX_BATCHES and time.perf_counter() - t_round < delay + 150:
                body, rows = random_batch(rng)
                in_flight, in_flight_rows = body, rows
                try:
                    response = client.post(
                        f"/v1/models/{MODEL}/updates", content=orjson.dumps(body), headers=headers
                    )
                except httpx.TransportError:
                    break  # the process died with this batch in flight
                in_flight, in_flight_rows = None, 0
                if response.status_code != 200:  # not applied; should not happen
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                learn_body(replay, body)
                acked_rows += rows
                acked_batches += 1
                step += rows
                if acked_batches == 1:
                    killer.start()
                if response.json().get("step") != step:
                    step_mismatches += 1
        if killer.ident is None:  # nothing acknowledged (the loop timed out): kill now
            killer.interval = 0.0
            killer.start()
        killer.join()
        with contextlib.suppress(subprocess.TimeoutExpired):
            victim.proc.wait(30)
        returncode = victim.proc.returncode

        server = servers.start(data_dir, "always", logs / f"kill-restart-{r + 1}.log")
        first, ready = servers.wait_ready(server)
        served_step = int(httpx.get(f"{server.url}/v1/models/{MODEL}", timeout=30).json()["step"])
        exported = httpx.get(f"{server.url}/v1/models/{MODEL}/export", timeout=60)
        served = OnlineLogisticRegression.load(io.BytesIO(exported.content))
        logged: bool | None = None
        lost = extra = 0
        if served_step == step:
            logged = False if in_flight is not None else None
        elif in_flight is not None and served_step == step + in_flight_rows:
            logged = True
            learn_body(replay, in_flight)
            step += in_flight_rows
        elif served_step < step:
            lost = step - served_step
        else:
            extra = served_step - step
        exact = bool(
            served.step == replay.step
            and served.table.tobytes() == replay.table.tobytes()
            and served.counters.tobytes() == replay.counters.tobytes()
        )
        if lost or extra or not exact:  # carry on from what the server holds
            replay, step = served, served_step
        dropped = [
            line.split("dropped: ", 1)[1]
            for line in server.log_text().splitlines()
            if "dropped: " in line
        ]
        row = {
            "round": r + 1,
            "kill_after_s": delay,
            "returncode": returncode,
            "acked_batches": acked_batches,
            "acked_rows": acked_rows,
            "in_flight_rows": in_flight_rows if in_flight is not None else None,
            "in_flight_logged": logged,
            "served_step": served_step,
            "lost": lost,
            "extra": extra,
            "exact_state": exact,
            "step_mismatches": step_mismatches,
            "errors": errors[:5],
            "torn_tail": dropped,
            "restart_first_answer_s": first,
            "restart_ready_s": ready,
            "load1": load1(),
        }
        out.append(row)
        log(
            f"kill round {r + 1}/{rounds}: killed {delay:.2f}s after the first ack, "
            f"{acked_rows} rows acked, "
            f"in flight {row['in_flight_rows']} logged={logged}, served {served_step}, "
            f"lost {lost}, exact={exact}, restart {ready:.2f}s"
        )
    final_rc = servers.stop(server)
    in_flight_rounds = [x for x in out if x["in_flight_rows"] is not None]
    return {
        "rounds": out,
        "first_start": first_start,
        "acked_rows": sum(x["acked_rows"] for x in out),
        "acked_batches": sum(x["acked_batches"] for x in out),
        "rows_lost": sum(x["lost"] for x in out),
        "rows_extra": sum(x["extra"] for x in out),
        "in_flight_rounds": len(in_flight_rounds),
        "in_flight_logged": sum(1 for x in in_flight_rounds if x["in_flight_logged"]),
        "all_exact": all(x["exact_state"] for x in out),
        "all_sigkilled": all(x["returncode"] == -signal.SIGKILL for x in out),
        "errors": sum(len(x["errors"]) for x in out),
        "step_mismatches": sum(x["step_mismatches"] for x in out),
        "torn_tails": sum(1 for x in out if x["torn_tail"]),
        "final_step": step,
        "final_returncode": final_rc,
        "wal_bytes": sum(p.stat().st_size for p in (data_dir / "models" / MODEL).glob("wal-*")),
    }


# ---------------------------------------------------------------- 2. recovery of a long log


def exact_batches(path: Path, bits: int, batch_rows: int) -> list[Batch]:
    """The file's rows as 0-based ``batch_rows``-row Batches (make_clicks writes j as j + 1)."""
    dim = 2**bits
    parsed = list(
        iter_file_batches(path, "libsvm", dim=dim + 1, max_rows_per_batch=batch_rows)
    )  # batches end at chunk boundaries too: join, then cut exactly
    whole = concat_batches(parsed, dim + 1)
    del parsed
    if whole.nnz and int(whole.indices.min()) < 1:
        raise ValueError("libsvm index 0 in a 1-based file")
    indptr, indices, values = whole.indptr, whole.indices - 1, whole.values
    labels = whole.labels
    assert labels is not None
    out = []
    for r0 in range(0, whole.n_rows, batch_rows):
        r1 = min(r0 + batch_rows, whole.n_rows)
        a, b = int(indptr[r0]), int(indptr[r1])
        # Slices of validated arrays, shifted into [0, dim): valid as they are.
        out.append(
            Batch(indptr[r0 : r1 + 1] - a, indices[a:b], values[a:b], labels[r0:r1], None, dim)
        )
    return out


def build_log(root: Path, batches: list[Batch], bits: int) -> dict[str, Any]:
    """A data dir whose model has a snapshot at step 0 and every batch in its log."""
    model_dir = root / "models" / MODEL
    model_dir.parent.mkdir(parents=True)
    storage = ModelStorage(model_dir, fsync="off")
    model = OnlineLogisticRegression(ADAGRAD, hash_bits=bits)
    state_bytes = model.state_bytes
    storage.create(model)
    del model
    t0 = time.perf_counter()
    step = 0
    for batch in batches:
        storage.append(batch, step)
        step += batch.n_rows
    storage.close()  # flush and fsync
    seconds = time.perf_counter() - t0
    wal = model_dir / "wal-0.log"
    return {
        "model_dir": str(model_dir),
        "rows": step,
        "batches": len(batches),
        "nnz": int(sum(b.nnz for b in batches)),
        "wal_bytes": wal.stat().st_size,
        "state_bytes": state_bytes,
        "snapshot_bytes": sum(p.stat().st_size for p in model_dir.glob("snapshot-*.npz")),
        "files": sorted(p.name for p in model_dir.iterdir()),
        "write_seconds": seconds,
    }


def recover_in_process(model_dir: Path, rows: int, repeat: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeat):
        gc.collect()
        reset = reset_peak_rss()
        base_kb = proc_status_kb("self", "VmRSS") or 0
        t0 = time.perf_counter()
        storage = ModelStorage(model_dir, fsync="always")
        recovered = storage.recover()
        seconds = time.perf_counter() - t0
        storage.close()
        peak_kb = proc_status_kb("self", "VmHWM") or 0
        runs.append(
            {
                "seconds": seconds,
                "rows_per_s": rows / seconds if seconds > 0 else None,
                "step": recovered.model.step,
                "replayed_rows": recovered.replayed_rows,
                "snapshot_step": recovered.snapshot_step,
                "dropped": recovered.dropped,
                "peak_rss_growth_mb": (peak_kb - base_kb) / 1024 if reset else None,
            }
        )
        del recovered, storage
        log(f"recover() in-process: {seconds:.2f}s, step {runs[-1]['step']:,}")
    # Where the time goes (once): reading + decoding every record, then learning them.
    gc.collect()
    t0 = time.perf_counter()
    records, _, problem = read_records(model_dir / "wal-0.log")
    read_s = time.perf_counter() - t0
    model = OnlineLogisticRegression.load(model_dir / "snapshot-0.npz")
    t0 = time.perf_counter()
    for _, _, batch in records:
        model.learn_batch(batch)
    learn_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    OnlineLogisticRegression.load(model_dir / "snapshot-0.npz")
    load_s = time.perf_counter() - t0
    del records
    return {
        "runs": runs,
        "median_s": float(np.median([r["seconds"] for r in runs])),
        "ok": all(r["step"] == rows and r["replayed_rows"] == rows for r in runs),
        "breakdown": {
            "read_decode_s": read_s,
            "learn_s": learn_s,
            "snapshot_load_s": load_s,
            "problem": problem,
        },
    }


def recover_server(
    root: Path, rows: int, repeat: int, servers: Servers, logs: Path
) -> dict[str, Any]:
    import httpx

    wal = Path(root) / "models" / MODEL / "wal-0.log"
    size = wal.stat().st_size
    runs = []
    for i in range(repeat):
        server = servers.start(root, "always", logs / f"recovery-{i + 1}.log")
        first, ready = servers.wait_ready(server)
        body = httpx.get(f"{server.url}/v1/models/{MODEL}", timeout=60).json()
        at_step = time.perf_counter() - server.t0
        peak_kb = proc_status_kb(server.proc.pid, "VmHWM")
        rss_kb = proc_status_kb(server.proc.pid, "VmRSS")
        rc = servers.kill9(server)  # leave the directory as built (no shutdown snapshot)
        replay_line = next(
            (line for line in server.log_text().splitlines() if "logged rows replayed" in line), ""
        )
        runs.append(
            {
                "first_answer_s": first,
                "ready_s": ready,
                "step_s": at_step,
                "step": int(body["step"]),
                "peak_rss_mb": peak_kb / 1024 if peak_kb else None,
                "rss_mb": rss_kb / 1024 if rss_kb else None,
                "returncode": rc,
                "log": replay_line.split(" INFO ", 1)[-1],
                "wal_unchanged": wal.stat().st_size == size,
            }
        )
        log(f"server recovery: first answer {first:.2f}s, ready {ready:.2f}s, step {body['step']}")
    return {
        "runs": runs,
        "median_ready_s": float(np.median([r["ready_s"] for r in runs])),
        "median_first_answer_s": float(np.median([r["first_answer_s"] for r in runs])),
        "ok": all(r["step"] == rows for r in runs),
    }


def empty_start(work: Path, servers: Servers) -> dict[str, Any]:
    server = servers.start(work / "empty", "always", work / "logs" / "empty-start.log")
    first, ready = servers.wait_ready(server)
    rss_kb = proc_status_kb(server.proc.pid, "VmRSS")
    servers.stop(server)
    return {"first_answer_s": first, "ready_s": ready, "rss_mb": rss_kb / 1024 if rss_kb else None}


# ---------------------------------------------------------------- 3. throughput per fsync mode


def load_summary(result: LoadResult) -> dict[str, Any]:
    """A measured phase as the report's row: counts, rates and latency percentiles (ms)."""
    seconds = result.seconds
    return {
        "concurrency": result.concurrency,
        "seconds": seconds,
        "requests": result.ok,
        "rows": result.rows,
        "rows_per_s": result.rows / seconds if seconds > 0 else 0.0,
        "requests_per_s": result.ok / seconds if seconds > 0 else 0.0,
        "non2xx": result.non2xx,
        "exceptions": result.exceptions,
        **{k: getattr(result, k) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms")},
        "error_samples": result.error_samples[:5],
    }


def body_of(batch: Batch) -> bytes:
    assert batch.labels is not None
    return orjson.dumps(
        {
            "indptr": batch.indptr.tolist(),
            "indices": batch.indices.tolist(),
            "values": batch.values.tolist(),
            "labels": batch.labels.astype(np.int64).tolist(),
        }
    )


def throughput(
    batches: list[Batch],
    bits: int,
    concurrencies: list[int],
    duration: float,
    warmup: float,
    max_requests: int,
    work: Path,
    servers: Servers,
) -> dict[str, Any]:
    import httpx

    bodies = [body_of(b) for b in batches]
    rows = [b.n_rows for b in batches]
    path = f"/v1/models/{MODEL}/updates"
    out: dict[str, Any] = {
        "bodies": len(bodies),
        "body_rows": rows[0] if rows else 0,
        "body_bytes_mean": float(np.mean([len(b) for b in bodies])) if bodies else 0.0,
        "runs": [],
        "modes": {},
    }
    started = {  # all three start at once (start-up is not measured here), then run in turn
        mode: servers.start(work / f"throughput-{mode}", mode, work / "logs" / f"tp-{mode}.log")
        for mode in MODES
    }
    for mode in MODES:
        data_dir, server = work / f"throughput-{mode}", started[mode]
        servers.wait_ready(server)
        created = httpx.post(
            f"{server.url}/v1/models",
            json={"name": MODEL, "hash_bits": bits, "optimizer": ADAGRAD},
            timeout=30,
        )
        if created.status_code != 201:
            raise RuntimeError(f"could not create the model: {created.text}")
        requests = [build_request(path, b, server.port) for b in bodies]
        acked = 0
        warm = asyncio.run(
            closed_loop(
                server.port, requests, 1, warmup, max(1, min(20, max_requests)), GRACE, rows
            )
        )
        acked += warm.rows
        for c in concurrencies:
            pids = {"server": server.proc.pid}
            cpu0 = {n: proc_cpu(p) for n, p in pids.items()}
            me0, sys0, la0 = own_cpu(), system_busy(), load1()
            result = asyncio.run(
                closed_loop(server.port, requests, c, duration, max_requests, GRACE, rows)
            )
            wall = max(result.seconds, 1e-9)
            server_cores = (proc_cpu(server.proc.pid) - cpu0["server"]) / wall
            client_cores = (own_cpu() - me0) / wall
            busy = (system_busy() - sys0) / wall
            acked += result.rows
            row = {
                "mode": mode,
                **load_summary(result),
                "server_cores": server_cores,
                "client_cores": client_cores,
                "other_cores": max(0.0, busy - server_cores - client_cores),
                "load1_before": la0,
            }
            out["runs"].append(row)
            log(
                f"throughput fsync={mode} c={c}: {row['rows_per_s']:,.0f} rows/s, "
                f"p50 {row['p50_ms'] or 0:.1f} ms, p99 {row['p99_ms'] or 0:.1f} ms, "
                f"errors {row['non2xx'] + row['exceptions']}"
            )
        step = int(httpx.get(f"{server.url}/v1/models/{MODEL}", timeout=60).json()["step"])
        disk = sum(p.stat().st_size for p in (data_dir / "models" / MODEL).iterdir() if p.is_file())
        rc = servers.stop(server)
        out["modes"][mode] = {
            "acknowledged_rows": acked,
            "served_step": step,
            "step_matches": step == acked,
            "bytes_on_disk_before_stop": disk,
            "stop_returncode": rc,
        }
        shutil.rmtree(data_dir, ignore_errors=True)
    return out


def fsync_probe(directory: Path, sizes: list[int], count: int, budget: float) -> list[dict]:
    """Append ``size`` bytes and fsync, ``count`` times per size (at most ``budget`` seconds)."""
    out = []
    path = directory / "fsync-probe.bin"
    for size in sizes:
        data = os.urandom(size)
        lat = []
        deadline = time.perf_counter() + budget
        with open(path, "wb") as f:
            for _ in range(count):
                if time.perf_counter() > deadline:
                    break
                t0 = time.perf_counter()
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                lat.append(time.perf_counter() - t0)
        path.unlink(missing_ok=True)
        ms = np.asarray(lat) * 1e3
        out.append(
            {
                "bytes": size,
                "count": len(lat),
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "mean_ms": float(ms.mean()),
                "mb_per_s": size * len(lat) / max(sum(lat), 1e-9) / 1e6,
            }
        )
    return out


# ---------------------------------------------------------------- environment


def disk_info(path: Path) -> dict[str, Any]:
    real = os.path.realpath(path)
    df = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        df = subprocess.run(
            ["df", "-h", real], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    mount = {"target": "?", "source": "?", "fstype": "?", "options": "?"}
    best = -1
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4:
                continue
            target = parts[1].replace("\\040", " ")
            inside = real == target or real.startswith(target.rstrip("/") + "/")
            if inside and len(target) > best:
                best = len(target)
                mount = dict(zip(("source", "target", "fstype", "options"), parts[:4], strict=True))
    rotational = None
    source = mount["source"]
    if source.startswith("/dev/"):
        name = Path(os.path.realpath(source)).name
        for candidate in (name, name.rstrip("0123456789")):
            p = Path(f"/sys/class/block/{candidate}/queue/rotational")
            if p.is_file():
                rotational = p.read_text().strip() == "1"
                break
    return {
        "path": real,
        "df_h": df,
        **mount,
        "tmpfs": mount["fstype"] == "tmpfs",
        "overlay": mount["fstype"] == "overlay",
        "rotational": rotational,
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in (
        "numpy",
        "numba",
        "fastapi",
        "starlette",
        "uvicorn",
        "anyio",
        "pydantic",
        "orjson",
        "httpx",
    ):
        out[dist] = version_of(dist)
    return out


# ---------------------------------------------------------------- report


def _yn(x: bool | None) -> str:
    return "—" if x is None else ("yes" if x else "**no**")


def render(info: dict[str, Any]) -> str:
    m, k, rec, tp = info["machine"], info["kill"], info["recovery"], info["throughput"]
    code, disk = info["code"], info["disk"]
    build, inproc, srv = rec["build"], rec["in_process"], rec["server"]
    runs = {(r["mode"], r["concurrency"]): r for r in tp["runs"]}
    conc = info["concurrency"]
    restarts = [x["restart_ready_s"] for x in k["rounds"]]
    lines = [
        "# Durability: kill -9, recovery time, fsync cost",
        "",
        f"Generated {info['date']} by `{info['command']}`"
        + (
            " (**smoke mode**: 2 rounds, tiny log, 2 s runs, kernel warm-up off; not a benchmark)"
            if info["smoke"]
            else ""
        )
        + f"; total run {info['total_seconds']:.0f}s.",
        "",
        "## Headline",
        "",
        "| figure | value |",
        "|---|---|",
        f"| acknowledged rows lost after {len(k['rounds'])} kill -9 rounds (`--fsync always`) "
        f"| **{k['rows_lost']}** of {k['acked_rows']:,} ({_status(k['rows_lost'] == 0)}) |",
        f"| restart after kill -9, Popen → `/readyz` 200 (median, min–max) "
        f"| {_n(_median(restarts), 2)} s ({_n(min(restarts), 2)}–{_n(max(restarts), 2)}) |",
        f"| recovery of a {build['rows']:,}-row log ({build['wal_bytes'] / 1e6:,.0f} MB), "
        f"in-process `recover()` (median) | {inproc['median_s']:.2f} s "
        f"({build['rows'] / inproc['median_s']:,.0f} rows/s) |",
        f"| same log, server Popen → first answer / `/readyz` 200 with step "
        f"{build['rows']:,} (median) | {srv['median_first_answer_s']:.2f} s / "
        f"{srv['median_ready_s']:.2f} s ({_status(srv['ok'])}) |",
    ]
    for c in conc:
        cells = " / ".join(
            _n(runs[(mode, c)]["rows_per_s"]) if (mode, c) in runs else "—" for mode in MODES
        )
        lines.append(f"| update rows/s, fsync always / interval / off, {c} conn. | {cells} |")
    lines += [
        "",
        "## Machine, versions, disk",
        "",
        f"- CPU: {m['cpu_model']}, nproc {m['nproc']} (cpu_count {m['cpu_count']}); memory "
        f"{_n(m['mem_total_gb'], 1)} GiB; {m['platform']}",
        f"- load average (1/5/15 min): start {_load(m['loadavg_start'])}, after the kill rounds "
        f"{_load(m.get('loadavg_kill'))}, after recovery {_load(m.get('loadavg_recovery'))}, "
        f"end {_load(m.get('loadavg_end'))}" + _busy(m),
        "- " + ", ".join(f"{name} {v}" for name, v in info["versions"].items()),
        f"- code measured: commit {code['commit']}, optim+service sources sha256 "
        f"{code['sha256']}"
        + (
            f"; uncommitted changes in {', '.join(code['dirty'])}"
            if code["dirty"]
            else "; optim and service clean"
        )
        + ("; **sources changed during the run**" if code.get("changed_during_run") else ""),
        f"- service settings: {', '.join(f'{a}={b}' for a, b in info['settings'].items())}"
        + (" (smoke: ADASERVE_WARM_KERNELS=false)" if info["smoke"] else ""),
        f"- data directory root `{disk['path']}`: {disk['fstype']} on {disk['source']} "
        f"(mounted at {disk['target']}, {disk['options']}); tmpfs: "
        f"{_plain(disk['tmpfs'])}, overlay: {_plain(disk['overlay'])}, rotational (as the "
        f"kernel reports it; virtio disks often say yes): {_plain(disk['rotational'])}",
        "",
        "```",
        disk["df_h"],
        "```",
        "",
        "Raw fsync probe in that directory (append N bytes, `fsync`, repeated):",
        "",
        "| bytes per write | writes | p50 ms | p99 ms | MB/s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for p in info["fsync_probe"]:
        lines.append(
            f"| {p['bytes']:,} | {p['count']} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} "
            f"| {p['mb_per_s']:.0f} |"
        )
    lines += [
        "",
        "## 1. kill -9 during acknowledged updates",
        "",
        f"`python -m service serve --fsync always`, one model (dim 2**16, Adam); a sequential "
        f"client posts JSON CSR batches of 1..{KILL_MAX_ROWS} random rows "
        f"(1..{KILL_MAX_NNZ} coordinates each) and counts the rows acknowledged with 200; SIGKILL "
        f"a uniform {KILL_WINDOW[0]}–{KILL_WINDOW[1]} s after the round's first acknowledgement; "
        "restart on the same "
        "data directory; served step from `GET /v1/models/m`; the exported model compared bit for "
        "bit with an in-process replay of what was acknowledged.",
        "",
        "| rounds | batches acked | rows acked | **rows lost** | extra rows | in-flight batch "
        "logged | state bit-identical | torn tail truncated | restart s (median) |",
        "|---:|---:|---:|---:|---:|---|---|---:|---:|",
        f"| {len(k['rounds'])} | {k['acked_batches']:,} | {k['acked_rows']:,} | "
        f"**{k['rows_lost']}** | {k['rows_extra']} | {k['in_flight_logged']} of "
        f"{k['in_flight_rounds']} rounds | {_yn(k['all_exact'])} | {k['torn_tails']} rounds | "
        f"{_n(_median(restarts), 2)} |",
        "",
        "| round | killed s after 1st ack | batches acked | rows acked | in-flight rows | "
        "in-flight logged | served step | lost | exact | restart: first answer s | "
        "restart: ready s |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    for x in k["rounds"]:
        lines.append(
            f"| {x['round']} | {x['kill_after_s']:.2f} | {x['acked_batches']} "
            f"| {x['acked_rows']:,} | {x['in_flight_rows'] if x['in_flight_rows'] else '—'} "
            f"| {_plain(x['in_flight_logged'])} | {x['served_step']:,} | {x['lost']} "
            f"| {_yn(x['exact_state'])} | {x['restart_first_answer_s']:.2f} "
            f"| {x['restart_ready_s']:.2f} |"
        )
    torn = [
        f"round {x['round']}: {'; '.join(x['torn_tail'])}" for x in k["rounds"] if x["torn_tail"]
    ]
    lines += [
        "",
        f"Every kill ended the process with SIGKILL: {_yn(k['all_sigkilled'])}; non-200 answers "
        f"{k['errors']}; acknowledged steps that disagreed with the client's count "
        f"{k['step_mismatches']}; final graceful stop exit code {k['final_returncode']}; the "
        f"log held {k['wal_bytes']:,} bytes at the end. Restart = process start (imports, "
        "recovery of the log, uvicorn listening: 'first answer') then the kernel warm-up "
        "('ready'). Torn records dropped at recovery (a write cut by the kill, never "
        "acknowledged): " + ("; ".join(torn) if torn else "none") + ".",
        "",
        "## 2. Recovery time of a long log",
        "",
        f"- rows: `{rec['data']['command']}` ({rec['data']['gen_seconds']:.0f}s), parsed by "
        f"`optim.formats.iter_file_batches` in {rec['data']['parse_seconds']:.1f}s (untimed), cut "
        f"into {build['batches']:,} Batches of {info['batch_rows']:,} rows, 0-based, "
        f"{build['nnz']:,} non-zeros ({build['nnz'] / max(build['rows'], 1):.1f}/row)",
        f"- data dir: AdaGrad (lr 0.1), hash_bits {info['bits']}; snapshot at step 0 "
        f"({build['snapshot_bytes']:,} bytes) and `wal-0.log` of **{build['wal_bytes']:,} "
        f"bytes** ({build['wal_bytes'] / max(build['rows'], 1):.0f} B/row), written in-process "
        f"by `ModelStorage.append` (fsync off, one fsync at the end) in "
        f"{build['write_seconds']:.1f}s; "
        f"files {', '.join(build['files'])}",
        "- the log was just written, so it is read from the page cache (no cold-cache read here)",
        "",
        "(a) `ModelStorage(dir).recover()` in this process (numba kernels already compiled):",
        "",
        "| run | seconds | rows/s | step | replayed rows | peak RSS growth MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(inproc["runs"], 1):
        lines.append(
            f"| {i} | {r['seconds']:.2f} | {_n(r['rows_per_s'])} | {r['step']:,} "
            f"| {r['replayed_rows']:,} | {_n(r['peak_rss_growth_mb'])} |"
        )
    b = inproc["breakdown"]
    wal_mb, state_mb = build["wal_bytes"] / 2**20, build["state_bytes"] / 2**20
    growth = [r["peak_rss_growth_mb"] for r in inproc["runs"] if r["peak_rss_growth_mb"]]
    memory = (
        f"Memory: the log is {wal_mb:,.0f} MiB and the model state {state_mb:,.0f} MiB; the peak "
        f"RSS of this process grew by {max(growth):,.0f} MiB during `recover()`, i.e. "
        f"{(max(growth) - state_mb) / max(wal_mb, 1e-9):.1f}x the log on top of the model: "
        "`read_records` reads the whole file (`path.read_bytes()`) and decodes every record "
        "into a list before the first one is replayed."
        if growth
        else "Memory: peak RSS could not be reset on this system."
    )
    lines += [
        "",
        memory,
        "",
        f"Breakdown (one run): `read_records` (read the whole file, check CRCs, decode every "
        f"record) {b['read_decode_s']:.2f}s, `learn_batch` over the records {b['learn_s']:.2f}s, "
        f"snapshot load {b['snapshot_load_s']:.3f}s.",
        "",
        "(b) the real server (`--fsync always`) on that directory; SIGKILLed after each "
        "measurement so the directory stays as built:",
        "",
        "| run | Popen → first answer s | Popen → `/readyz` 200 s | Popen → step read s | step "
        "| peak RSS MB | RSS after MB | log unchanged |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for i, r in enumerate(srv["runs"], 1):
        lines.append(
            f"| {i} | {r['first_answer_s']:.2f} | {r['ready_s']:.2f} | {r['step_s']:.2f} "
            f"| {r['step']:,} | {_n(r['peak_rss_mb'])} | {_n(r['rss_mb'])} "
            f"| {_yn(r['wal_unchanged'])} |"
        )
    e = rec["empty_start"]
    baseline = (
        f"Baseline, same server on an empty data directory: first answer "
        f"{e['first_answer_s']:.2f}s, `/readyz` 200 {e['ready_s']:.2f}s, RSS when ready "
        f"{_n(e.get('rss_mb'))} MB (against the 'RSS after' column: what recovery leaves "
        "resident; in a separate in-process check, 200k rows, `malloc_trim(0)` after `recover()` "
        "gave back ~100 MB: freed heap the allocator keeps, not a live reference)."
        if e
        else "No empty-directory baseline in smoke mode."
    )
    lines += [
        "",
        f"{baseline} Server log: `{srv['runs'][0]['log']}`. Recovery in the server also loads "
        "the learning kernel from numba's cache (the warm-up runs only after recovery).",
        "",
        "## 3. Update throughput by fsync mode",
        "",
        f"Fresh server and model (AdaGrad lr 0.1, hash_bits {info['bits']}) per mode; "
        f"{tp['bodies']} pre-encoded JSON CSR bodies of {tp['body_rows']:,} rows "
        f"({tp['body_bytes_mean'] / 1e3:,.0f} kB each, cycled); warm-up up to {info['warmup']:g}s "
        f"or 20 requests (1 connection, untimed), then a closed loop of each concurrency for "
        f"{info['duration']:g}s (at most {info['max_requests']:,} requests).",
        "",
        "| fsync | conn. | requests | rows | s | **rows/s** | p50 ms | p99 ms | max ms "
        "| errors | server cores | client cores | other cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in tp["runs"]:
        lines.append(
            f"| {r['mode']} | {r['concurrency']} | {r['requests']:,} | {r['rows']:,} "
            f"| {r['seconds']:.1f} | **{_n(r['rows_per_s'])}** | {_n(r['p50_ms'], 1)} "
            f"| {_n(r['p99_ms'], 1)} | {_n(r['max_ms'], 1)} | {r['non2xx'] + r['exceptions']} "
            f"| {r['server_cores']:.2f} | {r['client_cores']:.2f} | {r['other_cores']:.2f} |"
        )
    probe = {p["bytes"]: p for p in info["fsync_probe"]}
    big = probe[max(probe)] if probe else None
    one = [r for r in tp["runs"] if r["concurrency"] == 1 and r["p50_ms"]]
    if big and one:
        lines += [
            "",
            f"Scale of the fsync cost: the raw probe's fsync of one {big['bytes']:,}-byte record "
            f"(a 1,000-row batch in the log) takes p50 {big['p50_ms']:.1f} ms, against a p50 "
            f"request latency of {min(r['p50_ms'] for r in one):.1f}–"
            f"{max(r['p50_ms'] for r in one):.1f} ms on one connection; the rest is JSON "
            "decoding, validation and learning. The server process used "
            f"{min(r['server_cores'] for r in tp['runs']):.2f}–"
            f"{max(r['server_cores'] for r in tp['runs']):.2f} cores while everything else on "
            f"the machine used {min(r['other_cores'] for r in tp['runs']):.2f}–"
            f"{max(r['other_cores'] for r in tp['runs']):.2f} of the {m['nproc']}: differences "
            "between the modes smaller than that competition can explain are noise.",
        ]
    lines += [""]
    for mode, s in tp["modes"].items():
        lines.append(
            f"- fsync {mode}: served step "
            f"{s['served_step']:,} = acknowledged rows {s['acknowledged_rows']:,}: "
            f"{_yn(s['step_matches'])}; {s['bytes_on_disk_before_stop'] / 1e6:,.0f} MB of "
            f"snapshots + logs on disk at the end"
        )
    if info.get("faults"):
        lines += ["", *render_faults(info["faults"], info["command"])]
    lines += ["", "## Notes", ""] + [f"- {c}" for c in NOTES] + [""]
    return "\n".join(lines)


FAULTS_TITLE = "## 4. Fault injection"


def render_faults(f: dict[str, Any], command: str) -> list[str]:
    """The report's section on the fault-injection rounds (``fault_rounds.run``'s summary)."""
    faults = ", ".join(f"{kind} {n}" for kind, n in f["faults"].items())
    ops = ", ".join(f"{kind} {n:,}" for kind, n in f["acknowledged_ops"].items())
    starts = f["start_seconds"]
    lines = [
        FAULTS_TITLE,
        "",
        f"`{command}` at {f['date']} (seed {f['seed']}; the same `--fault-seed` replays the "
        f"choices, the moments depend on timing), {f['seconds']:.0f}s. "
        "`loadtest/fault_rounds.py`: each round starts the real server (`--fsync always`, "
        "snapshots every 400 rows or 1 s) on the "
        "same data directory and checks what the last round left, then one client per model "
        "name runs creates, updates, streams, imports, deletes, re-creates and delete + "
        "re-create while a stream into the model is half sent, beside hypothesis-built bad "
        "bodies, until a kill -9 at a random moment; with the server down, bytes are flipped in "
        "the snapshots or logs of the models drawn as damaged (or a log's tail cut). Full disk: "
        + (
            "the data directory is a tmpfs shrunk, while the server runs, to what it holds plus "
            "8–128 KiB."
            if f["disk"] == "tmpfs"
            else "the server's RLIMIT_FSIZE set (prlimit) 8–128 KiB above its largest file "
            "(writes past it fail with EFBIG)."
        ),
        "",
        "| figure | value |",
        "|---|---|",
        f"| rounds (each ends in kill -9) | {f['rounds']} |",
        f"| faults injected, by kind | {faults} |",
        f"| operations acknowledged, by kind | {ops} |",
        f"| acknowledged rows | {f['acked_rows']:,} |",
        f"| **acknowledged rows lost** (models not damaged on purpose) | **{f['rows_lost']}** "
        f"({_status(f['rows_lost'] == 0 and not f['violations'])}) |",
        f"| models damaged on purpose: recovered (= replay of a prefix) / quarantined with a "
        f"reason | {f['damaged_recovered']} / {f['damaged_quarantined']} |",
        f"| acknowledged rows given up with the damaged models | {f['rows_dropped_by_damage']:,} |",
        f"| operation in flight at the kill: found applied / not applied | "
        f"{f['in_flight_applied']} / {f['in_flight_not_applied']} |",
        f"| 'never acknowledged' torn tails dropped at start-up | "
        f"{f['never_acknowledged_lines']} |",
        f"| bad bodies refused with a 4xx | {f['bad_bodies_refused']} of {f['bad_bodies']} |",
        f"| writes refused 503 `storage_unavailable` while the disk was full | "
        f"{f['storage_refusals']} |",
        f"| server start, Popen → `/readyz` 200 (median, max) | "
        f"{_n(_median(starts), 1)} s, {_n(max(starts) if starts else None, 1)} s |",
        f"| violations | {len(f['violations'])} |",
    ]
    lines += [f"- {v}" for v in f["violations"][:20]]
    return lines


def write_faults_section(report_path: Path, section: list[str]) -> None:
    """Put the fault-injection section into an existing report, in place of the old one."""
    text = report_path.read_text() if report_path.exists() else ""
    body = "\n".join(section) + "\n\n"
    if FAULTS_TITLE in text:
        start = text.index(FAULTS_TITLE)
        end = text.find("\n## ", start + len(FAULTS_TITLE))
        text = text[:start] + body + (text[end + 1 :] if end >= 0 else "")
    elif "\n## Notes" in text:
        at = text.index("\n## Notes") + 1
        text = text[:at] + body + text[at:]
    else:
        text += "\n" + body
    report_path.write_text(text)


NOTES = [
    "Rows lost counts acknowledged rows only: the batch in flight at the kill was never "
    "acknowledged, so finding it in the log (its append and fsync finished before the kill) or "
    "not are both correct. 'Exact' compares the exported weights, optimizer slots and counters "
    "with an in-process replay of the acknowledged batches (plus the in-flight one when logged).",
    "Restart time is mostly not recovery: the port opens once the log is replayed (first answer), "
    "then `/readyz` waits for the compile/cache-load of every optimizer's numba kernels, which "
    "starts only after recovery (`app.lifespan`: `load_all()` then the warm-up thread). The "
    "empty-directory baseline is the cost of a start with nothing to recover.",
    "Recovery holds the whole log in memory at once (see the memory line of section 2): a log "
    "near `snapshot_every_rows` costs its size (and more) in RAM at every restart.",
    "The log is bounded by `snapshot_every_rows` only while the server runs: after a restart "
    "`ManagedModel.rows_since_snapshot` starts at 0 (`ModelRegistry.load_all`), so replayed rows "
    "do not count towards the next snapshot and `snapshot_every_seconds` does not fire until a "
    "new row arrives. Crash, restart, crash again and the log (and the next recovery) keeps "
    "growing, up to ~2x `snapshot_every_rows` rows per snapshot interval of new traffic.",
    "Throughput: one model serializes its writers (FIFO lock), so 8 connections overlap JSON "
    "decoding and validation with learning and the fsync of the previous batch, not learning "
    "with learning. A snapshot (every 1,000,000 rows) is written inside the model's writer lock "
    "during the run and shows in max/p99 latency. `interval` fsyncs every fsync_interval_ms from "
    "the housekeeping task (a crash may lose that window); `off` leaves it to the kernel.",
    "fsync cost depends on the disk: a virtual disk (virtio) acknowledges fsync when the "
    "hypervisor says so, which may or may not mean stable storage; tmpfs and overlay on tmpfs "
    "make fsync almost free and say nothing about durability. See the probe above.",
    "The machine is shared: the load averages and the 'other cores' column show how much else "
    "ran; compare runs on an idle machine before quoting small differences.",
]


def _plain(x: bool | None) -> str:
    return "—" if x is None else ("yes" if x else "no")


def _median(xs: list[float]) -> float | None:
    return float(np.median(xs)) if xs else None


def _status(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def _busy(m: dict[str, Any]) -> str:
    samples = [
        x[0] for x in (m.get("loadavg_kill"), m.get("loadavg_recovery"), m.get("loadavg_end")) if x
    ]
    if samples and max(samples) > BUSY_LOAD_PER_CPU * (m["nproc"] or 1):
        return (
            f" — **the machine was not idle** (1-min load up to {max(samples):.2f} on "
            f"{m['nproc']} CPUs): restart times and throughput read low"
        )
    return ""


# ---------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=10, help="kill -9 rounds (10)")
    ap.add_argument("--recovery-rows", type=int, default=1_000_000, help="rows in the log (1M)")
    ap.add_argument("--recovery-repeat", type=int, default=3, help="recoveries timed (3)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per throughput run")
    ap.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per mode (1)")
    ap.add_argument("--concurrency", default="1,8", help="connections per run (1,8)")
    ap.add_argument("--max-requests", type=int, default=100_000, help="per throughput run")
    ap.add_argument("--bodies", type=int, default=200, help="distinct 1,000-row bodies (200)")
    ap.add_argument("--batch-rows", type=int, default=1000, help="rows per batch (1000)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bits", type=int, default=20)
    ap.add_argument("--shared", default=None, help="shared dir (default ../shared)")
    ap.add_argument("--out", default=None, help="write the report and the JSON into this dir")
    ap.add_argument("--data-root", default=None, help="where data dirs go (system temp dir)")
    ap.add_argument("--keep-data", action="store_true", help="leave the data dirs in place")
    ap.add_argument("--faults", type=int, default=12, help="fault-injection rounds (12)")
    ap.add_argument("--fault-models", type=int, default=4, help="models in those rounds (4)")
    ap.add_argument("--fault-seed", type=int, default=None, help="replay a fault run's seed")
    ap.add_argument(
        "--fault-mix", type=json.loads, default={}, help='operation weights, e.g. {"race": 0}'
    )
    ap.add_argument(
        "--full-disk-mix", type=json.loads, default={}, help="the same, while the disk is full"
    )
    ap.add_argument(
        "--faults-only", action="store_true", help="only the fault rounds, into the report"
    )
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="2 rounds, 20k-row log, 2 s runs, no kernel warm-up, to a temp dir",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.rounds, args.recovery_rows, args.recovery_repeat = 2, 20_000, 1
        args.duration, args.warmup, args.bodies = 2.0, 0.5, 20
        args.faults, args.fault_models = 1, 2
    if args.fault_seed is None:
        args.fault_seed = int.from_bytes(os.urandom(4), "little")
        argv += ["--fault-seed", str(args.fault_seed)]  # the report's command replays it
    if args.faults_only:
        return faults_only(args, argv)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if (
        args.rounds < 1
        or args.recovery_rows < 1
        or args.recovery_repeat < 1
        or args.duration <= 0
        or args.batch_rows < 1
        or args.bodies < 1
        or not concurrencies
        or min(concurrencies) < 1
    ):
        print("error: counts, durations and concurrencies must be positive", file=sys.stderr)
        return 2
    try:
        shared = locate_shared(args.shared)
    except SharedMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        report_path, json_path = Path(args.out) / REPORT_NAME, Path(args.out) / JSON_NAME
    elif args.smoke:
        out_dir = Path(tempfile.mkdtemp(prefix="bench_durability_smoke_"))
        report_path, json_path = out_dir / REPORT_NAME, out_dir / JSON_NAME
    else:
        report_path, json_path = HERE / REPORT_NAME, HERE / "out" / JSON_NAME
    report_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    if args.smoke:
        env["ADASERVE_WARM_KERNELS"] = "false"
    servers = Servers(env, ready_timeout=120.0 if args.smoke else 600.0)
    t_start = time.perf_counter()
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": shlex.join(["python", "loadtest/bench_durability.py", *argv]),
        "smoke": args.smoke,
        "machine": machine_info(),
        "versions": versions(),
        "code": code_snapshot(MEASURED),
        "settings": service_settings(env, DURABILITY_SETTINGS),
        "bits": args.bits,
        "batch_rows": args.batch_rows,
        "duration": args.duration,
        "warmup": args.warmup,
        "max_requests": args.max_requests,
        "concurrency": concurrencies,
    }
    work = Path(tempfile.mkdtemp(prefix="bench_durability_", dir=args.data_root))
    (work / "logs").mkdir()
    info["disk"] = disk_info(work)
    log(f"data under {work} ({info['disk']['fstype']} on {info['disk']['source']})")
    try:
        # make_clicks: beside the kill rounds in smoke mode (time), before them otherwise (a
        # quiet machine for the restart times).
        generated: list[Any] = []
        generator = threading.Thread(
            target=lambda: generated.append(
                generate(shared, args.recovery_rows, args.seed, args.bits, work)
            ),
            daemon=True,
        )
        log(f"generating {args.recovery_rows:,} rows with make_clicks.py")
        generator.start()
        if not args.smoke:
            generator.join()

        # 1. kill -9 rounds.
        info["kill"] = kill_rounds(args.rounds, args.seed, work, servers)
        info["machine"]["loadavg_kill"] = os.getloadavg()
        shutil.rmtree(work / "kill", ignore_errors=True)

        # 2. recovery of a long log.
        generator.join(timeout=3600)
        if not generated:
            raise RuntimeError("make_clicks.py did not produce the rows (see above)")
        data = generated[0]
        t0 = time.perf_counter()
        batches = exact_batches(data.path, args.bits, args.batch_rows)
        parse_s = time.perf_counter() - t0
        data.path.unlink()
        log(f"{len(batches):,} batches parsed in {parse_s:.1f}s")
        warm = OnlineLogisticRegression(ADAGRAD, hash_bits=args.bits)
        warm.learn_batch(batches[0])  # compile / load the kernel before anything is timed
        del warm
        root = work / "recovery"
        build = build_log(root, batches, args.bits)
        log(f"log of {build['rows']:,} rows: {build['wal_bytes']:,} bytes")
        model_dir = Path(build["model_dir"])
        info["recovery"] = {
            "data": {
                "command": data.command,
                "gen_seconds": data.gen_seconds,
                "stderr": data.stderr,
                "parse_seconds": parse_s,
            },
            "build": build,
            "in_process": recover_in_process(model_dir, build["rows"], args.recovery_repeat),
            "server": recover_server(
                root, build["rows"], args.recovery_repeat, servers, work / "logs"
            ),
            "empty_start": None if args.smoke else empty_start(work, servers),
        }
        info["machine"]["loadavg_recovery"] = os.getloadavg()
        shutil.rmtree(root, ignore_errors=True)

        # 3. throughput per fsync mode, then the disk probe.
        info["throughput"] = throughput(
            batches[: args.bodies],
            args.bits,
            concurrencies,
            args.duration,
            args.warmup,
            args.max_requests,
            work,
            servers,
        )
        # 4. fault injection.
        info["faults"] = run_faults(args, work) if args.faults > 0 else None
        record = len(encode_batch(batches[0], 0))
        info["fsync_probe"] = fsync_probe(work, [4096, record], 50 if args.smoke else 200, 10.0)
    finally:
        servers.end_all()
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    info["machine"]["loadavg_end"] = os.getloadavg()
    info["code"]["changed_during_run"] = code_snapshot(MEASURED)["sha256"] != info["code"]["sha256"]
    info["total_seconds"] = time.perf_counter() - t_start
    report_path.write_text(render(info))
    json_path.write_text(json.dumps(info, indent=1, default=str))
    log(f"wrote {report_path} and {json_path}")
    ok = info["kill"]["rows_lost"] == 0 and info["recovery"]["server"]["ok"]
    ok = ok and info["recovery"]["in_process"]["ok"]
    if info["faults"]:
        ok = ok and info["faults"]["rows_lost"] == 0 and not info["faults"]["violations"]
    log(f"rows lost: {info['kill']['rows_lost']}; recovery complete: {ok}")
    return 0 if ok else 1


def run_faults(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    plan = fault_rounds.Plan(
        rounds=args.faults,
        names=args.fault_models,
        kill_after=(0.0, 1.5 if args.smoke else 3.0),
        mix=args.fault_mix,
        full_disk_mix=args.full_disk_mix,
    )
    (work / "faults").mkdir()
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return {"date": date, **fault_rounds.run(work / "faults", args.fault_seed, plan)}


def faults_only(args: argparse.Namespace, argv: list[str]) -> int:
    """``--faults-only``: the fault rounds alone; their section goes into the report."""
    report_path = Path(args.out) / REPORT_NAME if args.out else HERE / REPORT_NAME
    json_path = Path(args.out) / "faults.json" if args.out else HERE / "out" / "faults.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_durability_faults_", dir=args.data_root))
    try:
        summary = run_faults(args, work)
    finally:
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    command = shlex.join(["python", "loadtest/bench_durability.py", *argv])
    write_faults_section(report_path, render_faults(summary, command))
    json_path.write_text(json.dumps(summary, indent=1))
    log(f"wrote the fault-injection section of {report_path} and {json_path}")
    return 0 if summary["rows_lost"] == 0 and not summary["violations"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
