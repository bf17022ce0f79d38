"""Progressive validation: every row is scored before it is learned.

Stable sigmoid and log-loss from margins, and the running metrics a model keeps: rows, weighted
log-loss overall and over the most recent ``window`` rows, and calibration (mean prediction over
mean label, weighted).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def probabilities(margins: np.ndarray) -> np.ndarray:
    """``sigmoid(margins)``, finite and in [0, 1] for any finite margin."""
    return expit(margins)


def log_losses(margins: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row ``-log p(label)`` computed from margins, so ``|margin| = 1000`` stays finite."""
    signed = np.where(labels > 0.5, -margins, margins)
    return np.maximum(signed, 0.0) + np.log1p(np.exp(-np.abs(signed)))


def weighted_mean(values: np.ndarray, weights: np.ndarray | None) -> float:
    if values.size == 0:
        return float("nan")
    if weights is None:
        return float(values.mean())
    total = weights.sum()
    return float((values * weights).sum() / total) if total > 0 else float("nan")


class ProgressiveMetrics:
    """Running progressive metrics over all rows and over a ring of the last ``window`` rows."""

    # Columns of the per-row ring and of the overall totals.
    _LOSS, _WEIGHT, _PREDICTION, _LABEL = range(4)

    def __init__(self, window: int = 10_000) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.rows = 0
        self.totals = np.zeros(4)
        self.ring = np.zeros((window, 4))

    def update(
        self,
        losses: np.ndarray,
        predictions: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray | None,
    ) -> None:
        w = np.ones_like(losses) if weights is None else weights
        block = np.column_stack([losses * w, w, predictions * w, labels * w])
        self.totals += block.sum(axis=0)
        tail = block[-self.window :]
        positions = (self.rows + np.arange(len(block) - len(tail), len(block))) % self.window
        self.ring[positions] = tail
        self.rows += len(block)

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

    def to_dict(self) -> dict[str, object]:
        recent_rows = min(self.rows, self.window)
        return {
            "rows": self.rows,
            "overall": self._summary(self.totals),
            "recent": {"rows": recent_rows, **self._summary(self.ring.sum(axis=0))},
        }

    def state(self) -> dict[str, np.ndarray]:
        return {
            "metrics_rows": np.array(self.rows, dtype=np.int64),
            "metrics_totals": self.totals.copy(),
            "metrics_ring": self.ring.copy(),
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> ProgressiveMetrics:
        # Copies: the metrics are updated in place and must not share the caller's arrays.
        ring = np.array(state["metrics_ring"], dtype=np.float64)
        totals = np.array(state["metrics_totals"], dtype=np.float64)
        rows = int(state["metrics_rows"])
        if ring.ndim != 2 or ring.shape[1] != 4 or totals.shape != (4,) or rows < 0:
            raise ValueError("metrics arrays have the wrong shape")
        if not (np.isfinite(ring).all() and np.isfinite(totals).all()):
            raise ValueError("metrics arrays hold non-finite values")
        metrics = cls(ring.shape[0])
        metrics.rows, metrics.totals, metrics.ring = rows, totals, ring
        return metrics
