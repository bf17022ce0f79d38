"""loadtest/bench_learners.py --smoke: runs in seconds and reports our throughput.

The peers (Vowpal Wabbit, River, scikit-learn, torch) are optional: the second test hides them
all, as on a CI machine with only the test extra, and the report must still carry our numbers.
Skipped when ../shared (the click-stream generator beside the repo) is absent.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from datasets import loadtest_script

PEER_MODULES = ("vowpalwabbit", "river", "sklearn", "torch")
OURS = ("ours adagrad", "ours ftrl", "ours adam exact")


def load_bench() -> ModuleType:
    return loadtest_script("bench_learners")


def our_rates(report: str) -> dict[str, float]:
    """rows/s (median) of our rows in the report's tables."""
    rates = {}
    for name in OURS:
        match = re.search(rf"^\| {re.escape(name)} \| [\d,]+ \| ([\d,]+) \|", report, re.M)
        assert match, f"no table row for {name!r} in the report"
        rates[name] = float(match.group(1).replace(",", ""))
    return rates


def run_smoke(bench: ModuleType, out: Path) -> tuple[str, dict]:
    assert bench.main(["--smoke", "--out", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    data = json.loads((out / "bench_learners.json").read_text())
    return report, data


def test_smoke_reports_our_rows_per_second(tmp_path: Path) -> None:
    bench = load_bench()
    report, data = run_smoke(bench, tmp_path)
    for name, rate in our_rates(report).items():
        assert rate > 0, name
        assert data["summary"][name]["rows"] == 2_000
        assert data["summary"][name]["rows_per_s"] > 0
        assert 0 < data["summary"][name]["logloss"] < 1
    assert "smoke mode" in report
    if bench.installed("vowpalwabbit"):
        assert data["summary"]["vw_native --adaptive"]["rows_per_s"] > 0
        assert "| ours adagrad | vw_native --adaptive |" in report
    else:
        assert "skipped vw_native --adaptive: vowpalwabbit not installed" in report


def test_smoke_without_any_peer_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_bench()
    for name in PEER_MODULES:  # find_spec says "absent", any import raises ImportError
        monkeypatch.setitem(sys.modules, name, None)
    report, data = run_smoke(bench, tmp_path)
    assert all(rate > 0 for rate in our_rates(report).values())
    assert set(data["summary"]) >= set(OURS)
    assert not any(name.startswith(("vw", "river", "sklearn", "torch")) for name in data["summary"])
    assert "skipped vw_native --adaptive: vowpalwabbit not installed" in report
    assert "No peer ran." in report
