"""SGD with (heavy-ball) momentum.

Update (Polyak 1964; ``torch.optim.SGD(momentum=mu, dampening=0)``)::

    b <- mu * b + g
    w <- w - lr * b

State slots: ``momentum_buffer`` (``b``). Effective learning rate: ``lr`` (the factor on ``b``).

Lazy catch-up over ``k`` zero-gradient steps (closed form)::

    w <- w - lr * b * (mu + mu**2 + ... + mu**k)
    b <- mu**k * b

``mu**k`` and the sum come from per-model tables (``momentum_series``): no ``pow``/``expm1`` call
unless ``k >= 2**20``.

Normalized (``u = scale * w``, gradient ``g / scale``, correction ``m = T / N``; see
:mod:`optim.optimizers.base`): ``b`` holds corrected normalized gradients,
``b <- mu * b + m * g / scale`` and ``u <- u - lr * b``. A grown scale multiplies ``b`` by ``r``
and ``w`` by ``r**2``. Effective rate ``lr * m / scale**2``.

``lazy="frozen"`` instead leaves absent coordinates (and their buffers) where they are.
Defaults follow torch (``lr=0.001``) with ``momentum=0.9``.

>>> from optim import OnlineLogisticRegression
>>> OnlineLogisticRegression("momentum", dim=8).optimizer_params
{'lr': 0.001, 'momentum': 0.9, 'l2': 0.0}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numba as nb
import numpy as np

from optim.optimizers._series import (
    POWER_SPLIT,
    geometric_decay,
    geometric_sum,
    geometric_sums,
    split_power,
    split_powers,
)
from optim.optimizers.base import (
    Hyperparameter,
    OptimizerSpec,
    l2_hyperparameter,
    rate_correction,
)

LR, MOMENTUM, POWERS = 0, 1, 2
SUMS = POWERS + 2 * POWER_SPLIT


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    s[0] = hp[MOMENTUM] * s[0] + rate_correction(c) * g
    return w - hp[LR] * s[0]


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def momentum_series(hp: np.ndarray, k: int) -> tuple[float, float]:
    """``(mu + ... + mu**k, mu**k)`` for ``k >= 1``: both tabulated below ``POWER_SPLIT``; up to
    ``POWER_SPLIT**2`` the power comes from the split tables and the sum from it (``mu**k <=
    mu**1024``, so ``1 - mu**k`` loses no relative accuracy)."""
    mu = hp[MOMENTUM]
    if k < POWER_SPLIT:
        return hp[SUMS + k], hp[POWERS + POWER_SPLIT + k]
    if k < POWER_SPLIT * POWER_SPLIT:
        decay = split_power(hp, POWERS, k)
        return mu * (1.0 - decay) / (1.0 - mu), decay
    return geometric_sum(mu, k), geometric_decay(mu, k)


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    total, decay = momentum_series(hp, t_now - t_last)
    w -= hp[LR] * s[0] * total
    s[0] *= decay
    return w


@nb.njit(nogil=True, cache=True, error_model="numpy")
def effective_rate(s: np.ndarray, c: np.ndarray, hp: np.ndarray) -> float:
    return hp[LR]


def pack(p: Mapping[str, Any]) -> np.ndarray:
    mu = p["momentum"]
    return np.concatenate([[p["lr"], mu], split_powers(mu), geometric_sums(mu)])


HYPERPARAMETERS = (
    Hyperparameter("lr", 1e-3, 0.0, low_open=True),
    Hyperparameter("momentum", 0.9, 0.0, 1.0, high_open=True),
    l2_hyperparameter(),
)

SPEC = OptimizerSpec(
    name="momentum",
    hyperparameters=HYPERPARAMETERS,
    slots=("momentum_buffer",),
    slot_gradient_powers=(1,),
    scale_free=False,
    step=step,
    catch_up=catch_up,
    effective_rate=effective_rate,
    pack=pack,
)
