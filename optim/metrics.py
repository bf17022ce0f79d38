"""Progressive validation: every row is scored before it is learned.

Stable sigmoid and log-loss from margins, and the running metrics a model keeps: rows, weighted
log-loss overall and over the most recent ``window`` rows, and calibration (mean prediction over
mean label, weighted).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


def probabilities(margins: np.ndarray) -> np.ndarray:
    """``sigmoid(margins)``, finite and in [0, 1] for any finite margin."""
    from scipy.special import expit  # here: scipy.special costs ~0.1 s to import (train's start)

    return expit(margins)


def log_losses(margins: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row ``-log p(label)`` computed from margins, so ``|margin| = 1000`` stays finite."""
    return score(np.asarray(margins, dtype=np.float64), np.asarray(labels, dtype=np.float64))[1]


@nb.njit(cache=True)  # holds the GIL: see _score
def _score(margins: np.ndarray, labels: np.ndarray, probs: np.ndarray, losses: np.ndarray) -> None:
    """:func:`probabilities` and :func:`log_losses` in one compiled pass.

    This and the other short kernels of a learned batch (microseconds) keep the GIL: a learner
    thread that let it go would wait to get it back behind a busy event loop, up to the
    interpreter's switch interval (5 ms) each time, where NumPy calls let it go once each."""
    for i in range(margins.size):
        m = margins[i]
        probs[i] = 1.0 / (1.0 + math.exp(-m))  # scipy's expit
        signed = -m if labels[i] > 0.5 else m
        losses[i] = max(signed, 0.0) + math.log1p(math.exp(-abs(signed)))


def score(margins: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's probability and log-loss: ``(probabilities(margins), log_losses(...))``."""
    probs, losses = np.empty(margins.size), np.empty(margins.size)
    _score(margins, labels, probs, losses)
    return probs, losses


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (rank-sum, ties averaged); None without both classes."""
    positives = labels > 0.5
    n_pos = int(positives.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    # Average ranks over runs of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    stops = np.concatenate([boundaries, [len(scores)]])
    ranks[order] = np.repeat((starts + stops + 1) / 2.0, stops - starts)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@nb.njit(cache=True)  # holds the GIL: see _score
def _accumulate(
    losses: np.ndarray, predictions: np.ndarray, labels: np.ndarray, weights: np.ndarray,
    rows: int, window: int, ring: np.ndarray, totals: np.ndarray, bounds: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Weighted sums into ``totals`` and the last ``window`` rows into the ring (row ``r`` of
    the stream at ``r % window``; the ring has room for ``min(rows + n, window)`` rows);
    ``weights`` empty: every row weighs 1. Returns the weighted mean loss of each batch of rows
    ``bounds[k]:bounds[k + 1]`` (nan if weightless)."""
    n = losses.size
    means = np.empty(bounds.size - 1)
    for k in range(bounds.size - 1):
        loss_sum = weight_sum = 0.0
        for i in range(bounds[k], bounds[k + 1]):
            w = weights[i] if weights.size else 1.0
            loss, p, y = losses[i] * w, predictions[i] * w, labels[i] * w
            totals[0] += loss
            totals[1] += w
            totals[2] += p
            totals[3] += y
            loss_sum += loss
            weight_sum += w
            if i >= n - window:
                row = ring[(rows + i) % window]
                row[0], row[1], row[2], row[3] = loss, w, p, y
                row[4], row[5] = predictions[i], labels[i]
        means[k] = loss_sum / weight_sum if weight_sum > 0 else np.nan
    return means


@nb.njit(cache=True)  # holds the GIL: see _score
def _fill_block(losses: np.ndarray, weights: np.ndarray, start: int, block: np.ndarray) -> int:
    """Add rows from ``start`` to the loss curve's open block ``[size, loss, weight, filled]``
    until it is full or the rows end; the row after the last one taken."""
    i = start
    while i < losses.size and block[3] < block[0]:
        w = weights[i] if weights.size else 1.0
        block[1] += losses[i] * w
        block[2] += w
        block[3] += 1.0
        i += 1
    return i


class ProgressiveMetrics:
    """Running progressive metrics: over all rows, over a ring of the last ``window`` rows, and a
    loss curve (log-loss per block of rows; when it reaches ``max_points`` points, neighbours are
    merged and the block doubles, so it covers the whole stream in bounded memory)."""

    # Columns of the per-row ring (the first four also of the overall totals).
    _LOSS, _WEIGHT, _PREDICTION, _LABEL, _RAW_PREDICTION, _RAW_LABEL = range(6)
    RING_COLUMNS = 6
    CURVE_COLUMNS = 3

    # The first blocks are of 10 rows, so that a data set of a few hundred rows has a curve too;
    # a long stream doubles them as often as needed to stay within max_points.
    def __init__(self, window: int = 10_000, block: int = 10, max_points: int = 500) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.rows = 0
        self.totals = np.zeros(4)
        # Grown as rows arrive (see ring_capacity): a large window costs memory once it is used,
        # and a model file holds the rows seen, not the window's size in zeros.
        self.ring = np.zeros((0, self.RING_COLUMNS))
        self.max_points = max_points
        # [rows at the end of the block, weighted loss sum, weight sum] per completed block
        self.curve = np.zeros((0, 3))
        # [rows per block, loss sum, weight sum, rows] of the block being filled
        self.block = np.array([float(block), 0.0, 0.0, 0.0])

    def update(
        self,
        losses: np.ndarray,
        predictions: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray | None,
        bounds: np.ndarray | None = None,
    ) -> np.ndarray:
        """Add rows (each one's loss, prediction, label and weight, in order); return the
        weighted mean loss of each batch ``bounds[k]:bounds[k + 1]`` (default: all the rows)."""
        w = np.empty(0) if weights is None else weights  # empty: every row weighs 1
        if bounds is None:
            bounds = np.array([0, len(losses)])
        capacity = self.ring_capacity(self.rows + len(losses), self.window)
        if capacity > len(self.ring):
            self.ring = np.concatenate(
                [self.ring, np.zeros((capacity - len(self.ring), self.RING_COLUMNS))]
            )
        means = _accumulate(
            losses, predictions, labels, w, self.rows, self.window, self.ring, self.totals, bounds
        )
        start = 0
        while start < len(losses):
            start = _fill_block(losses, w, start, self.block)
            size, loss, weight, filled = self.block
            if filled == size:
                self._close_block(self.rows + start, loss, weight)
        self.rows += len(losses)
        return means

    @staticmethod
    def ring_capacity(rows: int, window: int) -> int:
        """Rows of ring held after ``rows`` rows: the next power of two, at most the window
        (doubling: a model learning row by row copies its ring O(log window) times)."""
        return 0 if rows == 0 else min(window, 1 << (rows - 1).bit_length())

    @classmethod
    def nbytes_for(cls, window: int, max_points: int = 500) -> int:
        """The most bytes metrics of this window hold: a full ring and a full loss curve."""
        return 8 * (window * cls.RING_COLUMNS + (max_points + 1) * cls.CURVE_COLUMNS + 4 + 4)

    @property
    def nbytes(self) -> int:
        """The bytes these metrics hold now."""
        return self.ring.nbytes + self.curve.nbytes + self.totals.nbytes + self.block.nbytes

    def _close_block(self, rows: int, loss: float, weight: float) -> None:
        self.curve = np.vstack([self.curve, [rows, loss, weight]])
        size = self.block[0]
        if len(self.curve) > self.max_points:
            pairs = self.curve[: len(self.curve) // 2 * 2].reshape(-1, 2, 3)
            merged = np.column_stack(
                [pairs[:, 1, 0], pairs[:, :, 1].sum(axis=1), pairs[:, :, 2].sum(axis=1)]
            )
            self.curve = np.vstack([merged, self.curve[len(pairs) * 2 :]])
            size *= 2
        self.block[:] = (size, 0.0, 0.0, 0.0)

    @staticmethod
    def _summary(sums: np.ndarray) -> dict[str, float | None]:
        weight = sums[ProgressiveMetrics._WEIGHT]

        def ratio(a: float, b: float) -> float | None:
            return float(a / b) if b > 0 else None

        mean_label = ratio(sums[ProgressiveMetrics._LABEL], weight)
        mean_prediction = ratio(sums[ProgressiveMetrics._PREDICTION], weight)
        return {
            "log_loss": ratio(sums[ProgressiveMetrics._LOSS], weight),
            "mean_prediction": mean_prediction,
            "mean_label": mean_label,
            "calibration": (
                mean_prediction / mean_label if mean_prediction is not None and mean_label else None
            ),
        }

    def loss_curve(self) -> list[list[float]]:
        """``[[rows, log-loss of the block ending there], ...]``."""
        return [
            [int(rows), float(loss / weight)] for rows, loss, weight in self.curve if weight > 0
        ]

    def to_dict(self) -> dict[str, object]:
        recent_rows = min(self.rows, self.window)
        recent = self.ring[:recent_rows]
        return {
            "rows": self.rows,
            "overall": self._summary(self.totals),
            "recent": {
                "rows": recent_rows,
                **self._summary(recent[:, :4].sum(axis=0)),
                "auc": auc(recent[:, self._RAW_PREDICTION], recent[:, self._RAW_LABEL]),
            },
            "curve": self.loss_curve(),
        }

    def state(self, prefix: str = "metrics") -> dict[str, np.ndarray]:
        """Copies of the arrays, named ``<prefix>_rows``, ``<prefix>_totals``, ..."""
        return {
            f"{prefix}_rows": np.array(self.rows, dtype=np.int64),
            f"{prefix}_totals": self.totals.copy(),
            f"{prefix}_ring": self.ring[: min(self.rows, self.window)].copy(),
            f"{prefix}_curve": self.curve.copy(),
            f"{prefix}_block": self.block.copy(),
        }

    @classmethod
    def from_state(
        cls, state: dict[str, np.ndarray], window: int, prefix: str = "metrics"
    ) -> ProgressiveMetrics:
        """Metrics from :meth:`state`'s arrays, as validated by :mod:`optim.model_file` (dtypes,
        shapes: the ring holds ``min(rows, window)`` rows, or the whole window; finite values)."""
        # Copies: the metrics are updated in place and must not share the caller's arrays.
        rows = int(state[f"{prefix}_rows"])
        metrics = cls(window)
        ring = state[f"{prefix}_ring"]
        metrics.ring = np.zeros((cls.ring_capacity(rows, window), cls.RING_COLUMNS))
        kept = min(len(ring), len(metrics.ring))
        metrics.ring[:kept] = ring[:kept]
        metrics.rows = rows
        metrics.totals = np.array(state[f"{prefix}_totals"], dtype=np.float64)
        metrics.curve = np.array(state.get(f"{prefix}_curve", metrics.curve), dtype=np.float64)
        metrics.block = np.array(state.get(f"{prefix}_block", metrics.block), dtype=np.float64)
        return metrics
