"""loadtest/bench_quality.py --quick: the quality report fills in from one short run.

Runs on a copy of ../shared without agaricus, so a missing data set must be named as skipped.
``ADASERVE_SHARED`` points at the shared folder when it is not beside the repo; skipped when
absent."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType

from datasets import SHARED, loadtest_script


def load_bench() -> ModuleType:
    return loadtest_script("bench_quality")


def table_row(report: str, label: str) -> list[str]:
    match = re.search(rf"^\| {re.escape(label)} \| (.*) \|$", report, re.M)
    assert match, f"no table row {label!r}"
    return [cell.strip() for cell in match.group(1).split("|")]


def test_quick_report(tmp_path: Path) -> None:
    bench = load_bench()
    shared = tmp_path / "shared"
    (shared / "tools").mkdir(parents=True)
    (shared / "tools" / "make_clicks.py").symlink_to(SHARED / "tools" / "make_clicks.py")
    (shared / "data").mkdir()
    for name in ("a9a", "rcv1"):
        if (SHARED / "data" / name).is_dir():
            (shared / "data" / name).symlink_to(SHARED / "data" / name)
    out = tmp_path / "out"
    assert bench.main(["--quick", "--shared", str(shared), "--out", str(out)]) == 0
    report = (out / "REPORT_QUALITY.md").read_text()
    data = json.loads((out / "bench_quality.json").read_text())
    assert "quick mode" in report
    assert "- skipped: agaricus:" in report and "is absent" in report
    names = [s["name"] for s in data["sets"]]
    assert "agaricus" not in names
    assert {"clicks raw (VW text)", "clicks log1p (VW text)", "clicks (Criteo TSV)"} <= set(names)
    for label in ("ours default", "ours auto", "ours adagrad, best of grid"):
        cells = table_row(report, label)
        assert len(cells) == len(names)
        for cell in cells:
            assert 0 < float(cell.split()[0]) < 1, (label, cell)
    for s in data["sets"]:
        auto = s["results"]["ours auto"]
        assert auto["extra"]["leader"] and 0.5 < auto["auc"] <= 1
        if bench.supported({"normalized": True}) is None:
            assert "ours adagrad normalized default" in s["results"]
        else:
            assert "adagrad normalized default" in s["skipped"]
    if bench.installed("vowpalwabbit"):
        assert all(0 < float(c.split()[0]) < 1 for c in table_row(report, "VW default"))
        assert "`auto` is" in report
    else:
        assert "VW did not run: no comparison with its default." in report
    assert "## The default (issue 16, section 3)" in report and "Decision:" in report
    assert data["auto_cost"]["seconds"]["auto"] > 0 and "## Cost of `auto`" in report
    check_crosses(bench, report, data)
    assert (out / "quality_lr.svg").read_text().startswith("<?xml")
    again = tmp_path / "again"
    again.mkdir()
    assert bench.main(["--render", str(out / "bench_quality.json"), "--out", str(again)]) == 0
    assert (again / "REPORT_QUALITY.md").read_text() == report


def check_crosses(bench: ModuleType, report: str, data: dict) -> None:
    """The interactions-and-holdout section: each option on the crossed click log, progressive
    and holdout log-loss of ours (and VW's, where it is installed)."""
    assert "## Interactions and holdout (issue 20)" in report
    crosses = {c["name"]: c for c in data["crosses"]}
    clicks = crosses["clicks with crosses"]
    assert list(clicks["options"]) == ["none", "-q xx", "-q CC"]
    per_row = {o: v["nnz"] / v["rows"] for o, v in clicks["options"].items()}
    assert per_row["none"] < per_row["-q xx"] < per_row["-q CC"]
    vw = bench.installed("vowpalwabbit")
    for option in clicks["options"].values():
        assert option["rows"] == 2_000
        learners = ["ours default", f"ours {bench.VW_FORM}", "ours auto"]
        for name in learners + (["VW default"] if vw else []):
            result = option["results"][name]
            assert 0 < result["log_loss"] < 1 and 0 < result["holdout_log_loss"] < 1, name
    if not vw:
        assert "VW did not run (vowpalwabbit is not installed)." in report
    elif "a9a" in crosses:  # VW's update, ours and VW's, hold out and cross alike
        for option in crosses["a9a"]["options"].values():
            ours, theirs = (
                option["results"][f"ours {bench.VW_FORM}"],
                option["results"]["VW default"],
            )
            for key in ("log_loss", "holdout_log_loss"):
                assert abs(ours[key] - theirs[key]) < 2e-3, (key, ours[key], theirs[key])
