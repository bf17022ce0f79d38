"""SGD with (heavy-ball) momentum.

Update (Polyak 1964; ``torch.optim.SGD(momentum=mu, dampening=0)``)::

    b <- mu * b + g
    w <- w - lr * b

State slots: ``momentum_buffer`` (``b``). Effective learning rate: ``lr`` (the factor on ``b``).

Lazy catch-up over ``k`` zero-gradient steps (closed form)::

    w <- w - lr * b * (mu + mu**2 + ... + mu**k)
    b <- mu**k * b

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

from optim.optimizers._series import geometric_decay, geometric_sum
from optim.optimizers.base import Hyperparameter, OptimizerSpec, l2_hyperparameter

LR, MOMENTUM = 0, 1


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    s[0] = hp[MOMENTUM] * s[0] + g
    return w - hp[LR] * s[0]


@nb.njit(nogil=True, cache=True, error_model="numpy")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    k = t_now - t_last
    w -= hp[LR] * s[0] * geometric_sum(hp[MOMENTUM], k)
    s[0] *= geometric_decay(hp[MOMENTUM], k)
    return w


@nb.njit(nogil=True, cache=True, error_model="numpy")
def effective_rate(s: np.ndarray, c: np.ndarray, hp: np.ndarray) -> float:
    return hp[LR]


def pack(p: Mapping[str, Any]) -> np.ndarray:
    return np.array([p["lr"], p["momentum"]])


HYPERPARAMETERS = (
    Hyperparameter("lr", 1e-3, 0.0, low_open=True),
    Hyperparameter("momentum", 0.9, 0.0, 1.0, high_open=True),
    l2_hyperparameter(),
)

SPEC = OptimizerSpec(
    name="momentum",
    hyperparameters=HYPERPARAMETERS,
    slots=("momentum_buffer",),
    step=step,
    catch_up=catch_up,
    effective_rate=effective_rate,
    pack=pack,
)
