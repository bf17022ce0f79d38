"""loadtest/bench_arrow.py --smoke: the server learns every Arrow and JSON batch, refuses every
probe body of the HTTP floor at its schema, and the report carries each measurement.

Runs the benchmark's ``main(["--smoke"])`` in this process (the server is its subprocess on
127.0.0.1): 20,000 rows, one round. Skipped without pyarrow or ../shared (the click-stream
generator beside the repo).
"""

from __future__ import annotations

import re
from types import ModuleType

import pytest
from datasets import loadtest_script


def load_bench() -> ModuleType:
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install '.[arrow]')")
    return loadtest_script("bench_arrow")


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_smoke_learns_both_kinds_and_reports_where_the_time_goes(capsys) -> None:
    bench = load_bench()
    committed = bench.REPORT.read_text()
    # send_all raises when a request is not answered as expected: 200 with every row learned,
    # 422 for the probe bodies with a column too many
    assert bench.main(["--smoke"]) == 0
    report = capsys.readouterr().out

    for body in ("Arrow IPC CSR", "JSON CSR"):
        match = re.search(rf"^\| {body} \(`[^`]+`\) \| \*\*([\d,]+)\*\* \|", report, re.M)
        assert match, f"no rate for {body}"
        assert number(match.group(1)) > 0
    for requests in ("Arrow CSR, learned", "JSON CSR, learned", "(HTTP floor)"):
        match = re.search(rf"^\| [^|]*{re.escape(requests)} \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|",
                          report, re.M)  # fmt: skip
        assert match, f"no per-request row for {requests}"
        assert number(match.group(1)) > 0  # the wall time; CPU may round to 0 on 2 requests
    stages = re.findall(r"^\| ([^|]+) \| ([\d.]+) \| ([\d.]+) \|$", report, re.M)
    named = {name.strip() for name, _, _ in stages}
    assert {bench.LEARN_STAGE, bench.LOG_STAGE, "Arrow parse (body to validated batch)"} <= named
    assert all(number(wall) > 0 for _, wall, _ in stages)
    assert re.search(r"the learn loop .* alone runs [\d,]+ rows/s on a core", report)
    assert bench.REPORT.read_text() == committed  # a smoke run writes no report
