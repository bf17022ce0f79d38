"""Random sparse streams for the exactness tests, and a bridge from them to the model."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

Rows = list[tuple[np.ndarray, np.ndarray]]


def sparse_stream(
    seed: int, dim: int = 16, n_rows: int = 400, absent: tuple[int, int] = (60, 300)
) -> tuple[Rows, np.ndarray, np.ndarray]:
    """Coordinate 0 in every row, 1..4 absent for rows ``absent``, 5..6 only in the first 30
    rows, ``dim-1`` never, the others with probability 0.3; labels from a hidden logistic model."""
    rng = np.random.default_rng(seed)
    true_w = rng.normal(size=dim)
    rows: Rows = []
    labels = np.zeros(n_rows)
    for i in range(n_rows):
        present = [0]
        present += [j for j in range(1, 5) if not absent[0] <= i < absent[1] and rng.random() < 0.6]
        present += [j for j in (5, 6) if i < 30 and rng.random() < 0.7]
        present += [j for j in range(7, dim - 1) if rng.random() < 0.3]
        indices = rng.permutation(np.array(present, dtype=np.int64))
        values = rng.normal(size=len(indices))
        rows.append((indices, values))
        margin = float(true_w[indices] @ values) + 0.3
        labels[i] = float(rng.random() < 1.0 / (1.0 + math.exp(-margin)))
    return rows, labels, rng.uniform(0.5, 2.0, size=n_rows)


def long_absence_stream(
    seed: int, warmup: int, gap: int, tail: int = 50
) -> tuple[Rows, np.ndarray, np.ndarray]:
    """Coordinates 2..5 present during ``warmup`` rows, absent for ``gap`` rows, then back;
    coordinates 0 and 1 always present."""
    rng = np.random.default_rng(seed)
    rows: Rows = []
    n_rows = warmup + gap + tail
    labels = (rng.random(n_rows) < 0.4).astype(float)
    for i in range(n_rows):
        present = [0, 1] + ([2, 3, 4, 5] if not warmup <= i < warmup + gap else [])
        indices = np.array(present, dtype=np.int64)
        rows.append((indices, rng.normal(size=len(indices))))
    return rows, labels, np.ones(n_rows)


def to_csr(rows: Rows, dim: int) -> sp.csr_array:
    indptr = np.cumsum([0] + [len(i) for i, _ in rows])
    indices = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, dtype=np.int64)
    values = np.concatenate([v for _, v in rows]) if rows else np.zeros(0)
    return sp.csr_array((values, indices, indptr), shape=(len(rows), dim))
