"""Nadam: Adam with Nesterov momentum and a momentum warm-up schedule.

Update (Dozat 2016, "Incorporating Nesterov Momentum into Adam"; ``torch.optim.NAdam``)::

    mu_t    = b1 * (1 - 0.5 * 0.96**(t * momentum_decay))
    mu_next = b1 * (1 - 0.5 * 0.96**((t + 1) * momentum_decay))
    P_t     = mu_1 * ... * mu_t                      (global: every coordinate shares it)
    m <- b1 * m + (1 - b1) * g
    v <- b2 * v + (1 - b2) * g**2
    d  = sqrt(v / (1 - b2**t)) + eps
    w <- w - lr (1 - mu_t) / (1 - P_t) * g / d - lr mu_next / (1 - P_t mu_next) * m / d

State slots: ``exp_avg`` (``m``), ``exp_avg_sq`` (``v``).
Effective learning rate (the multiplier on ``m``): ``lr mu_next / (1 - P_t mu_next) / d``.
Normalized (on ``scale * w``, correction ``mc = sqrt(T / N)``; see :mod:`optim.optimizers.base`):
``m`` and the direct ``g`` term take the corrected normalized gradient ``mc * g / scale``, ``v``
the uncorrected ``(g / scale)**2``. A grown scale multiplies ``m`` by ``r``, ``v`` by ``r**2``
and ``w`` by ``r``. Effective rate: the multiplier on ``m`` times ``mc / scale**2``.
``P_t`` is tabulated once per model (it falls below 2**-80 within a few hundred steps, after which
``1 - P_t`` is exactly 1) and travels in the packed hyperparameters.

Lazy catch-up over ``k`` zero-gradient steps ``s = t_last+1 .. t_last+k`` (``j = s - t_last``):
``m <- b1**k m``, ``v <- b2**k v``, and the ``m`` term still moves the weight::

    w <- w - sum_j W[s] * b1**j m / (sqrt(b2**j v) / sqrt(1 - b2**s) + eps),
    W[s] = lr mu_{s+1} / (1 - P_s mu_{s+1})

which is Adam's drift with the weights ``W[s]`` in place of ``lr / (1 - b1**s)``, so it takes
Adam's O(1) paths (``adam.fast_drift``) over tables built for these weights. ``W[s]`` keeps
changing for ~2.5e5 steps (``0.96**(s psi)`` reaches 2**-60 at ``s ~ 41.6/(psi 0.0408)``), but once
``P_s`` is negligible it is ``lr b1 - (lr b1 / 2) * 0.96**((s+1) psi)``: a constant minus a
geometric sequence. So the per-step tables stop, like Adam's, where ``P_s`` and ``b2**s`` are
below 2**-60 (plus the ~790 steps of ``b1**j``); past them the drift sums are the same constant
minus a geometric sequence, from split tables of ``0.96**(k psi)`` (see ``adam.moment_tables``).
When neither O(1) path applies (``sqrt(v_hat)/eps`` below 2**11 at some missed step): past those
phases the drift is ``(m/eps) (lr b1 R(b1) - (lr b1/2) 0.96**((t_last+1) psi) R(b1 r))`` with
``r = 0.96**psi`` and ``R(b) = sum_i b**i / (1 + x sqrt(b2)**i)``, ``x = sqrt(v)/eps``
(``ratio_sum``); before them the steps are taken one by one (``mu_next``'s power advanced by one
multiplication per step), stopping when the geometric bound ``moment_tail_bound`` on all remaining
terms is below 2**-60 of the drift so far (a few hundred steps at the default betas).

>>> from optim import OnlineLogisticRegression
>>> OnlineLogisticRegression("nadam", dim=8).optimizer_params
{'lr': 0.002, 'betas': (0.9, 0.999), 'eps': 1e-08, 'momentum_decay': 0.004, 'l2': 0.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba as nb
import numpy as np

from optim.errors import ConfigError
from optim.optimizers._series import (
    POWER_SPLIT,
    TAIL_TOLERANCE,
    data_address,
    geometric_decay,
    moment_tail_bound,
    ratio_sum,
    split_power,
    unowned_view,
)
from optim.optimizers.adam import (
    BETA1,
    BETA2,
    EPS,
    EXTRA,
    LOG_BETA1,
    LOG_SQRT_BETA2,
    LR,
    RATE_BASE,
    RATE_SCALE,
    SQRT_BETA2,
    STEADY_STEP,
    TABLES_COMPLETE,
    W_GEO,
    W_INF,
    betas,
    fast_drift,
    layout,
    moment_tables,
    moved_past_span,
    rate_power,
)
from optim.optimizers.base import (
    Hyperparameter,
    OptimizerSpec,
    l2_hyperparameter,
    rate_correction,
)

# In the extra entries of the packed hyperparameters: momentum_decay, then P_0 = 1, P_1, ...
MOMENTUM_DECAY, MU_PRODUCT = 0, 1
_NEGLIGIBLE_PRODUCT = 2.0**-80
# The products P_t are tabulated until they are negligible, within this many steps: a beta1 so
# close to 1 that they are not would hold the model's creation for hours (and GBs of table).
MAX_PRODUCTS = 1 << 20
# The largest beta1 whose products are negligible within MAX_PRODUCTS steps whatever the
# momentum_decay (mu_t < beta1, so P_t < beta1**t).
SAFE_BETA1 = math.exp(math.log(_NEGLIGIBLE_PRODUCT) / MAX_PRODUCTS)


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _mu_product(t: int, hp: np.ndarray) -> float:
    i = int(hp[EXTRA]) + MU_PRODUCT + t
    return hp[i] if i < hp.shape[0] else 0.0


# Per-step constants: the factors on g and on m, and the second-moment bias correction.
ON_GRADIENT, ON_MOMENT, INVERSE_SQRT_BIAS2 = 0, 1, 2


@nb.njit(nogil=True, cache=True, error_model="numpy")
def constants(t: int, hp: np.ndarray, c: np.ndarray) -> None:
    b1 = hp[BETA1]
    product = _mu_product(t, hp)
    c[ON_GRADIENT] = hp[LR] * (1.0 - b1 * (1.0 - 0.5 * rate_power(hp, t))) / (1.0 - product)
    span, _, bias, _, _, _, _ = layout(hp)
    if t <= span or hp[TABLES_COMPLETE] != 0.0:
        a = bias + 2 * min(t, span)
        c[ON_MOMENT] = hp[a] + hp[W_GEO] * moved_past_span(hp, span, t)
        c[INVERSE_SQRT_BIAS2] = hp[a + 1]
    else:
        mu_next = b1 * (1.0 - 0.5 * rate_power(hp, t + 1))
        c[ON_MOMENT] = hp[LR] * mu_next / (1.0 - product * mu_next)
        c[INVERSE_SQRT_BIAS2] = 1.0 / math.sqrt(1.0 - geometric_decay(hp[BETA2], t))


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def effective_rate(s: np.ndarray, c: np.ndarray, hp: np.ndarray) -> float:
    return c[ON_MOMENT] / (math.sqrt(s[1]) * c[INVERSE_SQRT_BIAS2] + hp[EPS])


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    corrected = rate_correction(c) * g
    s[0] = hp[BETA1] * s[0] + (1.0 - hp[BETA1]) * corrected
    s[1] = hp[BETA2] * s[1] + (1.0 - hp[BETA2]) * g * g
    d = math.sqrt(s[1]) * c[INVERSE_SQRT_BIAS2] + hp[EPS]
    w -= c[ON_GRADIENT] * corrected / d
    return w - c[ON_MOMENT] * s[0] / d


@nb.njit(nogil=True, cache=True, error_model="numpy")
def zero_gradient_drift(
    hp_address: int, hp_size: int, m0: float, v0: float, t_last: int, k: int
) -> float:
    """How far ``k`` zero-gradient steps after step ``t_last`` move the weight when the O(1)
    paths do not apply (see the module docstring). ``hp`` comes as an address (see
    ``unowned_view``) so that the catch-up's fast paths pay no reference counting for it."""
    hp = unowned_view(hp_address, hp_size)
    lr, b1, b2, eps = hp[LR], hp[BETA1], hp[BETA2], hp[EPS]
    if b1 == 0.0:
        return 0.0
    sb2 = hp[SQRT_BETA2]
    sv = math.sqrt(v0)
    if t_last >= hp[STEADY_STEP]:  # P_s and b2**s negligible: weights lr b1 - geometric
        x = sv / eps
        log_b1, log_sb2 = hp[LOG_BETA1], hp[LOG_SQRT_BETA2]
        total = hp[W_INF] * ratio_sum(b1, log_b1, sb2, log_sb2, x, k)
        moving = hp[W_GEO] * rate_power(hp, t_last + 1)
        if moving != 0.0:
            log_rate = hp[RATE_SCALE] * math.log(hp[RATE_BASE])
            total -= moving * ratio_sum(b1 * math.exp(log_rate), log_b1 + log_rate,
                                        sb2, log_sb2, x, k)  # fmt: skip
        return m0 / eps * total
    power_step = 0.96 ** hp[int(hp[EXTRA]) + MOMENTUM_DECAY]
    power = rate_power(hp, t_last + 1)
    p2 = b2**t_last
    a1 = 1.0
    a2 = 1.0
    total = 0.0
    for j in range(1, k + 1):
        p2 *= b2
        a1 *= b1
        a2 *= sb2
        power *= power_step
        mu_next = b1 * (1.0 - 0.5 * power)
        keep = 1.0 - _mu_product(t_last + j, hp) * mu_next
        total += lr * mu_next / keep * a1 * m0 / (sv * a2 / math.sqrt(1.0 - p2) + eps)
        if moment_tail_bound(lr * b1 * abs(m0) / keep, a1, a2, b1, sb2, sv, eps) <= (
            TAIL_TOLERANCE * abs(total)
        ):
            break
    return total


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    # As adam.catch_up (decay written out likewise), with the weights moving past the tables.
    _, powers, _, moments, _, _, split = layout(hp)
    k = t_now - t_last
    m0, v0 = s[0], s[1]
    if k <= powers:
        s[0] = m0 * hp[moments + 2 * k]
        s[1] = v0 * hp[moments + 2 * k + 1] * hp[moments + 2 * k + 1]
    elif k < POWER_SPLIT * POWER_SPLIT:
        s[0] = m0 * split_power(hp, split, k)
        s[1] = v0 * split_power(hp, split + 2 * POWER_SPLIT, k)
    else:
        s[0] = m0 * geometric_decay(hp[BETA1], k)
        s[1] = v0 * geometric_decay(hp[BETA2], k)
    address, size = data_address(hp), hp.shape[0]
    if m0 == 0.0:
        return w
    drift = fast_drift(address, size, m0, math.sqrt(v0), t_last, k, True)
    if drift == drift:
        return w - drift
    return w - zero_gradient_drift(address, size, m0, v0, t_last, k)


def pack(p: Mapping[str, Any]) -> np.ndarray:
    """Adam's tables (``moment_tables``) for the weights ``W[s] = lr mu_{s+1} / (1 - P_s
    mu_{s+1})``, then ``momentum_decay`` and ``P_0 .. P_L`` (``P_L < 2**-80``)."""
    b1, _ = p["betas"]
    lr, decay = p["lr"], p["momentum_decay"]
    products = [1.0]
    t = 0
    while products[-1] >= _NEGLIGIBLE_PRODUCT:
        if t == MAX_PRODUCTS:
            raise ConfigError(
                f"must be at most {SAFE_BETA1:.9f} (any momentum_decay; larger with a small "
                f"one), got {b1!r} with momentum_decay {decay!r}: NAdam's momentum products "
                f"stay above 2**-80 for more than {MAX_PRODUCTS:,} steps",
                field="optimizer.betas[0]",
            )
        t += 1
        products.append(products[-1] * (b1 * (1.0 - 0.5 * 0.96 ** (t * decay))))
    steady = next(s for s, product in enumerate(products) if product < TAIL_TOLERANCE)

    def weights(s: np.ndarray) -> np.ndarray:
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((s + 1.0) * decay))
        product = np.zeros_like(s)
        size = min(len(products), s.shape[0])
        product[:size] = products[:size]
        return lr * mu_next / (1.0 - product * mu_next)

    tail = (lr * b1, 0.5 * lr * b1, 0.96, decay)
    return moment_tables(p, weights, steady, tail, [decay, *products])


SPEC = OptimizerSpec(
    name="nadam",
    hyperparameters=(
        Hyperparameter("lr", 2e-3, 0.0, low_open=True),
        betas((0.9, 0.999)),
        Hyperparameter("eps", 1e-8, 0.0, low_open=True),
        Hyperparameter("momentum_decay", 4e-3, 0.0),
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
    n_constants=3,
)
