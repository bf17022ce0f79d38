"""Arrow IPC CSR batches against JSON CSR batches over HTTP: rows/s learned by ``/updates``.

    python loadtest/bench_arrow.py                 # 200k rows, 3 paired rounds -> REPORT_HTTP.md
    python loadtest/bench_arrow.py --smoke         # 20k rows, 1 round, prints the table only

The real service (``python -m service serve``, fsync always, kernels warmed at start-up) on a
free 127.0.0.1 port; rows from ``shared/tools/make_clicks.py`` (libsvm, 2**20 coordinates, the
data of ``bench_http.py``), made 0-based; every body encoded once beforehand: batches of
``--batch-rows`` rows as JSON CSR (``application/json``) and as an Arrow IPC stream of CSR
columns (``indices: list<int64>``, ``values: list<double>``, ``label``). Each round sends every
batch of one kind over ``--concurrency`` keep-alive connections (httpx, one thread each), then
every batch of the other, each kind into its own model (AdaGrad, ``hash_bits`` 20): rows/s is
rows acknowledged over the wall time from the first request to the last answer. Rounds alternate
which kind goes first; the report gives each round's pair and the medians.

To say where the time goes and what bounds the rate, it also measures, in the same run: the
server's and this client's CPU per request (``/proc``), and the machine's busy share meanwhile;
the server's HTTP floor (the same Arrow bodies with one extra column, refused at their schema:
read, handed to a parser thread and answered 422, nothing learned); and each stage of an update
alone in this process, per batch (median of 10, wall and CPU): the parse (body to validated
``Batch``), the log record's body (indices as uint32, crc32), the learn loop (AdaGrad, warm)
and the log write (``O_DSYNC``, as ``fsync="always"`` writes it) in the data directory's file
system.

The section it writes replaces the one between its markers in ``REPORT_HTTP.md`` (appended the
first time), so the rest of that report (``bench_http.py``'s) is left as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import harness
import httpx
import numpy as np
import orjson
import scipy.sparse

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "loadtest" / "REPORT_HTTP.md"
BEGIN, END = "<!-- bench_arrow.py: begin -->", "<!-- bench_arrow.py: end -->"
ARROW = "application/vnd.apache.arrow.stream"
BITS = 20
# The stages that bound the rate (see render)
LEARN_STAGE = "learn loop (AdaGrad, one call a batch, as the server's writer)"
LOG_STAGE = "log write (O_DSYNC, one batch's record)"


def log(message: str) -> None:
    print(f"[bench_arrow {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def clicks(
    rows: int, work: Path, shared: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """make_clicks' rows as 0-based CSR arrays (indptr, indices, values, labels 0/1)."""
    from optim.formats import parse_bytes

    path = work / "clicks.libsvm"
    with open(path, "wb") as out:
        subprocess.run(
            [sys.executable, str(shared / "tools" / "make_clicks.py"), "--rows", str(rows),
             "--seed", "7", "--format", "libsvm", "--bits", str(BITS)], stdout=out, check=True,
        )  # fmt: skip
    batch = parse_bytes(path.read_bytes(), "libsvm", dim=2**BITS + 1)  # 1-based there
    assert batch.labels is not None
    return batch.indptr, batch.indices - 1, batch.values, (batch.labels > 0).astype(np.int64)


def arrow_body(table: object) -> bytes:
    import pyarrow as pa

    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:  # type: ignore[attr-defined]
        writer.write_table(table)
    return sink.getvalue()


def bodies(
    arrays: tuple[np.ndarray, ...], batch_rows: int
) -> tuple[list[bytes], list[bytes], list[bytes], list[int]]:
    """Each batch as JSON CSR, as Arrow CSR, and as Arrow CSR with a column too many (a body
    of the same size the server reads and refuses at its schema: its HTTP floor)."""
    import pyarrow as pa

    indptr, indices, values, labels = arrays
    json_bodies, arrow_bodies, probe_bodies, sizes = [], [], [], []
    for r0 in range(0, indptr.size - 1, batch_rows):
        r1 = min(r0 + batch_rows, indptr.size - 1)
        a, b = int(indptr[r0]), int(indptr[r1])
        offsets = indptr[r0 : r1 + 1] - a
        json_bodies.append(orjson.dumps({
            "indptr": offsets.tolist(), "indices": indices[a:b].tolist(),
            "values": values[a:b].tolist(), "labels": labels[r0:r1].tolist(),
        }))  # fmt: skip
        offsets_array = pa.array(offsets, pa.int32())
        table = pa.table({
            "indices": pa.ListArray.from_arrays(offsets_array, pa.array(indices[a:b])),
            "values": pa.ListArray.from_arrays(offsets_array, pa.array(values[a:b])),
            "label": pa.array(labels[r0:r1]),
        })  # fmt: skip
        arrow_bodies.append(arrow_body(table))
        probe_bodies.append(arrow_body(table.append_column("probe", pa.array(labels[r0:r1]))))
        sizes.append(r1 - r0)
    return json_bodies, arrow_bodies, probe_bodies, sizes


@contextlib.contextmanager
def serve(data_dir: Path) -> Iterator[tuple[str, int]]:
    """The real service on a free loopback port (its URL and pid), until the block ends (then
    SIGTERM)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--data-dir",
         str(data_dir)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if process.poll() is not None:
                raise RuntimeError("the server exited")
            time.sleep(0.5)
        else:
            raise RuntimeError("the server was not ready in 600 s")
        log(f"server ready on {base}")
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)


@dataclasses.dataclass(frozen=True)
class Sent:
    """Every payload of one kind posted: rows/s learned, and per request the wall time, the
    server's CPU and this client's CPU (milliseconds); the machine's busy share meanwhile."""

    rows_per_second: float
    wall_ms: float
    server_cpu_ms: float
    client_cpu_ms: float
    machine_busy: float


def send_all(
    clients: list[httpx.Client], model: str, payloads: list[bytes], sizes: list[int],
    content_type: str, server_pid: int, status: int = 200,
) -> Sent:  # fmt: skip
    """Every payload posted over the ``clients``' connections (kept alive from one call to the
    next), a thread each, each answered ``status`` (200: with its rows learned)."""
    next_index = iter(range(len(payloads)))
    lock = threading.Lock()
    failures: list[str] = []

    def worker(client: httpx.Client) -> None:
        while True:
            with lock:
                k = next(next_index, None)
            if k is None:
                return
            answer = client.post(
                f"/v1/models/{model}/updates", content=payloads[k],
                headers={"Content-Type": content_type},
            )  # fmt: skip
            if answer.status_code != status or (
                status == 200 and answer.json()["rows"] != sizes[k]
            ):
                failures.append(answer.text[:200])

    threads = [threading.Thread(target=worker, args=(client,)) for client in clients]
    server_cpu, client_cpu = harness.proc_cpu(server_pid), time.process_time()
    busy = harness.system_busy()
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed: {failures[0]}")
    per_request = 1e3 / len(payloads)
    return Sent(
        sum(sizes) / seconds, seconds * per_request,
        (harness.proc_cpu(server_pid) - server_cpu) * per_request,
        (time.process_time() - client_cpu) * per_request,
        (harness.system_busy() - busy) / (seconds * (os.cpu_count() or 1)),
    )  # fmt: skip


def stage_times(
    json_bodies: list[bytes], arrow_bodies: list[bytes], work: Path
) -> dict[str, tuple[float, float]]:
    """Each stage of an update alone, in this process: median milliseconds a batch (wall, CPU
    of this thread) over 10 batches, each stage warm. The log write goes to a model's log in
    ``work`` (the data directory's file system), synchronized as ``fsync="always"`` does."""
    from optim import OnlineLogisticRegression
    from service.batches import batch_from_body
    from service.columnar import batch_from_arrow
    from service.settings import Settings
    from service.storage import ModelStorage, record_body

    model = OnlineLogisticRegression({"name": "adagrad", "lr": 0.1}, hash_bits=BITS)
    settings = Settings(max_rows_per_batch=1_000_000, max_body_bytes=1 << 30)
    batches = [
        batch_from_arrow(payload, model, settings, require_labels=True)
        for payload in arrow_bodies[:10]
    ]
    records = [record_body(batch) for batch in batches]
    matrices = [
        scipy.sparse.csr_matrix((b.values, b.indices, b.indptr), shape=(b.n_rows, model.dim))
        for b in batches
    ]
    library = OnlineLogisticRegression({"name": "adagrad", "lr": 0.1}, hash_bits=BITS)
    storage = ModelStorage(work / "log-probe", fsync="always")
    storage.create(model)
    logged = [0]  # rows in the log so far: the step the next record starts at

    def read_json(k: int) -> object:
        return batch_from_body(json_bodies[k], model, settings, require_labels=True)

    def read_arrow(k: int) -> object:
        return batch_from_arrow(arrow_bodies[k], model, settings, require_labels=True)

    def write_log(k: int) -> None:
        storage.append_all([(batches[k], logged[0], records[k])])
        logged[0] += batches[k].n_rows

    stages = {
        "JSON CSR parse (body to validated batch)": read_json,
        "Arrow parse (body to validated batch)": read_arrow,
        "log record body (indices to uint32, crc32)": lambda k: record_body(batches[k]),
        LEARN_STAGE: lambda k: model.learn_batches([batches[k]], check=False),
        "the library's partial_fit of the batch (scipy CSR, checked)": lambda k: (
            library.partial_fit(matrices[k], batches[k].labels)
        ),
        LOG_STAGE: write_log,
    }
    out = {}
    for name, stage in stages.items():
        stage(0)  # compiled, warm (the learn loop: its state's pages touched)
        walls, cpus = [], []
        for k in range(10):
            wall, cpu = time.perf_counter(), time.thread_time()
            stage(k % len(batches))
            cpus.append(time.thread_time() - cpu)
            walls.append(time.perf_counter() - wall)
        out[name] = (statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3)
    storage.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shared", help="the shared folder (make_clicks.py), as bench_http's")
    parser.add_argument("--smoke", action="store_true", help="20k rows, 1 round, no report")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.rounds = 20_000, 1
    started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_arrow_") as temporary:
        work = Path(temporary)
        log(f"generating {args.rows:,} rows")
        arrays = clicks(args.rows, work, harness.locate_shared(args.shared))
        json_bodies, arrow_bodies, probe_bodies, sizes = bodies(arrays, args.batch_rows)
        stages = stage_times(json_bodies, arrow_bodies, work)
        with serve(work / "data") as (base, pid), contextlib.ExitStack() as stack:
            clients = [
                stack.enter_context(httpx.Client(base_url=base, timeout=300))
                for _ in range(args.concurrency)
            ]
            for model in ("json", "arrow"):
                created = httpx.post(f"{base}/v1/models", json={
                    "name": model, "hash_bits": BITS, "optimizer": {"name": "adagrad", "lr": 0.1},
                }, timeout=300)  # fmt: skip
                created.raise_for_status()
            # a batch of each first on each connection: the first learn of a model pays its
            # page faults
            warm = args.concurrency
            send_all(clients, "json", json_bodies[:warm], sizes[:warm], "application/json", pid)
            send_all(clients, "arrow", arrow_bodies[:warm], sizes[:warm], ARROW, pid)
            rounds: list[dict[str, Sent]] = []
            for k in range(args.rounds):
                order = ["json", "arrow", "floor"] if k % 2 == 0 else ["floor", "arrow", "json"]
                sent = {}
                for kind in order:
                    payloads = {"json": json_bodies, "arrow": arrow_bodies}.get(kind, probe_bodies)
                    sent[kind] = send_all(
                        clients, "arrow" if kind == "floor" else kind, payloads, sizes,
                        "application/json" if kind == "json" else ARROW, pid,
                        422 if kind == "floor" else 200,
                    )  # fmt: skip
                    log(f"round {k + 1}: {kind} {sent[kind].rows_per_second:,.0f} rows/s, "
                        f"server {sent[kind].server_cpu_ms:.1f} ms CPU a request")  # fmt: skip
                rounds.append(sent)
    load_after = os.getloadavg()
    nnz = int(arrays[0][-1])
    text = render(args, rounds, stages, nnz, json_bodies, arrow_bodies, load_before, load_after,
                  time.perf_counter() - started)  # fmt: skip
    print(text)
    if not args.smoke:
        write_section(text)
    return 0


def render(args, rounds, stages, nnz, json_bodies, arrow_bodies, before, after, seconds) -> str:  # type: ignore[no-untyped-def]
    def median(kind: str, field: str) -> float:
        return statistics.median(getattr(r[kind], field) for r in rounds)

    json_rates = [r["json"].rows_per_second for r in rounds]
    ratio = statistics.median(
        r["arrow"].rows_per_second / r["json"].rows_per_second for r in rounds
    )
    arrow_rates = [r["arrow"].rows_per_second for r in rounds]
    pairs = ", ".join(
        f"{r['arrow'].rows_per_second:,.0f} / {r['json'].rows_per_second:,.0f}" for r in rounds
    )
    mean = lambda xs: sum(len(x) for x in xs) / len(xs)  # noqa: E731
    cores = os.cpu_count() or 1
    batch = args.batch_rows
    learn_wall, learn_cpu = stages[LEARN_STAGE]
    log_wall = stages[LOG_STAGE][0]
    arrow_cpu = median("arrow", "server_cpu_ms") + median("arrow", "client_cpu_ms")
    lines = [
        BEGIN,
        "## Arrow IPC CSR batches against JSON CSR batches (`loadtest/bench_arrow.py`)",
        "",
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC by `python "
        f"loadtest/bench_arrow.py`; total run {seconds:.0f}s. Load average (1/5/15 min) "
        f"{before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f} before, "
        f"{after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f} after, on {cores} cores shared with other "
        f"work (the machine was {median('arrow', 'machine_busy'):.0%} busy during the Arrow "
        "runs, this benchmark's two processes included); the numbers are lower bounds and the "
        "same-run ratio is what to read.",
        "",
        f"- data: make_clicks, {args.rows:,} rows, {nnz:,} non-zeros ({nnz / args.rows:.1f}/row), "
        f"2**{BITS} coordinates; batches of {batch:,} rows: JSON CSR "
        f"{mean(json_bodies) / 1e6:.2f} MB, Arrow IPC {mean(arrow_bodies) / 1e6:.2f} MB each",
        f"- service: `python -m service serve` (fsync always, kernels warmed), AdaGrad "
        f"`hash_bits` {BITS}; {args.concurrency} keep-alive connections (httpx, a thread each); "
        f"{args.rounds} rounds, the order alternating",
        "",
        "| body | rows/s learned (median) | min–max | rounds (Arrow / JSON) |",
        "|---|---:|---:|---|",
        f"| Arrow IPC CSR (`{ARROW}`) | **{statistics.median(arrow_rates):,.0f}** | "
        f"{min(arrow_rates):,.0f}–{max(arrow_rates):,.0f} | {pairs} |",
        f"| JSON CSR (`application/json`) | **{statistics.median(json_rates):,.0f}** | "
        f"{min(json_rates):,.0f}–{max(json_rates):,.0f} | |",
        "",
        f"Arrow / JSON, median of the per-round ratios: **{ratio:.2f}x**. "
        "Goal: >= 1,000,000 rows/s learned from Arrow CSR batches of 10,000 rows "
        f"({'met' if statistics.median(arrow_rates) >= 1e6 else 'not met'} in this run).",
        "",
        f"Per request of {batch:,} rows over HTTP (medians of the rounds; CPU from `/proc`, "
        "all threads):",
        "",
        "| requests | wall ms / requests | server CPU ms | client CPU ms |",
        "|---|---:|---:|---:|",
        *(
            f"| {label} | {median(kind, 'wall_ms'):.1f} | {median(kind, 'server_cpu_ms'):.1f} "
            f"| {median(kind, 'client_cpu_ms'):.1f} |"
            for kind, label in (
                ("arrow", "Arrow CSR, learned"),
                ("json", "JSON CSR, learned"),
                ("floor", "Arrow CSR + an extra column: read, refused 422 (HTTP floor)"),
            )
        ),
        "",
        f"Each stage alone, in the benchmark's process (a batch of {batch:,} rows, median of 10):",
        "",
        "| stage | wall ms | CPU ms |",
        "|---|---:|---:|",
        *(f"| {name} | {wall:.2f} | {cpu:.2f} |" for name, (wall, cpu) in stages.items()),
        "",
        f"What bounds the rate, from these figures: the learn loop (one writer thread a model) "
        f"alone runs {batch / learn_cpu * 1e3:,.0f} rows/s on a core of its own (its CPU time; "
        f"{batch / learn_wall * 1e3:,.0f} rows/s of wall time in this run); synchronized log "
        f"writes of {batch:,}-row records, one at a time, {batch / log_wall * 1e3:,.0f} rows/s "
        f"(wall); the CPU of an Arrow request (server and client: {arrow_cpu:.1f} ms) on all "
        f"{cores} cores, nothing else running, {cores * batch / arrow_cpu * 1e3:,.0f} rows/s.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    report = REPORT.read_text() if REPORT.exists() else ""
    if BEGIN in report and END in report:
        head, rest = report.split(BEGIN, 1)
        report = head + text.rstrip("\n") + rest.split(END, 1)[1]
    else:
        report = report.rstrip("\n") + "\n\n" + text
    REPORT.write_text(report)
    log(f"wrote {REPORT}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main())
