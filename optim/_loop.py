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


# A refused batch's row of ``learn``'s ``out_refusals``: its first row that could not be learned
# (-1: none, the batch was learned), why, and the first coordinate and slot (0: the weight) that
# the row made non-finite.
REFUSED_ROW, REASON, COORDINATE, SLOT = 0, 1, 2, 3
NONFINITE_STATE, LOSS_BEYOND_LIMIT = 0, 1
# A learned row's ``(|margin| + 1) * weight``, above its weighted log-loss, is at most this: the
# progressive metrics' sums over 2**64 such rows stay below 2e299, finite.
LOSS_LIMIT = 1e280
# A row's entry in ``learn``'s ``holdout``: the model's ``holdout_every`` decides (the loop then
# writes what it decided), learned, or held out (scored on the model as it stands, not learned).
BY_MODEL, LEARNED, HELD_OUT = 0, 1, 2


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def is_finite(table, j):
    finite = True
    for q in range(N_SLOTS + 1):
        finite &= np.isfinite(table[j, q])  # read back: a float32 table may overflow
    return finite


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def save(table, counters, j, n_saved, saved_state, saved_where):
    saved_where[n_saved, 0] = j
    saved_where[n_saved, 1] = counters[j, 0]
    saved_where[n_saved, 2] = counters[j, 1]
    for q in range(N_SLOTS + 1):
        saved_state[n_saved, q] = table[j, q]
    return n_saved + 1


@nb.njit(nogil=True, cache=True, error_model="numpy")
def restore(table, counters, n_saved, saved_state, saved_where):
    for k in range(n_saved - 1, -1, -1):  # latest first: a coordinate's first pre-image wins
        j = saved_where[k, 0]
        counters[j, 0] = saved_where[k, 1]
        counters[j, 1] = saved_where[k, 2]
        for q in range(N_SLOTS + 1):
            table[j, q] = saved_state[k, q]


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def nonfinite_at(table, j, refusal):
    for q in range(N_SLOTS + 1):
        if not np.isfinite(table[j, q]):
            refusal[COORDINATE], refusal[SLOT] = j, q
            return True
    return False


@nb.njit(nogil=True, cache=True, error_model="numpy")
def find_nonfinite(table, indices, start, stop, intercept, fit_intercept, refusal):
    for p in range(start, stop):
        if nonfinite_at(table, indices[p], refusal):
            return
    if fit_intercept:
        nonfinite_at(table, intercept, refusal)


@nb.njit(nogil=True, cache=True, error_model="numpy")
def learn(
    table, counters, hp, l2, t0, exact, fit_intercept,
    indptr, indices, values, labels, sample_weights, batch_rows, holdout, holdout_every, seen,
    out_margin, out_refusals, saved_state, saved_where,
):  # fmt: skip
    """Learn the batches ``batch_rows[b]:batch_rows[b + 1]`` of the rows in order. A batch a row
    of which would make anything it writes non-finite (weights, slots, the intercept, catch-up
    included), or whose ``(|margin| + 1) * weight`` exceeds LOSS_LIMIT, is undone whole from the
    pre-images kept in ``saved_state``/``saved_where`` (room: see ``OnlineLogisticRegression.
    _pre_images``) and reported in its row of ``out_refusals``; the next batch starts from the
    state before it.

    A row whose ``holdout`` is HELD_OUT is only scored, on the model as it stands (no catch-up
    written, no step taken: the state is as if the row never came); one that is BY_MODEL is
    held out when it is the model's ``seen``-th row (rows learned or held out since the model
    began, this one included) with ``holdout_every`` dividing it, and its entry is set to what
    was decided. Returns how many rows were held out (0: ``holdout`` need not be read)."""
    intercept = table.shape[0] - 1
    n_held = 0
    buf = np.empty(N_SLOTS)
    c = np.empty(N_CONSTANTS)
    n_rows = indptr.shape[0] - 1
    n_batches = batch_rows.shape[0] - 1
    t_before = t0  # the step before the batch
    for b in range(n_batches):
        # What the batch writes, as it was before (saved before the batch first writes it),
        # so that a batch a row of which cannot be learned is undone whole.
        n_saved = save(table, counters, intercept, 0, saved_state, saved_where)
        refusal = out_refusals[b]
        t = t_before
        for i in range(batch_rows[b], batch_rows[b + 1]):
            if i + 1 < n_rows:
                prefetch_rows(table, counters, indices, indptr[i + 1], indptr[i + 2])
            start, stop = indptr[i], indptr[i + 1]
            if holdout[i] == BY_MODEL:
                held = holdout_every > 0 and (seen + i - batch_rows[b] + 1) % holdout_every == 0
                holdout[i] = HELD_OUT if held else LEARNED
            if holdout[i] == HELD_OUT:
                n_held += 1
                margin = row_margin(table, counters, hp, t, exact, fit_intercept, indices,
                                    values, start, stop, buf)  # fmt: skip
                out_margin[i] = margin
                if (abs(margin) + 1.0) * sample_weights[i] <= LOSS_LIMIT:
                    continue
                refusal[REFUSED_ROW], refusal[REASON] = i - batch_rows[b], LOSS_BEYOND_LIMIT
                restore(table, counters, n_saved, saved_state, saved_where)
                break
            t += 1
            finite = True
            margin = table[intercept, 0] if fit_intercept else 0.0
            for p in range(start, stop):
                j = indices[p]
                if exact and counters[j, LAST_TOUCHED] < t - 1:
                    if counters[j, LAST_TOUCHED] <= t_before:  # (again below if at t_before)
                        n_saved = save(table, counters, j, n_saved, saved_state, saved_where)
                    load(table, j, buf)
                    w = catch_up(table[j, 0], buf, counters[j, LAST_TOUCHED], t - 1, hp)
                    store(table, j, w, buf)
                    counters[j, LAST_TOUCHED] = t - 1
                    finite &= is_finite(table, j)
                margin += table[j, 0] * values[p]
            out_margin[i] = margin
            if finite and (abs(margin) + 1.0) * sample_weights[i] <= LOSS_LIMIT:
                coefficient = (sigmoid(margin) - labels[i]) * sample_weights[i]
                constants(t, hp, c)
                for p in range(start, stop):
                    j = indices[p]
                    # kept unless the batch wrote it already: no branch to mispredict
                    n_saved = save(table, counters, j, n_saved, saved_state, saved_where)
                    n_saved -= counters[j, LAST_TOUCHED] > t_before
                    w = table[j, 0]
                    load(table, j, buf)
                    w = step(w, buf, coefficient * values[p] + l2 * w, c, hp, True)
                    store(table, j, w, buf)
                    counters[j, LAST_TOUCHED] = t
                    counters[j, TIMES_TOUCHED] += 1
                    finite &= is_finite(table, j)
                if fit_intercept:
                    load(table, intercept, buf)
                    w = step(table[intercept, 0], buf, coefficient, c, hp, False)
                    store(table, intercept, w, buf)
                    counters[intercept, LAST_TOUCHED] = t
                    counters[intercept, TIMES_TOUCHED] += 1
                    finite &= is_finite(table, intercept)
                if finite:
                    continue
            refusal[REFUSED_ROW] = i - batch_rows[b]
            if finite:
                refusal[REASON] = LOSS_BEYOND_LIMIT
            else:
                refusal[REASON] = NONFINITE_STATE
                find_nonfinite(table, indices, start, stop, intercept, fit_intercept, refusal)
            restore(table, counters, n_saved, saved_state, saved_where)
            break
        if refusal[REFUSED_ROW] < 0:
            t_before = t
            seen += batch_rows[b + 1] - batch_rows[b]
    return n_held


@nb.njit(nogil=True, cache=True, error_model="numpy")
def caught_up(table, counters, hp, j, t, exact, buf):
    load(table, j, buf)
    if exact and counters[j, LAST_TOUCHED] < t:
        return catch_up(table[j, 0], buf, counters[j, LAST_TOUCHED], t, hp)
    return table[j, 0]


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def row_margin(table, counters, hp, t, exact, fit_intercept, indices, values, start, stop, buf):
    """The margin of the row ``indices[start:stop]`` on the weights caught up to step ``t``,
    writing nothing."""
    margin = table[table.shape[0] - 1, 0] if fit_intercept else 0.0
    for p in range(start, stop):
        j = indices[p]
        if exact:
            margin += caught_up(table, counters, hp, j, t, exact, buf) * values[p]
        else:
            margin += table[j, 0] * values[p]
    return margin


@nb.njit(nogil=True, cache=True, error_model="numpy")
def margins(table, counters, hp, t, exact, fit_intercept, indptr, indices, values, out_margin):
    buf = np.empty(N_SLOTS)
    n_rows = indptr.shape[0] - 1
    for i in range(n_rows):
        if i + 1 < n_rows:
            prefetch_rows(table, counters, indices, indptr[i + 1], indptr[i + 2])
        out_margin[i] = row_margin(
            table, counters, hp, t, exact, fit_intercept, indices, values, indptr[i],
            indptr[i + 1], buf,
        )  # fmt: skip


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
