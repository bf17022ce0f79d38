"""RMSProp: AdaGrad with an exponentially decaying average of squared gradients.

Update (Tieleman & Hinton 2012, Lecture 6.5; ``torch.optim.RMSprop`` with ``momentum=0``,
``centered=False``)::

    v <- alpha * v + (1 - alpha) * g**2
    w <- w - lr * g / (sqrt(v) + eps)

State slots: ``square_avg`` (``v``). Effective learning rate: ``lr / (sqrt(v) + eps)``.

Normalized (``u = scale * w``, gradient ``g / scale``, correction ``m = sqrt(T / N)``; see
:mod:`optim.optimizers.base`): ``v`` averages normalized squared gradients and
``u <- u - lr * m * (g / scale) / (sqrt(v) + eps)``. A grown scale multiplies ``v`` by ``r**2``
and ``w`` by ``r``. Effective rate ``lr * m / (scale**2 * (sqrt(v) + eps))``.

Lazy catch-up over ``k`` zero-gradient steps (closed form): ``v <- alpha**k * v`` (from per-model
split power tables, ``tabulated_decay``); the weight does not move. So under ``lazy="exact"``
an absent coordinate's rate *grows* back, while under ``lazy="frozen"`` it stays where it was.

>>> from optim import OnlineLogisticRegression
>>> OnlineLogisticRegression("rmsprop", dim=8).optimizer_params
{'lr': 0.01, 'alpha': 0.99, 'eps': 1e-08, 'l2': 0.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba as nb
import numpy as np

from optim.optimizers._series import split_powers, tabulated_decay
from optim.optimizers.base import (
    Hyperparameter,
    OptimizerSpec,
    l2_hyperparameter,
    rate_correction,
)

LR, ALPHA, EPS, POWERS = 0, 1, 2, 3


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def effective_rate(s: np.ndarray, c: np.ndarray, hp: np.ndarray) -> float:
    return hp[LR] / (math.sqrt(s[0]) + hp[EPS])


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    s[0] = hp[ALPHA] * s[0] + (1.0 - hp[ALPHA]) * g * g
    return w - effective_rate(s, c, hp) * (rate_correction(c) * g)


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    s[0] *= tabulated_decay(hp, POWERS, hp[ALPHA], t_now - t_last)
    return w


def pack(p: Mapping[str, Any]) -> np.ndarray:
    return np.concatenate([[p["lr"], p["alpha"], p["eps"]], split_powers(p["alpha"])])


SPEC = OptimizerSpec(
    name="rmsprop",
    hyperparameters=(
        Hyperparameter("lr", 1e-2, 0.0, low_open=True),
        Hyperparameter("alpha", 0.99, 0.0, 1.0),
        Hyperparameter("eps", 1e-8, 0.0, low_open=True),
        l2_hyperparameter(),
    ),
    slots=("square_avg",),
    nonnegative_slots=("square_avg",),
    slot_gradient_powers=(2,),
    step=step,
    catch_up=catch_up,
    effective_rate=effective_rate,
    pack=pack,
)
