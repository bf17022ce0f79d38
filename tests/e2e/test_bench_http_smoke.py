"""loadtest/bench_http.py --smoke: both servers start, every scenario answers, nothing fails.

Runs the benchmark's ``main(["--smoke", ...])`` in this process (the servers are its
subprocesses on 127.0.0.1): 2,000 rows, 1 s per scenario, well under a minute. Skipped when
../shared (the click-stream generator beside the repo) is absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from datasets import loadtest_script


def load_bench() -> ModuleType:
    return loadtest_script("bench_http")


def test_smoke_every_scenario_answers_without_errors(tmp_path: Path) -> None:
    bench = load_bench()
    assert bench.main(["--smoke", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bench_http.json").read_text())
    report = (tmp_path / "REPORT_HTTP.md").read_text()

    scenarios = {s["scenario"]: s for s in data["scenarios"]}
    assert set(scenarios) == {"a", "b", "c", "d"}
    for key, s in scenarios.items():
        assert s["requests_per_s"] > 0, key
        assert s["rows_per_s"] > 0, key
        assert s["result"]["non2xx"] == 0 and s["result"]["exceptions"] == 0, (key, s["result"])
    for key in ("c", "d"):  # the model's step agrees with the 2xx answers
        assert scenarios[key]["check"].endswith(": ok"), scenarios[key]["check"]

    for key in ("e", "f"):
        stream = data["streams"][key]
        assert stream["all_ok"], stream["runs"]
        assert stream["rows_per_s"] > 0
        assert all(r["summary"]["error"] is None for r in stream["runs"])
        assert all(r["summary"]["rows"] == 2_000 for r in stream["runs"])

    ceilings = {(c["result"]["client"], c["server"]): c for c in data["ceilings"]}
    for client in ("asyncio", "httpx"):  # the Python generators always run; wrk when installed
        for server in ("bare", "raw"):
            c = ceilings[client, server]
            assert c["requests_per_s"] > 0 and c["result"]["exceptions"] == 0, c
    assert data["client"] in {"wrk", "asyncio"}

    assert "Smoke mode" in report
    assert "## Targets" in report and "not judged (smoke)" in report
    assert "| (b) single-row predict |" in report


def test_only_runs_the_chosen_scenarios(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bench = load_bench()
    assert bench.main(["--only", "a,z"]) == 2
    assert "--only" in capsys.readouterr().err
    assert bench.main(["--smoke", "--only", "a,b", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bench_http.json").read_text())
    assert [s["scenario"] for s in data["scenarios"]] == ["a", "b"]
    assert data["streams"] == {} and data["ceilings"] == []
    report = (tmp_path / "REPORT_HTTP.md").read_text()
    assert "| (b) single-row predict |" in report and "Not run: skipped (--only a,b)" in report
