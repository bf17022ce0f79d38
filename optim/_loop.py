"""Template of the compiled online loop shared by every optimizer (see :mod:`optim.kernels`).

Not used directly: :func:`optim.kernels.kernels_for` writes, once per optimizer and update
form, a module made of a header binding ``constants``, ``step``, ``catch_up``, ``effective_rate``,
``accumulate``, ``N_CONSTANTS`` and ``N_SLOTS`` (a compile-time constant: the slot copies unroll)
to that optimizer's, and the form's compile-time switches (``NORMALIZED``, ``INVARIANT``, with
``SCALE_FREE`` and ``SLOT_POWERS`` from the optimizer), followed by the code below, so numba can
cache the compiled loops on disk like any module-level function (it cannot cache closures).

Normalized models (see :mod:`optim.optimizers.base`) have one more column, ``SCALE`` (the largest
``|x|`` seen, 0 until a nonzero value), and ``norm_sums`` = ``[T, N]``: the rows' total weight and
their weighted sum of ``sum_j (x_j / scale_j)**2`` (the intercept counts 1). A row first grows the
scales of its coordinates (restating their state), then adds to ``T`` and ``N``, then steps every
coordinate on ``u = scale * w`` with gradient ``g / scale`` and the correction ``sqrt(T / N)``
(``T / N`` for optimizers that are not scale-free) after the step's constants. A coordinate whose
scale is 0 has never had a nonzero gradient: it takes no steps (its state stays the initial one).

Importance-invariant models first add the row's gradients to every present coordinate's state
(``accumulate``, weight ``h``), then move the margin in closed form along the rates that leaves
(Karampatziakis & Langford 2011): with ``y = +-1``, ``z = y * margin`` and ``ppu = sum_j rate_j
x_j**2``, the loss's flow ``dz/dh = ppu / (1 + e**z)`` integrates to ``z + e**z = z0 + e**z0 + h
ppu``; each weight moves by its rate times ``x_j`` times the margin's change over ``ppu``.
"""

import numba as nb
import numpy as np

constants = step = catch_up = effective_rate = accumulate = None  # bound by the generated header
N_CONSTANTS = N_SLOTS = 0
NORMALIZED = INVARIANT = SCALE_FREE = False
SLOT_POWERS = np.zeros(0, dtype=np.int64)
# --- template body: everything below is copied into the generated module ---
from optim._prefetch import prefetch_row  # noqa: E402

LAST_TOUCHED, TIMES_TOUCHED = 0, 1
SCALE = N_SLOTS + 1  # normalized models' last column
N_COLUMNS = N_SLOTS + 1 + NORMALIZED
TOTAL_WEIGHT, NORM_SUM = 0, 1  # norm_sums
# Work before the steps: pre-images saved there, not in the step loop.
STAGED = NORMALIZED or INVARIANT


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


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def zero_gradient_steps(table, j, buf, t_last, t_now, hp):
    """The weight after the steps ``t_last+1 .. t_now``; ``buf`` holds the slots, caught up."""
    if NORMALIZED:
        scale = table[j, SCALE]
        if scale == 0.0:
            return table[j, 0]
        return catch_up(table[j, 0] * scale, buf, t_last, t_now, hp) / scale
    return catch_up(table[j, 0], buf, t_last, t_now, hp)


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def stepped(table, j, buf, g, c, hp, regularize):
    """The weight after a step with gradient ``g``; ``buf`` holds the slots, updated."""
    if NORMALIZED:
        scale = table[j, SCALE]
        if scale == 0.0:
            return table[j, 0]
        return step(table[j, 0] * scale, buf, g / scale, c, hp, regularize) / scale
    return step(table[j, 0], buf, g, c, hp, regularize)


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def rate_of(table, j, buf, c, hp):
    """The factor on a raw gradient (for momentum methods: on the first moment, corrected and
    normalized); a normalized coordinate yet without scale: the factor on a unit value."""
    rate = effective_rate(buf, c, hp)
    if NORMALIZED:
        scale = table[j, SCALE]
        rate *= c[N_CONSTANTS] / (scale * scale) if scale > 0.0 else c[N_CONSTANTS]
    return rate


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def rescaled(table, j, magnitude):
    """Grow coordinate ``j``'s scale to ``magnitude`` if above it, restating its weight and
    slots as if the new scale had held from the start; return ``(magnitude / scale)**2``."""
    scale = table[j, SCALE]
    if magnitude > scale:
        if scale > 0.0:
            r = scale / magnitude
            table[j, 0] *= r if SCALE_FREE else r * r
            for q in range(N_SLOTS):
                if SLOT_POWERS[q] == 1:
                    table[j, q + 1] *= r
                elif SLOT_POWERS[q] == 2:
                    table[j, q + 1] *= r * r
        table[j, SCALE] = magnitude
        return 1.0
    if scale == 0.0:
        return 0.0
    ratio = magnitude / scale
    return ratio * ratio


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def rate_correction_of(norm_sums):
    if not norm_sums[NORM_SUM] > 0.0:
        return 1.0
    ratio = norm_sums[TOTAL_WEIGHT] / norm_sums[NORM_SUM]
    return np.sqrt(ratio) if SCALE_FREE else ratio


@nb.njit(nogil=True, cache=True, error_model="numpy")
def margin_moved(z0, distance):
    """The root ``d >= 0`` of ``d + e**z0 * (e**d - 1) = distance`` (``distance >= 0``): how far
    the importance-aware flow moves ``z = y * margin``. Newton's iterates from above an upper
    bound decrease to the root (the function is convex and increasing), until rounding."""
    if z0 > 700.0:  # e**z0 overflows; the root is distance * e**-z0 to within e**-700
        return distance * np.exp(-z0)
    ez0 = np.exp(z0)
    d = min(distance, np.log1p(distance * np.exp(-z0)))
    for _ in range(200):
        grown = ez0 * np.expm1(d) if d < 1.0 else np.exp(z0 + d) - ez0
        change = (d + grown - distance) / (1.0 + np.exp(z0 + d))
        if not change > 0.0:
            break
        d -= change
    return d


@nb.njit(nogil=True, cache=True, error_model="numpy")
def importance_aware_coefficient(margin, label, h, ppu):
    """The loss's factor on ``rate_j * x_j`` that moves the margin as a row of weight ``h``
    flowing along rates of total ``ppu`` (see the module docstring)."""
    if not ppu > 0.0:
        return (sigmoid(margin) - label) * h
    y = 1.0 if label > 0.5 else -1.0
    return -y * margin_moved(y * margin, h * ppu) / ppu


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
    for q in range(N_COLUMNS):
        finite &= np.isfinite(table[j, q])  # read back: a float32 table may overflow
    return finite


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def save(table, counters, j, n_saved, saved_state, saved_where):
    saved_where[n_saved, 0] = j
    saved_where[n_saved, 1] = counters[j, 0]
    saved_where[n_saved, 2] = counters[j, 1]
    for q in range(N_COLUMNS):
        saved_state[n_saved, q] = table[j, q]
    return n_saved + 1


@nb.njit(nogil=True, cache=True, error_model="numpy")
def restore(table, counters, n_saved, saved_state, saved_where):
    for k in range(n_saved - 1, -1, -1):  # latest first: a coordinate's first pre-image wins
        j = saved_where[k, 0]
        counters[j, 0] = saved_where[k, 1]
        counters[j, 1] = saved_where[k, 2]
        for q in range(N_COLUMNS):
            table[j, q] = saved_state[k, q]


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def nonfinite_at(table, j, refusal):
    for q in range(N_COLUMNS):
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
    out_margin, out_refusals, saved_state, saved_where, norm_sums,
):  # fmt: skip
    """Learn the batches ``batch_rows[b]:batch_rows[b + 1]`` of the rows in order. A batch a row
    of which would make anything it writes non-finite (weights, slots, the intercept, catch-up
    included), or whose ``(|margin| + 1) * weight`` exceeds LOSS_LIMIT, is undone whole from the
    pre-images kept in ``saved_state``/``saved_where`` (room: see ``OnlineLogisticRegression.
    _pre_images``) and reported in its row of ``out_refusals``; the next batch starts from the
    state before it. ``norm_sums``: normalized models' ``[T, N]``, restored with the state.

    A row whose ``holdout`` is HELD_OUT is only scored, on the model as it stands (no catch-up
    written, no step taken: the state is as if the row never came); one that is BY_MODEL is
    held out when it is the model's ``seen``-th row (rows learned or held out since the model
    began, this one included) with ``holdout_every`` dividing it, and its entry is set to what
    was decided. Returns how many rows were held out (0: ``holdout`` need not be read)."""
    intercept = table.shape[0] - 1
    n_held = 0
    buf = np.empty(N_SLOTS)
    c = np.empty(N_CONSTANTS + 1)
    c[N_CONSTANTS] = 1.0  # the rate correction, normalized models' own
    sums_before = norm_sums.copy()
    n_rows = indptr.shape[0] - 1
    n_batches = batch_rows.shape[0] - 1
    t_before = t0  # the step before the batch
    for b in range(n_batches):
        # What the batch writes, as it was before (saved before the batch first writes it),
        # so that a batch a row of which cannot be learned is undone whole.
        n_saved = save(table, counters, intercept, 0, saved_state, saved_where)
        sums_before[:] = norm_sums
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
                norm_sums[:] = sums_before
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
                    w = zero_gradient_steps(table, j, buf, counters[j, LAST_TOUCHED], t - 1, hp)
                    store(table, j, w, buf)
                    counters[j, LAST_TOUCHED] = t - 1
                    finite &= is_finite(table, j)
                margin += table[j, 0] * values[p]
            out_margin[i] = margin
            if finite and (abs(margin) + 1.0) * sample_weights[i] <= LOSS_LIMIT:
                h = sample_weights[i]
                coefficient = (sigmoid(margin) - labels[i]) * h
                constants(t, hp, c)
                if STAGED:
                    n_saved = staged(
                        table, counters, indices, values, start, stop, intercept, fit_intercept,
                        t_before, h, n_saved, saved_state, saved_where, norm_sums, c,
                    )  # fmt: skip
                if INVARIANT:
                    ppu = accumulated(
                        table, indices, values, start, stop, intercept, fit_intercept,
                        sigmoid(margin) - labels[i], l2, h, buf, c, hp,
                    )  # fmt: skip
                    coefficient = importance_aware_coefficient(margin, labels[i], h, ppu)
                for p in range(start, stop):
                    j = indices[p]
                    if not STAGED:
                        # kept unless the batch wrote it already: no branch to mispredict
                        n_saved = save(table, counters, j, n_saved, saved_state, saved_where)
                        n_saved -= counters[j, LAST_TOUCHED] > t_before
                    load(table, j, buf)
                    g = coefficient * values[p] + l2 * table[j, 0]
                    if INVARIANT:
                        w = invariant_step(table, j, buf, g + (h - 1.0) * l2 * table[j, 0], c, hp)
                    else:
                        w = stepped(table, j, buf, g, c, hp, True)
                    store(table, j, w, buf)
                    counters[j, LAST_TOUCHED] = t
                    counters[j, TIMES_TOUCHED] += 1
                    finite &= is_finite(table, j)
                if fit_intercept:
                    load(table, intercept, buf)
                    if INVARIANT:
                        w = invariant_step(table, intercept, buf, coefficient, c, hp)
                    else:
                        w = stepped(table, intercept, buf, coefficient, c, hp, False)
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
            norm_sums[:] = sums_before
            break
        if refusal[REFUSED_ROW] < 0:
            t_before = t
            seen += batch_rows[b + 1] - batch_rows[b]
    return n_held


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def staged(
    table, counters, indices, values, start, stop, intercept, fit_intercept, t_before, h,
    n_saved, saved_state, saved_where, norm_sums, c,
):  # fmt: skip
    """Before the steps of a row: save the pre-images of its coordinates (kept unless the batch
    wrote them already) and, normalized, grow their scales, add the row to ``norm_sums`` and put
    the rate correction after the constants in ``c``."""
    norm = 0.0
    for p in range(start, stop):
        j = indices[p]
        n_saved = save(table, counters, j, n_saved, saved_state, saved_where)
        n_saved -= counters[j, LAST_TOUCHED] > t_before
        if NORMALIZED:
            norm += rescaled(table, j, abs(values[p]))
    if NORMALIZED:
        if fit_intercept:
            norm += rescaled(table, intercept, 1.0)
        norm_sums[TOTAL_WEIGHT] += h
        norm_sums[NORM_SUM] += h * norm
        c[N_CONSTANTS] = rate_correction_of(norm_sums)
    return n_saved


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def accumulated(
    table, indices, values, start, stop, intercept, fit_intercept, residual, l2, h, buf, c, hp,
):  # fmt: skip
    """Importance-invariant: add ``h`` rows of the row's gradients (at weight 1) to its
    coordinates' state; return ``ppu = sum_j rate_j x_j**2`` over the rates that leaves."""
    ppu = 0.0
    for p in range(start, stop):
        j = indices[p]
        load(table, j, buf)
        accumulate(buf, normalized_gradient(table, j, residual * values[p] + l2 * table[j, 0]), h)
        store(table, j, table[j, 0], buf)
        x = normalized_gradient(table, j, values[p])  # the value in normalized units
        ppu += effective_rate(buf, c, hp) * c[N_CONSTANTS] * x * x
    if fit_intercept:
        load(table, intercept, buf)
        accumulate(buf, normalized_gradient(table, intercept, residual), h)
        store(table, intercept, table[intercept, 0], buf)
        x = normalized_gradient(table, intercept, 1.0)
        ppu += effective_rate(buf, c, hp) * c[N_CONSTANTS] * x * x
    return ppu


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def invariant_step(table, j, buf, g, c, hp):
    """The weight after a move along the coordinate's rate (corrected, normalized) times
    ``g``: the gradient ``g / scale`` in normalized units, moving ``w`` by the change in ``u``
    over the scale (no ``scale**-2`` factor, which overflows for tiny scales)."""
    moved = effective_rate(buf, c, hp) * c[N_CONSTANTS] * normalized_gradient(table, j, g)
    if NORMALIZED:
        scale = table[j, SCALE]
        return table[j, 0] - moved / scale if scale > 0.0 else table[j, 0]
    return table[j, 0] - moved


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def normalized_gradient(table, j, g):
    if NORMALIZED:
        scale = table[j, SCALE]
        return g / scale if scale > 0.0 else 0.0
    return g


@nb.njit(nogil=True, cache=True, error_model="numpy")
def caught_up(table, counters, hp, j, t, exact, buf):
    load(table, j, buf)
    if exact and counters[j, LAST_TOUCHED] < t:
        return zero_gradient_steps(table, j, buf, counters[j, LAST_TOUCHED], t, hp)
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
def inspect(
    table, counters, hp, t, exact, coordinates, out_weight, out_slots, out_rate, norm_sums
):  # fmt: skip
    buf = np.empty(N_SLOTS)
    c = np.empty(N_CONSTANTS + 1)
    constants(max(t, 1), hp, c)
    c[N_CONSTANTS] = rate_correction_of(norm_sums) if NORMALIZED else 1.0
    for i in range(coordinates.shape[0]):
        j = coordinates[i]
        out_weight[i] = caught_up(table, counters, hp, j, t, exact, buf)
        for q in range(buf.shape[0]):
            out_slots[i, q] = buf[q]
        if NORMALIZED:
            out_slots[i, N_SLOTS] = table[j, SCALE]
        out_rate[i] = rate_of(table, j, buf, c, hp)
