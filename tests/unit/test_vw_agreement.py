"""Normalized AdaGrad equals VW ``--adaptive --normalized``, and normalized invariant AdaGrad VW's
default (adaptive, normalized, invariant), within 1e-3 of progressive log-loss (VW is float32),
on the shared data sets and a click log of raw counts; plain AdaGrad VW's ``--adaptive`` but for
the rows VW skips; skipped when they are absent."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import shared_file
from vw_agreement import (
    CLICKS_TOOL,
    EQUIVALENTS,
    VW_LR,
    click_rows,
    our_log_loss,
    rows_of,
    vw_predictions,
    vw_skips,
)
from vw_agreement import vw_log_loss as vw_loss

from optim import OnlineLogisticRegression
from optim.metrics import log_losses

pytest.importorskip("vowpalwabbit")

VW_ADAPTIVE = "--adaptive -l 0.1 --power_t 0.5 --initial_t 0"  # plain AdaGrad, lr 0.1
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


def test_plain_adagrad_is_vw_adaptive_but_for_the_rows_vw_skips() -> None:
    """Plain AdaGrad and VW's ``--adaptive -l 0.1 --power_t 0.5 --initial_t 0`` part on raw
    counts, where margins grow large, for two float32 habits of VW: it scores (and reports) its
    prediction clipped to [-50, 50], and it takes no step on a row whose float32 loss is 0 (a
    margin right by more than ~16.6), where AdaGrad's first step on a coordinate is ``lr``
    however small the gradient. Without the rows VW skipped, and scored as VW scores, they
    agree (VW's step also uses an approximate 1/sqrt, SSE's ``rsqrtss``: margins differ by
    ~1e-4 relative)."""
    if not CLICKS_TOOL.exists():
        pytest.skip(f"{CLICKS_TOOL} is absent")
    X, y = click_rows(rows=5_000)
    margins = vw_predictions(X, y, VW_ADAPTIVE)
    skipped = vw_skips(margins, y)
    assert 0 < skipped.sum() < 0.05 * y.size
    kept = np.flatnonzero(~skipped)
    theirs = vw_predictions(X[kept], y[kept], VW_ADAPTIVE)
    np.testing.assert_array_equal(theirs, margins[kept])  # VW learned nothing from the others

    def clipped_loss(margins: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(log_losses(np.clip(margins, -50, 50), labels)))

    model = OnlineLogisticRegression({"name": "adagrad", "lr": 0.1}, dim=X.shape[1])
    ours = model.learn(X[kept], y[kept]).margins
    assert clipped_loss(ours, y[kept]) == pytest.approx(clipped_loss(theirs, y[kept]), abs=1e-4)
    everything = OnlineLogisticRegression({"name": "adagrad", "lr": 0.1}, dim=X.shape[1])
    on_all = clipped_loss(everything.learn(X, y).margins, y)
    assert abs(on_all - clipped_loss(margins, y)) > 1e-3  # the skipped rows are the difference
