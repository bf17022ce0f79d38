"""Template of the compiled online loop shared by every optimizer (see :mod:`optim.kernels`).

Not used directly: :func:`optim.kernels.kernels_for` writes, once per optimizer, a module made of
a header binding ``constants``, ``step``, ``catch_up``, ``effective_rate``, ``N_CONSTANTS`` and
``N_SLOTS`` (a compile-time constant: the slot copies unroll) to that optimizer's, followed by the
code below, so numba can cache the compiled loops on disk like any module-level function (it
cannot cache closures).
"""

import numba as nb
import numpy as np

constants = step = catch_up = effective_rate = None  # bound by the generated header
N_CONSTANTS = N_SLOTS = 0
# --- template body: everything below is copied into the generated module ---
from optim._prefetch import prefetch_row  # noqa: E402

LAST_TOUCHED, TIMES_TOUCHED = 0, 1


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def load(table, j, buf):
    for q in range(N_SLOTS):
        buf[q] = table[j, q + 1]


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def store(table, j, w, buf):
    table[j, 0] = w
    for q in range(N_SLOTS):
        table[j, q + 1] = buf[q]


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def prefetch_rows(table, counters, indices, start, stop):
    # The next row's coordinates are effectively random lines of megabytes of state: asking for
    # them while this row computes overlaps their memory misses instead of paying them in turn.
    for p in range(start, stop):
        prefetch_row(table, indices[p])
        prefetch_row(counters, indices[p])


@nb.njit(nogil=True, cache=True, error_model="numpy")
def sigmoid(margin):
    if margin >= 0.0:
        return 1.0 / (1.0 + np.exp(-margin))
    e = np.exp(margin)
    return e / (1.0 + e)


@nb.njit(nogil=True, cache=True, error_model="numpy")
def learn(
    table, counters, hp, l2, t0, exact, fit_intercept,
    indptr, indices, values, labels, sample_weights, out_margin,
):  # fmt: skip
    intercept = table.shape[0] - 1
    buf = np.empty(N_SLOTS)
    c = np.empty(N_CONSTANTS)
    n_rows = indptr.shape[0] - 1
    for i in range(n_rows):
        t = t0 + i + 1
        if i + 1 < n_rows:
            prefetch_rows(table, counters, indices, indptr[i + 1], indptr[i + 2])
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


@nb.njit(nogil=True, cache=True, error_model="numpy")
def caught_up(table, counters, hp, j, t, exact, buf):
    load(table, j, buf)
    if exact and counters[j, LAST_TOUCHED] < t:
        return catch_up(table[j, 0], buf, counters[j, LAST_TOUCHED], t, hp)
    return table[j, 0]


@nb.njit(nogil=True, cache=True, error_model="numpy")
def margins(table, counters, hp, t, exact, fit_intercept, indptr, indices, values, out_margin):
    intercept = table.shape[0] - 1
    buf = np.empty(N_SLOTS)
    n_rows = indptr.shape[0] - 1
    for i in range(n_rows):
        if i + 1 < n_rows:
            prefetch_rows(table, counters, indices, indptr[i + 1], indptr[i + 2])
        margin = table[intercept, 0] if fit_intercept else 0.0
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            if exact:
                margin += caught_up(table, counters, hp, j, t, exact, buf) * values[p]
            else:
                margin += table[j, 0] * values[p]
        out_margin[i] = margin


@nb.njit(nogil=True, cache=True, error_model="numpy")
def inspect(table, counters, hp, t, exact, coordinates, out_weight, out_slots, out_rate):
    buf = np.empty(N_SLOTS)
    c = np.empty(N_CONSTANTS)
    constants(max(t, 1), hp, c)
    for i in range(coordinates.shape[0]):
        out_weight[i] = caught_up(table, counters, hp, coordinates[i], t, exact, buf)
        for q in range(buf.shape[0]):
            out_slots[i, q] = buf[q]
        out_rate[i] = effective_rate(buf, c, hp)
