"""loadtest/bench_train.py --smoke: ``adaserve train`` and VW run on 5,000 rows and are reported.

Runs the benchmark's ``main`` in this process (``adaserve train`` and VW are its subprocesses).
Skipped when ../shared (the click-stream generator beside the repo) is absent; the VW comparison
is skipped without ``vowpalwabbit``, and the second test runs without VW as a CI machine would.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from datasets import loadtest_script


def load_bench() -> ModuleType:
    return loadtest_script("bench_train")


def test_smoke_against_vw(tmp_path: Path) -> None:
    bench = load_bench()
    if not bench.installed("vowpalwabbit"):
        pytest.skip("vowpalwabbit is not installed (an optional benchmark peer)")
    args = ["--smoke", "--out", str(tmp_path), "--data-dir", str(tmp_path / "data")]
    assert bench.main(args) == 0
    info = json.loads((tmp_path / "bench_train.json").read_text())
    report = (tmp_path / "REPORT_TRAIN.md").read_text()
    ours, vw = info["ours"], info["vw"]
    assert ours["rows"] == vw["rows"] == 5_000
    assert ours["rows_per_s"] > 0 and vw["rows_per_s"] > 0
    # Same algorithm on the same coordinates: the progressive log-losses agree closely.
    assert abs(ours["log_loss"] - vw["log_loss"]) < 1e-3
    assert info["memory"]["full_peak_rss_mb"] > 0
    assert [t["status"] for t in info["targets"]] == ["not judged (smoke)"] * 5
    assert "Smoke mode" in report
    assert "| **VW native --adaptive (its own clock)** | 5,000 |" in report
    # adaserve over VW's own text too, and the start-up breakdown of every run
    assert info["ours_vw"]["rows"] == 5_000 and info["ours_vw"]["process_rows_per_s"] > 0
    assert all(run["startup"]["total"] > 0 for run in info["ours_runs"])
    assert "## Start-up" in report


def test_smoke_without_vw(tmp_path: Path) -> None:
    bench = load_bench()
    args = ["--smoke", "--skip-vw", "--out", str(tmp_path), "--data-dir", str(tmp_path / "data")]
    assert bench.main(args) == 0
    info = json.loads((tmp_path / "bench_train.json").read_text())
    assert info["vw"] is None and info["ours"]["rows"] == 5_000
    statuses = [t["status"] for t in info["targets"]]
    assert statuses == ["not measured"] * 3 + ["not judged (smoke)"] * 2
    assert "--skip-vw" in (tmp_path / "REPORT_TRAIN.md").read_text()
