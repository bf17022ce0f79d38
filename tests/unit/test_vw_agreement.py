"""Normalized AdaGrad equals VW ``--adaptive --normalized``, and normalized invariant AdaGrad VW's
default (adaptive, normalized, invariant), within 1e-3 of progressive log-loss (VW is float32),
on the shared data sets and a click log of raw counts; skipped when they are absent."""

from __future__ import annotations

import pytest
from datasets import shared_file
from vw_agreement import CLICKS_TOOL, EQUIVALENTS, VW_LR, click_rows, our_log_loss, rows_of
from vw_agreement import vw_log_loss as vw_loss

pytest.importorskip("vowpalwabbit")

SETS = {
    "a9a": (("a9a", "a9a"), "libsvm", 124),
    "agaricus": (("agaricus", "agaricus.txt.train"), "libsvm", 127),
    "rcv1": (("rcv1", "rcv1_small.dat"), "vw", 2**18),
}


def assert_agrees(X, y, options: str) -> None:
    ours = our_log_loss(X, y, {"name": "adagrad", "lr": VW_LR}, **EQUIVALENTS[options])
    theirs = vw_loss(X, y, options)
    assert ours == pytest.approx(theirs, abs=1e-3)


@pytest.mark.parametrize("options", list(EQUIVALENTS), ids=["adaptive-normalized", "vw-default"])
@pytest.mark.parametrize("name", sorted(SETS))
def test_matches_vw_on_shared_data(name: str, options: str) -> None:
    parts, fmt, dim = SETS[name]
    X, y = rows_of(shared_file(*parts), fmt, dim)
    assert_agrees(X, y, options)


@pytest.mark.parametrize("options", list(EQUIVALENTS), ids=["adaptive-normalized", "vw-default"])
def test_matches_vw_on_raw_count_clicks(options: str) -> None:
    if not CLICKS_TOOL.exists():
        pytest.skip(f"{CLICKS_TOOL} is absent")
    X, y = click_rows(rows=5_000)
    assert_agrees(X, y, options)
