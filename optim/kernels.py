"""The compiled online loop, shared by every optimizer.

``kernels_for(spec)`` compiles (numba, ``nogil=True``) three loops around an optimizer's
per-coordinate ``constants``, ``step``, ``catch_up`` and ``effective_rate``:

``learn``
    Sequential progressive learning of a CSR batch: row ``i`` (global step ``t = t0 + i + 1``) is
    predicted with the model rows ``0..i-1`` produced, then learned. Under ``exact`` every present
    coordinate is first caught up to step ``t - 1`` (the zero-gradient steps it missed), so a row
    costs O(its non-zeros), never O(dim).
``margins``
    Decision values of a CSR batch on caught-up weights, without writing anything.
``inspect``
    Caught-up weight, state slots and effective rate of chosen coordinates, without writing
    anything.

State layout, chosen so one coordinate is one or two cache lines: ``table[j] = [weight, slot...]``
and ``counters[j] = [last_touched_step, times_touched]``. Row ``dim`` (the last) is the intercept:
value 1 in every row, never regularized.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numba as nb
import numpy as np

from optim.optimizers import OptimizerSpec

LAST_TOUCHED, TIMES_TOUCHED = 0, 1


@nb.njit(nogil=True, cache=True, error_model="numpy")
def sigmoid(margin: float) -> float:
    """Logistic function without overflow for any finite margin."""
    if margin >= 0.0:
        return 1.0 / (1.0 + math.exp(-margin))
    e = math.exp(margin)
    return e / (1.0 + e)


@dataclass(frozen=True)
class Kernels:
    learn: Callable[..., None]
    margins: Callable[..., None]
    inspect: Callable[..., None]


_COMPILED: dict[str, Kernels] = {}


def kernels_for(spec: OptimizerSpec) -> Kernels:
    """The compiled loops for ``spec`` (built once per process and optimizer)."""
    if spec.name not in _COMPILED:
        _COMPILED[spec.name] = _build(spec)
    return _COMPILED[spec.name]


def _build(spec: OptimizerSpec) -> Kernels:
    constants = spec.constants
    step = spec.step
    catch_up = spec.catch_up
    effective_rate = spec.effective_rate
    n_constants = spec.n_constants

    @nb.njit(nogil=True, inline="always", error_model="numpy")
    def load(table, j, buf):  # type: ignore[no-untyped-def]
        for q in range(buf.shape[0]):
            buf[q] = table[j, q + 1]

    @nb.njit(nogil=True, inline="always", error_model="numpy")
    def store(table, j, w, buf):  # type: ignore[no-untyped-def]
        table[j, 0] = w
        for q in range(buf.shape[0]):
            table[j, q + 1] = buf[q]

    @nb.njit(nogil=True, error_model="numpy")
    def learn(  # type: ignore[no-untyped-def]
        table, counters, hp, l2, t0, exact, fit_intercept,
        indptr, indices, values, labels, sample_weights, out_margin,
    ):  # fmt: skip
        intercept = table.shape[0] - 1
        buf = np.empty(table.shape[1] - 1)
        c = np.empty(n_constants)
        for i in range(indptr.shape[0] - 1):
            t = t0 + i + 1
            margin = table[intercept, 0] if fit_intercept else 0.0
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                if exact and counters[j, LAST_TOUCHED] < t - 1:
                    load(table, j, buf)
                    w = catch_up(table[j, 0], buf, counters[j, LAST_TOUCHED], t - 1, hp)
                    store(table, j, w, buf)
                    counters[j, LAST_TOUCHED] = t - 1
                margin += table[j, 0] * values[p]
            out_margin[i] = margin
            coefficient = (sigmoid(margin) - labels[i]) * sample_weights[i]
            constants(t, hp, c)
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                w = table[j, 0]
                load(table, j, buf)
                w = step(w, buf, coefficient * values[p] + l2 * w, c, hp, True)
                store(table, j, w, buf)
                counters[j, LAST_TOUCHED] = t
                counters[j, TIMES_TOUCHED] += 1
            if fit_intercept:
                load(table, intercept, buf)
                w = step(table[intercept, 0], buf, coefficient, c, hp, False)
                store(table, intercept, w, buf)
                counters[intercept, LAST_TOUCHED] = t
                counters[intercept, TIMES_TOUCHED] += 1

    @nb.njit(nogil=True, error_model="numpy")
    def caught_up(table, counters, hp, j, t, exact, buf):  # type: ignore[no-untyped-def]
        load(table, j, buf)
        if exact and counters[j, LAST_TOUCHED] < t:
            return catch_up(table[j, 0], buf, counters[j, LAST_TOUCHED], t, hp)
        return table[j, 0]

    @nb.njit(nogil=True, error_model="numpy")
    def margins(  # type: ignore[no-untyped-def]
        table, counters, hp, t, exact, fit_intercept, indptr, indices, values, out_margin
    ):
        intercept = table.shape[0] - 1
        buf = np.empty(table.shape[1] - 1)
        for i in range(indptr.shape[0] - 1):
            margin = table[intercept, 0] if fit_intercept else 0.0
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                if exact:
                    margin += caught_up(table, counters, hp, j, t, exact, buf) * values[p]
                else:
                    margin += table[j, 0] * values[p]
            out_margin[i] = margin

    @nb.njit(nogil=True, error_model="numpy")
    def inspect(  # type: ignore[no-untyped-def]
        table, counters, hp, t, exact, coordinates, out_weight, out_slots, out_rate
    ):
        buf = np.empty(table.shape[1] - 1)
        c = np.empty(n_constants)
        constants(max(t, 1), hp, c)
        for i in range(coordinates.shape[0]):
            out_weight[i] = caught_up(table, counters, hp, coordinates[i], t, exact, buf)
            for q in range(buf.shape[0]):
                out_slots[i, q] = buf[q]
            out_rate[i] = effective_rate(buf, c, hp)

    return Kernels(learn=learn, margins=margins, inspect=inspect)
