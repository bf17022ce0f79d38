"""The first start of a fresh install: ``adaserve serve`` with empty kernel and numba caches.

Each run starts the server with ``ADASERVE_KERNEL_DIR`` and ``NUMBA_CACHE_DIR`` pointed at a new
empty folder and an empty data directory, then measures from ``Popen``: the first HTTP answer
(``/healthz``), ``/readyz`` 200, the README's first steps (create an AdaGrad model, a named-rows
update acknowledged, a named-rows predict, a rate lookup) and, unless ``--no-wait-all``, the
moment every piece is warm (``all_warm``), in wall time and in the server's CPU time (on a busy
machine the wall time is mostly waiting for a core). The server's log gives each piece's compile
time.

    python loadtest/bench_cold_start.py [--runs 1] [--report loadtest/REPORT_COLD_START.md]

The 2-core machine is shared: the load average at the start of each run is printed with it.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import harness  # noqa: F401 - first: this checkout's code on sys.path
import httpx
from harness import (
    REPO,
    free_port,
)

ROWS = {"rows": [{"features": {"IQ": 1.18, "CGPA": 0.82}, "label": 1},
                 {"features": {"CGPA": 0.55}, "label": 0}]}  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far: what its start cost whatever else runs on
    the machine (wall time on a busy machine is mostly waiting for a core)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(wait_all: bool) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="adaserve-cold-"))
    env = {**os.environ, "ADASERVE_KERNEL_DIR": str(work / "kernels"),
           "NUMBA_CACHE_DIR": str(work / "numba")}  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    load = os.getloadavg()[0]
    start = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port),
         "--data-dir", str(work / "data")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(line.decode() for line in process.stdout))
    reader.start()
    marks: dict[str, float] = {}
    try:
        with httpx.Client(base_url=url, timeout=900) as http:
            while "answer" not in marks:
                try:
                    http.get("/healthz")
                    marks["answer"] = time.monotonic() - start
                except httpx.TransportError:
                    time.sleep(0.05)
            while http.get("/readyz").status_code != 200:
                time.sleep(0.05)
            marks["ready"] = time.monotonic() - start
            marks["ready, server CPU s"] = cpu_seconds(process.pid)
            http.post(
                "/v1/models", json={"name": "iq", "hash_bits": 18, "optimizer": "adagrad"}
            ).raise_for_status()
            http.post("/v1/models/iq/updates", json=ROWS).raise_for_status()
            marks["first update"] = time.monotonic() - start
            marks["first update, server CPU s"] = cpu_seconds(process.pid)
            http.post("/v1/models/iq/predict", json={"rows": [{"features": {"IQ": 1.3}}]})
            marks["first predict"] = time.monotonic() - start
            http.get("/v1/models/iq/learning-rates", params={"features": "IQ"}).raise_for_status()
            marks["first rate lookup"] = time.monotonic() - start
            while wait_all and not http.get("/readyz").json()["all_warm"]:
                time.sleep(0.5)
            if wait_all:
                marks["all warm"] = time.monotonic() - start
    finally:
        process.terminate()
        process.wait(120)
        reader.join()
    pieces = dict(re.findall(r"INFO (\S+) warm in ([\d.]+) s", "".join(log)))
    return {"load": load, "marks": marks, "pieces": {k: float(v) for k, v in pieces.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-wait-all", action="store_true", help="stop after the first steps")
    parser.add_argument("--report", type=Path, help="also write the tables as markdown here")
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        run = one_run(not args.no_wait_all)
        runs.append(run)
        marks = ", ".join(f"{k} {v:.1f} s" for k, v in run["marks"].items())
        print(f"run {i + 1} (load average {run['load']:.1f}): {marks}", flush=True)
    lines = [
        "| since Popen | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | median |",
        "|---|" + "---|" * (len(runs) + 1),
        "| load average (1 min) at start | "
        + " | ".join(f"{r['load']:.1f}" for r in runs)
        + " | |",
    ]
    for mark in runs[0]["marks"]:
        values = [r["marks"][mark] for r in runs]
        lines.append(f"| {mark} | " + " | ".join(f"{v:.1f}" for v in values)
                     + f" | {statistics.median(values):.1f} |")  # fmt: skip
    lines += ["", "| piece (compile s, in order) | " + " | ".join(
        f"run {i + 1}" for i in range(len(runs))) + " |", "|---|" + "---|" * len(runs)]  # fmt: skip
    for piece in runs[0]["pieces"]:
        lines.append(f"| {piece} | "
                     + " | ".join(f"{r['pieces'].get(piece, float('nan')):.2f}" for r in runs)
                     + " |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    if args.report:
        args.report.write_text(
            "# Cold start: a fresh install's first `adaserve serve`\n\n"
            f"`python loadtest/bench_cold_start.py --runs {args.runs}"
            f"{' --no-wait-all' if args.no_wait_all else ''}` (empty kernel and numba caches "
            "each run; 2 shared cores).\n\n" + table + "\n"
        )


if __name__ == "__main__":
    main()
