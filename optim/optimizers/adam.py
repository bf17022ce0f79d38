"""Adam: bias-corrected first and second moment estimates.

Update (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization"; ``torch.optim.Adam`` with
``amsgrad=False``)::

    m <- b1 * m + (1 - b1) * g
    v <- b2 * v + (1 - b2) * g**2
    w <- w - (lr / (1 - b1**t)) * m / (sqrt(v) / sqrt(1 - b2**t) + eps)

State slots: ``exp_avg`` (``m``), ``exp_avg_sq`` (``v``).
Effective learning rate (the factor on ``m``): ``(lr / bc1) / (sqrt(v) / sqrt(bc2) + eps)`` with
``bc1 = 1 - b1**t`` and ``bc2 = 1 - b2**t``.

Normalized (``u = scale * w``, gradient ``g / scale``, correction ``mc = sqrt(T / N)``; see
:mod:`optim.optimizers.base`): ``m`` averages corrected normalized gradients ``mc * g / scale``,
``v`` uncorrected normalized squares ``(g / scale)**2``, and the rule above moves ``u``. A grown
scale multiplies ``m`` by ``r``, ``v`` by ``r**2`` and ``w`` by ``r``; the catch-up below runs on
``u`` unchanged. Effective rate: the factor on ``m`` times ``mc / scale**2``.

Lazy catch-up over ``k`` zero-gradient steps ``s = t_last+1 .. t_last+k`` (``j = s - t_last``)::

    m <- b1**k m,   v <- b2**k v
    w <- w - sum_j (lr / (1 - b1**s)) * b1**j m / (sqrt(b2**j v) / sqrt(1 - b2**s) + eps)

The sum has no closed form because of ``eps``; four paths evaluate it, cheapest first:

- ``k = 1``: the term itself, from per-model tables of ``A[s] = lr/(1-b1**s)`` and
  ``B[s] = 1/sqrt(1-b2**s)`` (both exactly constant once ``b1**s`` and ``b2**s`` are below
  2**-60: the first ~41,600 steps at the default betas).
- ``sqrt(v_hat)/eps >= 2**11`` at every missed step (the usual case, whatever ``k``): expanding
  ``1/(y + eps) = sum_n (-eps)**n / y**(n+1)`` in ``eps/y`` makes the drift a sum over six
  orders ``n`` of series ``sum_i q_n**i A[s]/B[s]**(n+1)`` with ``q_n = b1/sqrt(b2)**(n+1)``.
  Their infinite tails ``D_n[s]`` are tabulated per step (one backward recursion when the model
  is made), so a finite sum is ``D_n[t_last] - q_n**k D_n[t_last+k]``: O(1) per catch-up, and the
  dropped orders weigh less than ``2**-66`` of each term.
- otherwise the terms are added from the tables in branch-free blocks of 16 (vectorized), until
  a geometric bound on all remaining terms (``moment_tail_bound``) is below 2**-60 of the sum;
  past the bias-correction phase the sum is ``(lr m/eps) * sum_i b1**i / (1 + x sqrt(b2)**i)``
  with ``x = sqrt(v)/eps``, which ``ratio_sum`` gives in a few closed-form geometric series.
- ``b1**k`` and ``b2**k`` come from split tables (no ``pow`` call).

The O(1) paths (``fast_drift``, written out in Adam's ``catch_up``) serve Nadam too, whose
drift has the same form with per-step weights ``W[s]`` in place of ``A[s]``: the tables hold any
``W[s]`` that is, past their last step, ``W_INF - W_GEO * RATE**(s+1)`` (Adam: ``W_GEO = 0``),
the drift sums then being ``D_n[s] = D_n[span] + BETA_n * (RATE**(span+1) - RATE**(s+1))``
(``moment_tables``).

The per-step tables stop at ``MAX_TABLE_STEPS``; betas with a longer bias-correction phase
(``b2`` above ~0.9997) take the general path (computing the bias corrections) past it.
Every path is tested against the zero-gradient steps themselves.
``lazy="frozen"`` keeps absent coordinates as they are and still uses the global ``t`` in the
bias corrections, as
``torch.optim.SparseAdam`` and TensorFlow's LazyAdam do (SparseAdam puts ``eps`` inside the bias
correction: ``sqrt(v) + eps`` is divided by ``sqrt(bc2)``).

>>> from optim import OnlineLogisticRegression
>>> OnlineLogisticRegression("adam", dim=8).optimizer_params
{'lr': 0.001, 'betas': (0.9, 0.999), 'eps': 1e-08, 'l2': 0.0}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numba as nb
import numpy as np

from optim.optimizers._series import (
    POWER_SPLIT,
    TAIL_TOLERANCE,
    data_address,
    geometric_decay,
    moment_tail_bound,
    ratio_sum,
    split_power,
    split_powers,
    unowned_view,
)
from optim.optimizers.base import (
    Hyperparameter,
    OptimizerSpec,
    l2_hyperparameter,
    rate_correction,
)

# Orders of the expansion of the drift in eps / sqrt(v_hat), and the smallest sqrt(v_hat) / eps
# at every missed step for which they leave less than (2**-16)**ORDERS = 2**-64 of each term.
ORDERS = 6
SERIES_MIN_RATIO = 2.0**11
LR, BETA1, BETA2, EPS, LOG_BETA1, SQRT_BETA2, LOG_SQRT_BETA2, STEADY_STEP = range(8)
TABLE_STEPS, TABLE_POWERS, TABLES_COMPLETE, SERIES_OK = 8, 9, 10, 11
# Step weights past the tables, W(s) = W_INF - W_GEO * RATE**(s+1) with RATE**s computed as
# RATE_BASE**(RATE_SCALE*s) and taken as 0 from RATE_HORIZON on; RATE_AT_SPAN = RATE**(span+1);
# W_SUP bounds every W(s) beyond the first (0: the weights decrease); EXTRA is where the
# optimizer's own entries start; BETA_SERIES holds BETA_n per order.
W_INF, W_GEO, RATE_BASE, RATE_SCALE, RATE_HORIZON, RATE_AT_SPAN, W_SUP, EXTRA = range(12, 20)
BETA_SERIES = 20
HEADER = BETA_SERIES + ORDERS
# Per-step tables stop here (~8 MB at ORDERS = 6): betas whose bias-correction phase is longer
# (b2 > ~0.9997) use the general path past the tables' end.
MAX_TABLE_STEPS = 1 << 17
BIAS_STEP, INVERSE_SQRT_BIAS2 = 0, 1


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def layout(hp: np.ndarray) -> tuple[int, int, int, int, int, int, int]:
    """Table sizes and offsets in ``hp`` (see pack): span, J, then the tables, interleaved so one
    lookup is one cache line: ``A[s], B[s]`` at ``bias + 2s``; ``b1**j, sqrt(b2)**j`` at
    ``moments + 2j``; ``D_n[s]`` at ``sums + ORDERS s + n``; ``q_n**j`` at
    ``ratios + ORDERS j + n``;
    and the split power tables of b1, b2 and RATE at ``split``."""
    span = int(hp[TABLE_STEPS])
    powers = int(hp[TABLE_POWERS])
    bias = HEADER
    moments = bias + 2 * (span + 1)
    sums = moments + 2 * (powers + 1)
    ratios = sums + ORDERS * (span + 1)
    return span, powers, bias, moments, sums, ratios, ratios + ORDERS * (powers + 1)


@nb.njit(nogil=True, cache=True, error_model="numpy")
def constants(t: int, hp: np.ndarray, c: np.ndarray) -> None:
    span, _, bias, _, _, _, _ = layout(hp)
    if t <= span or hp[TABLES_COMPLETE] != 0.0:
        s = min(t, span)  # complete tables end where both bias corrections have become 1
        c[BIAS_STEP] = hp[bias + 2 * s]
        c[INVERSE_SQRT_BIAS2] = hp[bias + 2 * s + 1]
    else:
        c[BIAS_STEP] = hp[LR] / (1.0 - geometric_decay(hp[BETA1], t))
        c[INVERSE_SQRT_BIAS2] = 1.0 / math.sqrt(1.0 - geometric_decay(hp[BETA2], t))


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def effective_rate(s: np.ndarray, c: np.ndarray, hp: np.ndarray) -> float:
    return c[BIAS_STEP] / (math.sqrt(s[1]) * c[INVERSE_SQRT_BIAS2] + hp[EPS])


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    s[0] = hp[BETA1] * s[0] + (1.0 - hp[BETA1]) * (rate_correction(c) * g)
    s[1] = hp[BETA2] * s[1] + (1.0 - hp[BETA2]) * g * g
    return w - effective_rate(s, c, hp) * s[0]


@nb.njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _tabulated_drift(hp: np.ndarray, sv: float, t_last: int, k: int) -> tuple[int, float, bool]:
    """The bias-correction phase of the drift per unit of ``m``, from the per-model tables.

    Blocks of 16 terms without branches (so the compiler vectorizes them), then the tail bound.
    Returns (terms taken, their sum, whether the bound says the rest is negligible).
    """
    b1, eps, sb2 = hp[BETA1], hp[EPS], hp[SQRT_BETA2]
    _, powers, bias, moments, _, _, _ = layout(hp)
    limit = min(k, powers)
    total = 0.0
    j = 0
    while j < limit:
        stop = min(limit, j + 16)
        for i in range(j + 1, stop + 1):
            a = bias + 2 * (t_last + i)
            p = moments + 2 * i
            total += hp[a] * hp[p] / (sv * hp[p + 1] * hp[a + 1] + eps)
        j = stop
        scale = hp[bias + 2 * (t_last + j + 1)]
        p = moments + 2 * j
        if j == k or moment_tail_bound(scale, hp[p], hp[p + 1], b1, sb2, sv, eps) <= (
            TAIL_TOLERANCE * abs(total)
        ):
            return j, total, True
    return j, total, False


@nb.njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _short_steady_drift(hp: np.ndarray, sv: float, k: int) -> float:
    """Per unit of ``m``, ``k <= 64`` steps once the bias corrections are 1: vectorizable."""
    _, _, _, moments, _, _, _ = layout(hp)
    total = 0.0
    for i in range(1, k + 1):
        total += hp[moments + 2 * i] / (sv * hp[moments + 2 * i + 1] + hp[EPS])
    return hp[LR] * total


@nb.njit(nogil=True, cache=True, error_model="numpy")
def zero_gradient_drift(
    hp_address: int, hp_size: int, m0: float, v0: float, t_last: int, k: int
) -> float:
    """How far ``k`` zero-gradient Adam steps after step ``t_last`` move the weight, term by
    term and through ``ratio_sum`` (the general path; see the module docstring).

    ``hp`` comes as an address (see ``unowned_view``) so that the catch-up's fast paths, which
    call this rarely, are not charged numba's reference counting of ``hp`` on every call.
    """
    hp = unowned_view(hp_address, hp_size)
    lr, b1, b2, eps, sb2 = hp[LR], hp[BETA1], hp[BETA2], hp[EPS], hp[SQRT_BETA2]
    sv = math.sqrt(v0)
    total = 0.0
    j = 0
    if t_last < hp[STEADY_STEP] and t_last + hp[TABLE_POWERS] + 1 <= hp[TABLE_STEPS]:
        j, per_unit, done = _tabulated_drift(hp, sv, t_last, k)
        total = per_unit * m0
        if done:
            return total
    elif t_last >= hp[STEADY_STEP] and k <= min(64, hp[TABLE_POWERS]):
        return _short_steady_drift(hp, sv, k) * m0
    a1 = b1**j
    a2 = sb2**j
    p1 = b1 ** (t_last + j)
    p2 = b2 ** (t_last + j)
    # Beyond the tables (b1**j < 2**-120 yet the tail bound unmet: huge |m|/eps): term by term.
    while j < k and (p1 >= TAIL_TOLERANCE or p2 >= TAIL_TOLERANCE):
        j += 1
        p1 *= b1
        p2 *= b2
        a1 *= b1
        a2 *= sb2
        total += lr / (1.0 - p1) * a1 * m0 / (sv * a2 / math.sqrt(1.0 - p2) + eps)
        tail = moment_tail_bound(lr * abs(m0) / (1.0 - p1 * b1), a1, a2, b1, sb2, sv, eps)
        if tail <= TAIL_TOLERANCE * abs(total):
            return total
    if j < k:
        x = sv * a2 / eps
        total += (
            lr * m0 * a1 / eps
            * ratio_sum(b1, hp[LOG_BETA1], sb2, hp[LOG_SQRT_BETA2], x, k - j)
        )  # fmt: skip
    return total


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def rate_power(hp: np.ndarray, s: int) -> float:
    """``RATE**s``: 0 from ``RATE_HORIZON`` on, else the split tables or ``pow``."""
    if s >= hp[RATE_HORIZON]:
        return 0.0
    if s < POWER_SPLIT * POWER_SPLIT:
        return split_power(hp, layout(hp)[6] + 4 * POWER_SPLIT, s)
    return math.pow(hp[RATE_BASE], hp[RATE_SCALE] * s)


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def moved_past_span(hp: np.ndarray, span: int, s: int) -> float:
    """``RATE**(span+1) - RATE**(s+1)``: per unit of ``W_GEO`` (or ``BETA_n``), how far ``W(s)``
    (or ``D_n(s)``) is from the tables' last entry; 0 within the tables or when ``W_GEO = 0``."""
    if s <= span or hp[W_GEO] == 0.0:
        return 0.0
    return hp[RATE_AT_SPAN] - rate_power(hp, s + 1)


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def fast_drift(
    hp_address: int, hp_size: int, m0: float, sv: float, t_last: int, k: int, moving: bool
) -> float:
    """``sum_j W[t_last+j] b1**j m0 / (sv sqrt(b2)**j B[t_last+j] + eps)`` by the O(1) paths of
    the module docstring (one term for ``k = 1``; the eps/sqrt(v_hat) series), or NaN when
    neither applies and the caller must take its general path.

    ``moving`` (a constant in each caller) says whether the weights move past the tables
    (``W_GEO != 0``). ``hp`` comes as an address (``unowned_view``): an inlined function that
    branches on an array keeps numba from pruning the reference counting of that array in the
    caller (~15 ns a catch-up)."""
    hp = unowned_view(hp_address, hp_size)
    span, powers, bias, moments, sums, ratios, _ = layout(hp)
    eps = hp[EPS]
    if k == 1 and (hp[TABLES_COMPLETE] != 0.0 or t_last < span):  # one term: cheaper alone
        a = bias + 2 * min(t_last + 1, span)
        weight = hp[a]
        if moving:
            weight += hp[W_GEO] * moved_past_span(hp, span, t_last + 1)
        return m0 * weight * hp[BETA1] / (sv * hp[SQRT_BETA2] * hp[a + 1] + eps)
    last = min(k, powers)
    if hp[SERIES_OK] != 0.0 and sv * hp[moments + 2 * last + 1] >= SERIES_MIN_RATIO * eps:
        # Every missed step has sqrt(v_hat)/eps >= 2**11: the expansion in eps/sqrt(v_hat).
        inverse = 1.0 / sv
        factor = inverse
        total = 0.0
        first = sums + ORDERS * min(t_last, span)
        end = sums + ORDERS * min(t_last + last, span)
        ratio = ratios + ORDERS * last
        for n in range(ORDERS):
            total += factor * (hp[first + n] - hp[ratio + n] * hp[end + n])
            factor *= -eps * inverse
        if moving and t_last + last > span:  # D_n past the tables' last step
            moved_first = moved_past_span(hp, span, t_last)
            moved_end = moved_past_span(hp, span, t_last + last)
            factor = inverse
            for n in range(ORDERS):
                total += factor * hp[BETA_SERIES + n] * (moved_first - hp[ratio + n] * moved_end)
                factor *= -eps * inverse
        if last == k or moment_tail_bound(
            max(hp[bias + 2 * min(t_last + last + 1, span)], hp[W_SUP]),
            hp[moments + 2 * last], hp[moments + 2 * last + 1],
            hp[BETA1], hp[SQRT_BETA2], sv, eps,
        ) <= TAIL_TOLERANCE * total:  # fmt: skip
            return m0 * total
    return math.nan


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    # No loop and no call taking an array (or returning a tuple) here, even on a rare path: any
    # of them keeps numba from pruning its reference counting of hp, ~20 ns on every call. The
    # O(1) paths are fast_drift's for W_GEO = 0, written out (as is the decay): through inlined
    # helpers Adam measured ~15-25% fewer rows/s on the click-stream benchmark.
    span, powers, bias, moments, sums, ratios, split = layout(hp)
    k = t_now - t_last
    m0, v0 = s[0], s[1]
    # b1**k, b2**k from the tables: a pow call costs ~35 ns, and even an untaken one slows this.
    if k <= powers:
        s[0] = m0 * hp[moments + 2 * k]
        s[1] = v0 * hp[moments + 2 * k + 1] * hp[moments + 2 * k + 1]
    elif k < POWER_SPLIT * POWER_SPLIT:
        s[0] = m0 * split_power(hp, split, k)
        s[1] = v0 * split_power(hp, split + 2 * POWER_SPLIT, k)
    else:
        s[0] = m0 * geometric_decay(hp[BETA1], k)
        s[1] = v0 * geometric_decay(hp[BETA2], k)
    if m0 == 0.0:
        return w
    eps = hp[EPS]
    sv = math.sqrt(v0)
    if k == 1 and (hp[TABLES_COMPLETE] != 0.0 or t_last < span):  # one term: cheaper alone
        a = bias + 2 * min(t_last + 1, span)
        return w - m0 * hp[a] * hp[BETA1] / (sv * hp[SQRT_BETA2] * hp[a + 1] + eps)
    last = min(k, powers)
    if hp[SERIES_OK] != 0.0 and sv * hp[moments + 2 * last + 1] >= SERIES_MIN_RATIO * eps:
        # Every missed step has sqrt(v_hat)/eps >= 2**11: the expansion in eps/sqrt(v_hat).
        inverse = 1.0 / sv
        factor = inverse
        total = 0.0
        first = sums + ORDERS * min(t_last, span)
        end = sums + ORDERS * min(t_last + last, span)
        ratio = ratios + ORDERS * last
        for n in range(ORDERS):
            total += factor * (hp[first + n] - hp[ratio + n] * hp[end + n])
            factor *= -eps * inverse
        if last == k or moment_tail_bound(
            hp[bias + 2 * min(t_last + last + 1, span)], hp[moments + 2 * last],
            hp[moments + 2 * last + 1],
            hp[BETA1], hp[SQRT_BETA2], sv, eps,
        ) <= TAIL_TOLERANCE * total:  # fmt: skip
            return w - m0 * total
    return w - zero_gradient_drift(data_address(hp), hp.shape[0], m0, v0, t_last, k)


@nb.njit(nogil=True, cache=True, error_model="numpy")
def _drift_sums(weights: np.ndarray, q: float, last: float) -> np.ndarray:
    """``D[s] = sum_{i>=1} q**i * weights[s+i]`` for every ``s``, given ``D`` at the last step
    (the weights beyond the array being known in closed form): ``D[s] = q (weights[s+1] +
    D[s+1])``, backwards."""
    sums = np.empty_like(weights)
    sums[-1] = last
    for s in range(weights.shape[0] - 2, -1, -1):
        sums[s] = q * (weights[s + 1] + sums[s + 1])
    return sums


def moment_tables(
    p: Mapping[str, Any],
    weights: Callable[[np.ndarray], np.ndarray],
    weights_steady: int,
    tail: tuple[float, float, float, float] | None = None,
    extra: Sequence[float] = (),
) -> np.ndarray:
    """Hyperparameters, derived constants, and the tables of the lazy catch-up, for per-step
    weights ``W[s] = weights(s)`` (Adam: ``lr/(1-b1**s)``) constant from ``weights_steady`` on,
    or, with ``tail = (W_INF, W_GEO, base, scale)``, equal to ``W_INF - W_GEO *
    base**(scale*(s+1))`` from there on. ``extra`` is appended (at ``hp[EXTRA]``).

    For every step ``s`` up to the end of both the weights' and the second bias correction's
    phase plus ``J`` (the last entry is where the closed form takes over): ``W[s]``,
    ``B[s] = 1/sqrt(1-b2**s)`` and, per order ``n < ORDERS``, ``D_n[s] = sum_{i>=1} q_n**i
    W[s+i] / B[s+i]**(n+1)`` with ``q_n = b1 / sqrt(b2)**(n+1)``; for ``j <= J``
    (``b1**J < 2**-120``) ``b1**j``, ``sqrt(b2)**j`` and ``q_n**j``; and ``b1**k``, ``b2**k``,
    ``RATE**k`` split at ``POWER_SPLIT``. About 2.5 MB at Adam's default betas.
    """
    b1, b2 = p["betas"]
    # First step from which the weights are steady and b2**t is below TAIL_TOLERANCE.
    steady = max(
        weights_steady, math.ceil(math.log(TAIL_TOLERANCE) / math.log(b2)) if b2 > 0 else 0
    )
    powers = min(math.ceil(-120 * math.log(2) / math.log(b1)) if b1 > 0 else 1, 1 << 16)
    complete = steady + powers + 1 <= MAX_TABLE_STEPS
    span = steady + powers + 1 if complete else MAX_TABLE_STEPS
    w_inf, w_geo, base, scale = tail if tail is not None else (p["lr"], 0.0, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):  # s = 0 is never looked up
        s = np.arange(span + 1, dtype=np.float64)
        weight = weights(s)
        bias2 = 1.0 / np.sqrt(1.0 - b2**s)
    rate_at_span = base ** (scale * (span + 1)) if w_geo else 0.0
    rate_horizon = math.inf
    if 0.0 < base < 1.0 and scale > 0.0:
        # Infinite for a scale so small (a momentum_decay down to 5e-324) that RATE**s stays
        # above the tolerance at every step a float holds.
        exponent = scale * math.log(base)
        horizon = math.log(TAIL_TOLERANCE) / exponent if exponent else math.inf
        if math.isfinite(horizon):
            # a float: a Python int past 2**64 (a tiny momentum_decay) would make the header
            # objects
            rate_horizon = float(math.ceil(horizon))
    j = np.arange(powers + 1, dtype=np.float64)
    sb2 = math.sqrt(b2)
    # sqrt(b2)**(n+1) is 0 for b2 below ~1e-108 (or 0): no series then
    ratios = [b1 / sb2 ** (n + 1) if sb2 ** (n + 1) > 0 else math.inf for n in range(ORDERS)]
    series_ok = complete and b1 > 0 and ratios[-1] < 1.0
    rate = base**scale
    beta_series = [w_geo * q * rate / (1.0 - q * rate) if series_ok else 0.0 for q in ratios]
    with np.errstate(invalid="ignore"):
        drift_sums = [
            _drift_sums(weight / bias2 ** (n + 1), q, w_inf * q / (1.0 - q) - beta * rate_at_span)
            if series_ok
            else np.zeros(span + 1)
            for n, (q, beta) in enumerate(zip(ratios, beta_series, strict=True))
        ]
    ratio_powers = [q**j if series_ok else np.zeros(powers + 1) for q in ratios]
    header = [
        p["lr"], b1, b2, p["eps"],
        math.log(b1) if b1 > 0 else -math.inf,
        sb2, math.log(b2) / 2 if b2 > 0 else -math.inf,
        float(steady), float(span), float(powers), float(complete), float(series_ok),
        w_inf, w_geo, base, scale, rate_horizon, rate_at_span,
        max(weight[1:].max(), w_inf) if w_geo else 0.0, 0.0, *beta_series,
    ]  # fmt: skip
    tables = [
        np.column_stack([weight, bias2]).ravel(),
        np.column_stack([b1**j, sb2**j]).ravel(),
        np.column_stack(drift_sums).ravel(),
        np.column_stack(ratio_powers).ravel(),
        split_powers(b1),
        split_powers(b2),
        split_powers(base, scale),
    ]
    header[EXTRA] = float(HEADER + sum(t.shape[0] for t in tables))
    return np.concatenate([header, *tables, extra])


def pack(p: Mapping[str, Any]) -> np.ndarray:
    """``moment_tables`` for ``W[s] = lr/(1-b1**s)``, steady once ``b1**s < 2**-60``."""
    b1 = p["betas"][0]
    steady = math.ceil(math.log(TAIL_TOLERANCE) / math.log(b1)) if b1 > 0 else 0
    return moment_tables(p, lambda s: p["lr"] / (1.0 - b1**s), steady)


def betas(default: tuple[float, float]) -> Hyperparameter:
    return Hyperparameter("betas", default, 0.0, 1.0, high_open=True)


SPEC = OptimizerSpec(
    name="adam",
    hyperparameters=(
        Hyperparameter("lr", 1e-3, 0.0, low_open=True),
        betas((0.9, 0.999)),
        Hyperparameter("eps", 1e-8, 0.0, low_open=True),
        l2_hyperparameter(),
    ),
    slots=("exp_avg", "exp_avg_sq"),
    nonnegative_slots=("exp_avg_sq",),
    slot_gradient_powers=(1, 2),
    step=step,
    catch_up=catch_up,
    effective_rate=effective_rate,
    pack=pack,
    constants=constants,
    n_constants=2,
)
