"""loadtest/bench_durability.py --smoke: kill -9 loses no acknowledged row, recovery is complete,
every fsync mode learns.

Runs the benchmark's ``main(["--smoke", "--out", tmp])`` in this process (the servers are its
subprocesses on 127.0.0.1): 2 kill rounds, a 20,000-row log, 2 s per throughput run, kernel
warm-up off; about a minute. Skipped when ../shared (the click-stream generator beside the repo)
is absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from datasets import loadtest_script


def load_bench() -> ModuleType:
    return loadtest_script("bench_durability")


def test_smoke_no_acknowledged_row_lost_and_every_mode_learns(tmp_path: Path) -> None:
    bench = load_bench()
    assert bench.main(["--smoke", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bench_durability.json").read_text())
    report = (tmp_path / "REPORT_DURABILITY.md").read_text()

    kill = data["kill"]
    assert len(kill["rounds"]) == 2
    assert kill["rows_lost"] == 0
    assert kill["rows_extra"] == 0
    assert kill["acked_rows"] > 0
    assert kill["all_sigkilled"] and kill["all_exact"], kill["rounds"]
    assert kill["errors"] == 0 and kill["step_mismatches"] == 0
    assert all(r["restart_ready_s"] > 0 for r in kill["rounds"])

    recovery = data["recovery"]
    assert recovery["build"]["rows"] == 20_000 and recovery["build"]["wal_bytes"] > 0
    assert recovery["in_process"]["ok"] and recovery["server"]["ok"]
    assert all(r["step"] == 20_000 for r in recovery["server"]["runs"])

    runs = {(r["mode"], r["concurrency"]): r for r in data["throughput"]["runs"]}
    assert set(runs) == {(m, c) for m in ("always", "interval", "off") for c in (1, 8)}
    for key, run in runs.items():
        assert run["rows_per_s"] > 0, key
        assert run["non2xx"] == 0 and run["exceptions"] == 0, (key, run["error_samples"])
    assert all(m["step_matches"] for m in data["throughput"]["modes"].values())

    faults = data["faults"]
    assert faults["rounds"] == 1 and faults["faults"]["kill -9"] == 1
    assert faults["violations"] == [] and faults["rows_lost"] == 0, faults
    assert "## 4. Fault injection" in report

    assert "smoke mode" in report
    assert "| acknowledged rows lost after 2 kill -9 rounds" in report
