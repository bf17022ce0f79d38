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
``P_t`` is tabulated once per model (it falls below 2**-80 within a few hundred steps, after which
``1 - P_t`` is exactly 1) and travels in the packed hyperparameters.

Lazy catch-up over ``k`` zero-gradient steps: ``m <- b1**k m``, ``v <- b2**k v``; the ``m`` term
still moves the weight. ``mu_next`` keeps changing for ~10**5 steps, so there is no closed form:
the steps are taken one by one (``mu_next``'s power advanced by one multiplication per step),
stopping when the geometric bound ``moment_tail_bound`` on all remaining terms is below 2**-60 of
the drift so far (a few hundred steps at the default betas, whatever ``k`` is).

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

from optim.optimizers._series import TAIL_TOLERANCE, moment_tail_bound
from optim.optimizers.adam import betas
from optim.optimizers.base import Hyperparameter, OptimizerSpec, l2_hyperparameter

LR, BETA1, BETA2, EPS, MOMENTUM_DECAY, MU_PRODUCT = 0, 1, 2, 3, 4, 5
_NEGLIGIBLE_PRODUCT = 2.0**-80


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _mu(t: int, hp: np.ndarray) -> float:
    return hp[BETA1] * (1.0 - 0.5 * 0.96 ** (t * hp[MOMENTUM_DECAY]))


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _mu_product(t: int, hp: np.ndarray) -> float:
    i = MU_PRODUCT + t
    return hp[i] if i < hp.shape[0] else 0.0


# Per-step constants: the factors on g and on m, and the second-moment bias correction.
ON_GRADIENT, ON_MOMENT, BIAS_CORRECTION2 = 0, 1, 2


@nb.njit(nogil=True, cache=True, error_model="numpy")
def constants(t: int, hp: np.ndarray, c: np.ndarray) -> None:
    mu = _mu(t, hp)
    mu_next = _mu(t + 1, hp)
    c[ON_GRADIENT] = hp[LR] * (1.0 - mu) / (1.0 - _mu_product(t, hp))
    c[ON_MOMENT] = hp[LR] * mu_next / (1.0 - _mu_product(t, hp) * mu_next)
    c[BIAS_CORRECTION2] = 1.0 - hp[BETA2] ** t


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def effective_rate(s: np.ndarray, c: np.ndarray, hp: np.ndarray) -> float:
    return c[ON_MOMENT] / (math.sqrt(s[1] / c[BIAS_CORRECTION2]) + hp[EPS])


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    s[0] = hp[BETA1] * s[0] + (1.0 - hp[BETA1]) * g
    s[1] = hp[BETA2] * s[1] + (1.0 - hp[BETA2]) * g * g
    d = math.sqrt(s[1] / c[BIAS_CORRECTION2]) + hp[EPS]
    w -= c[ON_GRADIENT] * g / d
    return w - c[ON_MOMENT] * s[0] / d


@nb.njit(nogil=True, cache=True, error_model="numpy")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    lr, b1, b2, eps = hp[LR], hp[BETA1], hp[BETA2], hp[EPS]
    k = t_now - t_last
    m0, v0 = s[0], s[1]
    s[0] = m0 * b1**k
    s[1] = v0 * b2**k
    if m0 == 0.0:
        return w
    sb2 = math.sqrt(b2)
    sv = math.sqrt(v0)
    power_step = 0.96 ** hp[MOMENTUM_DECAY]
    power = 0.96 ** ((t_last + 1) * hp[MOMENTUM_DECAY])
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
    return w - total


def pack(p: Mapping[str, Any]) -> np.ndarray:
    b1, _ = p["betas"]
    decay = p["momentum_decay"]
    products = [1.0]
    t = 0
    while products[-1] >= _NEGLIGIBLE_PRODUCT:
        t += 1
        products.append(products[-1] * (b1 * (1.0 - 0.5 * 0.96 ** (t * decay))))
    return np.array([p["lr"], b1, p["betas"][1], p["eps"], decay, *products])


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
    step=step,
    catch_up=catch_up,
    effective_rate=effective_rate,
    pack=pack,
    constants=constants,
    n_constants=3,
)
