"""loadtest/bench_train.py --smoke: ``adaserve train`` and VW run on 5,000 rows and are reported.

Runs the benchmark's ``main`` in this process (``adaserve train`` and VW are its subprocesses).
Skipped when ../shared (the click-stream generator beside the repo) is absent; the VW comparison
is skipped without ``vowpalwabbit``, and the second test runs without VW as a CI machine would.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from datasets import REPO, SHARED

BENCH = REPO / "loadtest" / "bench_train.py"


def load_bench() -> ModuleType:
    if not (SHARED / "tools" / "make_clicks.py").is_file():
        pytest.skip(f"{SHARED}/tools/make_clicks.py is absent (../shared lives beside the repo)")
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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
    assert [t["status"] for t in info["targets"]] == ["not judged (smoke)"] * 3
    assert "Smoke mode" in report and "| VW native --adaptive | 5,000 |" in report


def test_smoke_without_vw(tmp_path: Path) -> None:
    bench = load_bench()
    args = ["--smoke", "--skip-vw", "--out", str(tmp_path), "--data-dir", str(tmp_path / "data")]
    assert bench.main(args) == 0
    info = json.loads((tmp_path / "bench_train.json").read_text())
    assert info["vw"] is None and info["ours"]["rows"] == 5_000
    statuses = [t["status"] for t in info["targets"]]
    assert statuses == ["not measured", "not measured", "not judged (smoke)"]
    assert "--skip-vw" in (tmp_path / "REPORT_TRAIN.md").read_text()
