"""AdaMax: Adam with the infinity norm in place of the second moment.

Update (Kingma & Ba 2015, section 7.1; ``torch.optim.Adamax``, with ``eps`` inside the max)::

    m <- b1 * m + (1 - b1) * g
    u <- max(b2 * u, |g| + eps)
    w <- w - (lr / (1 - b1**t)) * m / u

State slots: ``exp_avg`` (``m``), ``exp_inf`` (``u``).
Effective learning rate (the factor on ``m``): ``(lr / (1 - b1**t)) / u``.

Normalized (``u`` on ``scale * w``, correction ``mc = sqrt(T / N)``; see
:mod:`optim.optimizers.base`): ``m`` averages corrected normalized gradients ``mc * g / scale``,
``exp_inf`` takes the uncorrected ``|g / scale| + eps``. A grown scale multiplies ``m``,
``exp_inf`` and ``w`` by ``r``. Effective rate: the factor on ``m`` times ``mc / scale**2``.

Lazy catch-up over ``k`` zero-gradient steps (``j = 1..k``): ``m_j = b1**j m`` and
``u_j = max(b2**j u, eps)``; the weight moves by ``sum_j lr/(1 - b1**s) * m_j / u_j``
(``s = t_last + j``). Once ``b1**s < 2**-60`` (step ``S``, ~400 at the default betas) the bias
correction is exactly 1 and, while ``b2**j u > eps``, the terms are ``(lr m/u) q**j`` with
``q = b1/b2``. Every term is at most that (``u_j >= b2**j u``), so when ``q < 1`` the terms past
``H`` (``q**H < 2**-60 (1-q)``, ~420 steps) weigh less than ``2**-60`` of the first, and::

    w <- w - (lr m / u) * (q + ... + q**min(k, H))     if t_last >= S and b2**min(k, H) u > eps

with the partial sums, ``lr/(1-b1**s)`` and the split powers of ``b1`` and ``b2`` tabulated per
model: O(1) and no transcendental call. Otherwise (a model's first ``S`` steps, ``u`` reaching
``eps`` within ``H`` steps, or ``b1 >= b2``) the bias-correction phase is taken step by step and
the rest is two closed-form geometric sums: ``(lr m/u) sum_{j<=J} q**j + (lr m b1**J/eps)
sum_{i<=k-J} b1**i`` where ``J`` is the last step at which ``b2**j u`` is still above ``eps``.

>>> from optim import OnlineLogisticRegression
>>> OnlineLogisticRegression("adamax", dim=8).optimizer_params
{'lr': 0.002, 'betas': (0.9, 0.999), 'eps': 1e-08, 'l2': 0.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba as nb
import numpy as np

from optim.optimizers._series import (
    POWER_SPLIT,
    TAIL_TOLERANCE,
    geometric_decay,
    geometric_sum,
    split_power,
    split_powers,
    tabulated_decay,
)
from optim.optimizers.adam import betas
from optim.optimizers.base import (
    Hyperparameter,
    OptimizerSpec,
    l2_hyperparameter,
    rate_correction,
)

LR, BETA1, BETA2, EPS, STEADY_STEP, BIAS_TABLE, HORIZON, HEADER = range(8)
# Longest table of bias corrections or partial sums kept (b1 or b1/b2 within ~1e-5 of 1 beyond).
MAX_TABLE = 1 << 17


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _layout(hp: np.ndarray) -> tuple[int, int, int]:
    """Offsets in ``hp`` (after ``lr/(1-b1**s)`` for ``s <= BIAS_TABLE``, from ``HEADER``) of
    ``q + ... + q**n`` for ``n <= H``, and of the split powers of ``b1`` and of ``b2``."""
    sums = HEADER + int(hp[BIAS_TABLE]) + 1
    powers1 = sums + int(hp[HORIZON]) + 1
    return sums, powers1, powers1 + 2 * POWER_SPLIT


@nb.njit(nogil=True, cache=True, error_model="numpy")
def constants(t: int, hp: np.ndarray, c: np.ndarray) -> None:
    last = int(hp[BIAS_TABLE])
    if t <= last or last >= hp[STEADY_STEP]:  # the table's last entry is the steady lr
        c[0] = hp[HEADER + min(t, last)]
    else:
        c[0] = hp[LR] / (1.0 - geometric_decay(hp[BETA1], t))


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def effective_rate(s: np.ndarray, c: np.ndarray, hp: np.ndarray) -> float:
    return c[0] / max(s[1], hp[EPS])


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    s[0] = hp[BETA1] * s[0] + (1.0 - hp[BETA1]) * (rate_correction(c) * g)
    s[1] = max(hp[BETA2] * s[1], abs(g) + hp[EPS])
    return w - c[0] * s[0] / s[1]


@nb.njit(nogil=True, cache=True, error_model="numpy")
def zero_gradient_drift(
    lr: float, b1: float, b2: float, eps: float, m0: float, u0: float, t_last: int, k: int
) -> float:
    """How far ``k`` zero-gradient steps after step ``t_last`` move the weight: the general
    path of the module docstring (scalars only, so the catch-up's fast path pays no reference
    counting for calling it)."""
    p1 = b1**t_last
    a1 = 1.0
    u = u0
    j = 0
    total = 0.0
    while j < k and p1 >= TAIL_TOLERANCE:
        j += 1
        p1 *= b1
        a1 *= b1
        u = max(b2 * u, eps)
        total += lr / (1.0 - p1) * a1 * m0 / u
    r = k - j
    if r > 0:
        above = 0
        if u > eps and b2 > 0.0:
            above = min(r, int(math.log(eps / u) / math.log(b2)))
        drift = b1**above * geometric_sum(b1, r - above) / eps
        if above > 0:
            drift += geometric_sum(b1 / b2, above) / u
        total += lr * m0 * a1 * drift
    return total


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    b1, b2, eps = hp[BETA1], hp[BETA2], hp[EPS]
    sums, powers1, powers2 = _layout(hp)
    k = t_now - t_last
    m0, u0 = s[0], s[1]
    s[0] = m0 * tabulated_decay(hp, powers1, b1, k)
    s[1] = max(u0 * tabulated_decay(hp, powers2, b2, k), eps)
    if m0 == 0.0:
        return w
    n = min(k, int(hp[HORIZON]))
    if t_last >= hp[STEADY_STEP] and n > 0 and u0 * split_power(hp, powers2, n) > eps:
        return w - hp[LR] * m0 / u0 * hp[sums + n]
    return w - zero_gradient_drift(hp[LR], b1, b2, eps, m0, u0, t_last, k)


def pack(p: Mapping[str, Any]) -> np.ndarray:
    """Header, ``lr/(1-b1**s)`` up to the steady step ``S`` (or ``MAX_TABLE``), the partial
    sums of ``q = b1/b2`` up to the horizon ``H`` (0: no fast path), the split powers of ``b1``
    and ``b2``."""
    lr, eps = p["lr"], p["eps"]
    b1, b2 = p["betas"]
    steady = math.ceil(math.log(TAIL_TOLERANCE) / math.log(b1)) if b1 > 0 else 1
    q = b1 / b2 if b2 > 0 else math.inf
    horizon = 0
    if q == 0.0:
        horizon = 1
    elif q < 1.0:
        horizon = math.ceil(math.log(TAIL_TOLERANCE * (1.0 - q)) / math.log(q))
    if horizon > MAX_TABLE:  # b1/b2 too close to 1: the general path
        horizon = 0
    s = np.arange(min(steady, MAX_TABLE) + 1, dtype=np.float64)
    with np.errstate(divide="ignore"):  # s = 0 is never looked up
        bias = lr / (1.0 - b1**s)
    header = [lr, b1, b2, eps, float(steady), float(s[-1]), float(horizon)]
    sums = [geometric_sum(q, n) for n in range(horizon + 1)]
    return np.concatenate([header, bias, sums, split_powers(b1), split_powers(b2)])


SPEC = OptimizerSpec(
    name="adamax",
    hyperparameters=(
        Hyperparameter("lr", 2e-3, 0.0, low_open=True),
        betas((0.9, 0.999)),
        Hyperparameter("eps", 1e-8, 0.0, low_open=True),
        l2_hyperparameter(),
    ),
    slots=("exp_avg", "exp_inf"),
    nonnegative_slots=("exp_inf",),
    slot_gradient_powers=(1, 1),
    step=step,
    catch_up=catch_up,
    effective_rate=effective_rate,
    pack=pack,
    constants=constants,
    n_constants=1,
)
