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
which kind goes first; the report gives each round's pair and the medians. It also times the
parse alone in this process (body to validated ``Batch``), to say where the time goes.

The section it writes replaces the one between its markers in ``REPORT_HTTP.md`` (appended the
first time), so the rest of that report (``bench_http.py``'s) is left as it is.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "loadtest" / "REPORT_HTTP.md"
BEGIN, END = "<!-- bench_arrow.py: begin -->", "<!-- bench_arrow.py: end -->"
ARROW = "application/vnd.apache.arrow.stream"
BITS = 20


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


def bodies(
    arrays: tuple[np.ndarray, ...], batch_rows: int
) -> tuple[list[bytes], list[bytes], list[int]]:
    import pyarrow as pa

    indptr, indices, values, labels = arrays
    json_bodies, arrow_bodies, sizes = [], [], []
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
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        arrow_bodies.append(sink.getvalue())
        sizes.append(r1 - r0)
    return json_bodies, arrow_bodies, sizes


@contextlib.contextmanager
def serve(data_dir: Path) -> Iterator[str]:
    """The real service on a free loopback port, until the block ends (then SIGTERM)."""
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
        yield base
    finally:
        process.terminate()
        process.wait(timeout=60)


def send_all(
    base: str, model: str, payloads: list[bytes], sizes: list[int], content_type: str,
    concurrency: int,
) -> float:  # fmt: skip
    """Rows/s learned: every payload posted over ``concurrency`` connections."""
    next_index = iter(range(len(payloads)))
    lock = threading.Lock()
    failures: list[str] = []

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=300) as client:
            while True:
                with lock:
                    k = next(next_index, None)
                if k is None:
                    return
                answer = client.post(
                    f"/v1/models/{model}/updates", content=payloads[k],
                    headers={"Content-Type": content_type},
                )  # fmt: skip
                if answer.status_code != 200 or answer.json()["rows"] != sizes[k]:
                    failures.append(answer.text[:200])

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed: {failures[0]}")
    return sum(sizes) / seconds


def parse_times(json_bodies: list[bytes], arrow_bodies: list[bytes]) -> dict[str, float]:
    """Median seconds per batch of each parse, body to validated Batch, in this process."""
    from optim import OnlineLogisticRegression
    from service.batches import batch_from_body
    from service.columnar import batch_from_arrow
    from service.settings import Settings

    model = OnlineLogisticRegression("adagrad", hash_bits=BITS)
    settings = Settings(max_rows_per_batch=1_000_000, max_body_bytes=1 << 30)
    out = {}
    for name, read, payloads in (("json", batch_from_body, json_bodies),
                                 ("arrow", batch_from_arrow, arrow_bodies)):  # fmt: skip
        read(payloads[0], model, settings, require_labels=True)  # compiled, warm
        times = []
        for payload in payloads[:10]:
            start = time.perf_counter()
            read(payload, model, settings, require_labels=True)
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times)
    return out


def main() -> int:
    from bench_learners import locate_shared

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shared", help="the shared folder (make_clicks.py), as bench_http's")
    parser.add_argument("--smoke", action="store_true", help="20k rows, 1 round, no report")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.rounds = 20_000, 1
    started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_arrow_") as temporary:
        work = Path(temporary)
        log(f"generating {args.rows:,} rows")
        arrays = clicks(args.rows, work, locate_shared(args.shared))
        json_bodies, arrow_bodies, sizes = bodies(arrays, args.batch_rows)
        parse = parse_times(json_bodies, arrow_bodies)
        with serve(work / "data") as base:
            for model in ("json", "arrow"):
                created = httpx.post(f"{base}/v1/models", json={
                    "name": model, "hash_bits": BITS, "optimizer": {"name": "adagrad", "lr": 0.1},
                }, timeout=300)  # fmt: skip
                created.raise_for_status()
            # one batch of each first: the first learn of a model pays its page faults
            send_all(base, "json", json_bodies[:1], sizes[:1], "application/json", 1)
            send_all(base, "arrow", arrow_bodies[:1], sizes[:1], ARROW, 1)
            rounds = []
            for k in range(args.rounds):
                order = ["json", "arrow"] if k % 2 == 0 else ["arrow", "json"]
                rates = {}
                for kind in order:
                    payloads = json_bodies if kind == "json" else arrow_bodies
                    content_type = "application/json" if kind == "json" else ARROW
                    rates[kind] = send_all(
                        base, kind, payloads, sizes, content_type, args.concurrency
                    )
                    log(f"round {k + 1}: {kind} {rates[kind]:,.0f} rows/s")
                rounds.append(rates)
    load_after = os.getloadavg()
    nnz = int(arrays[0][-1])
    text = render(args, rounds, parse, nnz, json_bodies, arrow_bodies, load_before, load_after,
                  time.perf_counter() - started)  # fmt: skip
    print(text)
    if not args.smoke:
        write_section(text)
    return 0


def render(args, rounds, parse, nnz, json_bodies, arrow_bodies, before, after, seconds) -> str:  # type: ignore[no-untyped-def]
    json_rates = [r["json"] for r in rounds]
    arrow_rates = [r["arrow"] for r in rounds]
    pairs = ", ".join(f"{r['arrow']:,.0f} / {r['json']:,.0f}" for r in rounds)
    mean = lambda xs: sum(len(x) for x in xs) / len(xs)  # noqa: E731
    lines = [
        BEGIN,
        "## Arrow IPC CSR batches against JSON CSR batches (`loadtest/bench_arrow.py`)",
        "",
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC by `python "
        f"loadtest/bench_arrow.py`; total run {seconds:.0f}s. **A short run on a loaded "
        f"machine**: load average (1/5/15 min) {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f} "
        f"before, {after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f} after, on 2 cores shared with "
        "other work; the numbers are lower bounds and the same-run ratio is what to read.",
        "",
        f"- data: make_clicks, {args.rows:,} rows, {nnz:,} non-zeros ({nnz / args.rows:.1f}/row), "
        f"2**{BITS} coordinates; batches of {args.batch_rows:,} rows: JSON CSR "
        f"{mean(json_bodies) / 1e6:.2f} MB, Arrow IPC {mean(arrow_bodies) / 1e6:.2f} MB each",
        f"- service: `python -m service serve` (fsync always, kernels warmed), AdaGrad "
        f"`hash_bits` {BITS}; {args.concurrency} keep-alive connections (httpx, a thread each); "
        f"{args.rounds} rounds, the order alternating",
        f"- parse alone (this process, body to validated Batch, median of 10): JSON CSR "
        f"{parse['json'] * 1e3:.1f} ms, Arrow {parse['arrow'] * 1e3:.2f} ms a batch",
        "",
        "| body | rows/s learned (median) | min–max | rounds (Arrow / JSON) |",
        "|---|---:|---:|---|",
        f"| Arrow IPC CSR (`{ARROW}`) | **{statistics.median(arrow_rates):,.0f}** | "
        f"{min(arrow_rates):,.0f}–{max(arrow_rates):,.0f} | {pairs} |",
        f"| JSON CSR (`application/json`) | **{statistics.median(json_rates):,.0f}** | "
        f"{min(json_rates):,.0f}–{max(json_rates):,.0f} | |",
        "",
        f"Arrow / JSON, median of the per-round ratios: "
        f"**{statistics.median(r['arrow'] / r['json'] for r in rounds):.2f}x**. "
        "Goal: >= 1,000,000 rows/s learned from Arrow CSR batches of 10,000 rows "
        f"({'met' if statistics.median(arrow_rates) >= 1e6 else 'not met'} in this run).",
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
