"""Effective learning rate against times touched: a bounded, reproducible sample of touched
coordinates, stratified by how often each was touched, and the median rate per frequency bin.

Coordinates are binned by ``floor(log2(times_touched))`` (bin ``k`` holds 2**k to 2**(k+1)-1
touches). A uniform sample of a hashed model's touched coordinates is nearly all features seen
once or twice; the frequent ones, the few that matter to the question "how does the optimizer
treat rare versus frequent features?", would be missing. So every bin gets an equal share of the
sample (a bin smaller than its share is taken whole and its leftover shared by the others), drawn
from a generator seeded by the caller: the same model and seed give the same points.

Two compiled passes over the counters (the size of each bin, then the chosen coordinates) and
the optimizer's ``inspect`` of the chosen coordinates only: a 2**24-coordinate model costs tens
of milliseconds, not an inspection of every coordinate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba as nb
import numpy as np

from optim.errors import BatchError

BINS = 64
MAX_SAMPLE = 20_000
# Coordinates of a bin whose median rate is computed (all of them in a smaller bin).
MEDIAN_SAMPLE = 10_000

# caught-up (weight, effective rate) of the given coordinates
Inspect = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


UNTOUCHED = 255


@nb.njit(cache=True)
def _bins(times_touched: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each coordinate's bin ``floor(log2(times_touched))`` (:data:`UNTOUCHED` if never
    touched) and the size of each bin. Exact below 2**53 touches (a float64 conversion)."""
    bins = np.empty(times_touched.size, dtype=np.uint8)
    sizes = np.zeros(BINS, dtype=np.int64)
    for i in range(times_touched.size):
        count = times_touched[i]
        if count:
            k = math.frexp(float(count))[1] - 1
            bins[i] = k
            sizes[k] += 1
        else:
            bins[i] = UNTOUCHED
    return bins, sizes


@nb.njit(cache=True)
def _pick(bins: np.ndarray, ranks: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The coordinates at ``ranks[starts[k]:starts[k + 1]]`` (sorted) among those of bin ``k``,
    bin after bin."""
    seen = np.zeros(BINS, dtype=np.int64)
    following = starts[:-1].copy()
    out = np.empty(starts[-1], dtype=np.int64)
    for i in range(bins.size):
        k = bins[i]
        if k != UNTOUCHED:
            j = following[k]
            if j < starts[k + 1] and ranks[j] == seen[k]:
                out[j] = i
                following[k] = j + 1
            seen[k] += 1
    return out


def shares(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` draws over groups of ``sizes`` as evenly as possible, none beyond its
    size (water-filling); the shares sum to ``min(total, sizes.sum())``."""
    share = np.zeros_like(sizes)
    open_groups = sizes > 0
    left = int(total)
    while left > 0 and open_groups.any():
        each = max(1, left // int(open_groups.sum()))
        for group in np.flatnonzero(open_groups):
            take = min(each, int(sizes[group] - share[group]), left)
            share[group] += take
            left -= take
            if share[group] == sizes[group]:
                open_groups[group] = False
            if left == 0:
                break
    return share


def rates_by_frequency(
    times_touched: np.ndarray,
    inspect: Inspect,
    *,
    sample: int = 2_000,
    seed: int = 0,
    feature_names: dict[int, str] | None = None,
) -> dict[str, Any]:
    """Points (index, feature, times touched, effective rate, weight) on at most ``sample``
    touched coordinates, stratified by frequency bin, and each bin's median effective rate (over
    the whole bin, or a seeded sample of :data:`MEDIAN_SAMPLE` of its coordinates).

    ``times_touched``: one count per coordinate (the intercept left out); ``inspect``: the
    caught-up weights and effective rates of int64 coordinates.
    """
    if isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= MAX_SAMPLE:
        raise BatchError(f"must be an integer in [1, {MAX_SAMPLE}], got {sample!r}", field="sample")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise BatchError(f"must be an integer in [0, 2**63), got {seed!r}", field="seed")
    names = feature_names or {}
    bins, sizes = _bins(times_touched)
    measured = np.minimum(sizes, MEDIAN_SAMPLE)
    rng = np.random.default_rng(seed)
    # Each bin's measured coordinates: a seeded uniform draw of ranks within the bin.
    ranks = [np.sort(rng.choice(int(n), size=int(m), replace=False)) for n, m in
             zip(sizes, measured, strict=True)]  # fmt: skip
    starts = np.concatenate([[0], np.cumsum(measured)]).astype(np.int64)
    chosen = _pick(bins, np.concatenate(ranks).astype(np.int64), starts)
    weight, rate = inspect(chosen)
    counts = times_touched[chosen].astype(np.int64)

    points: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for k, wanted in enumerate(shares(measured, sample)):
        if sizes[k] == 0:
            continue
        within = slice(starts[k], starts[k + 1])
        summary.append(
            {
                "min_touches": 2**k,
                "max_touches": 2 ** (k + 1) - 1,
                "coordinates": int(sizes[k]),
                "measured": int(measured[k]),
                "median_times_touched": float(np.median(counts[within])),
                "median_effective_learning_rate": float(np.median(rate[within])),
                "median_abs_weight": float(np.median(np.abs(weight[within]))),
            }
        )
        # The points: a uniform subset of the bin's measured coordinates.
        picked = starts[k] + np.sort(rng.choice(int(measured[k]), size=int(wanted), replace=False))
        points.extend(
            {
                "index": int(chosen[j]),
                "feature": names.get(int(chosen[j])),
                "times_touched": int(counts[j]),
                "effective_learning_rate": float(rate[j]),
                "weight": float(weight[j]),
            }
            for j in picked
        )
    return {"touched": int(sizes.sum()), "sample": sample, "seed": seed,
            "points": points, "bins": summary}  # fmt: skip
