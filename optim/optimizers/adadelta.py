"""Adadelta: a learning rate from the ratio of two running RMS values.

Update (Zeiler 2012, "ADADELTA: An Adaptive Learning Rate Method"; ``torch.optim.Adadelta``)::

    v     <- rho * v + (1 - rho) * g**2
    delta  = sqrt(u + eps) / sqrt(v + eps) * g
    u     <- rho * u + (1 - rho) * delta**2
    w     <- w - lr * delta

State slots: ``square_avg`` (``v``), ``acc_delta`` (``u``).
Effective learning rate: ``lr * sqrt(u + eps) / sqrt(v + eps)``.

Normalized (``u = scale * w``, gradient ``g / scale``, correction ``m = sqrt(T / N)``; see
:mod:`optim.optimizers.base`): ``v`` averages normalized squared gradients, ``delta`` and ``u``
are in normalized weight units and ``u <- u - lr * m * delta`` (``acc_delta`` takes the
uncorrected ``delta``). A grown scale multiplies ``v`` by ``r**2``, ``w`` by ``r`` and leaves
``acc_delta``. Effective rate ``lr * m * sqrt(u + eps) / (scale**2 * sqrt(v + eps))``.

Lazy catch-up over ``k`` zero-gradient steps (closed form): ``v <- rho**k v``, ``u <- rho**k u``
(``delta`` is 0, the weight does not move), ``rho**k`` from per-model split power tables.

>>> from optim import OnlineLogisticRegression
>>> OnlineLogisticRegression("adadelta", dim=8).optimizer_params
{'lr': 1.0, 'rho': 0.9, 'eps': 1e-06, 'l2': 0.0}
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

LR, RHO, EPS, POWERS = 0, 1, 2, 3


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    rho = hp[RHO]
    s[0] = rho * s[0] + (1.0 - rho) * g * g
    delta = math.sqrt(s[1] + hp[EPS]) / math.sqrt(s[0] + hp[EPS]) * g
    s[1] = rho * s[1] + (1.0 - rho) * delta * delta
    return w - hp[LR] * (rate_correction(c) * delta)


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    decay = tabulated_decay(hp, POWERS, hp[RHO], t_now - t_last)
    s[0] *= decay
    s[1] *= decay
    return w


@nb.njit(nogil=True, cache=True, error_model="numpy")
def effective_rate(s: np.ndarray, c: np.ndarray, hp: np.ndarray) -> float:
    return hp[LR] * math.sqrt(s[1] + hp[EPS]) / math.sqrt(s[0] + hp[EPS])


def pack(p: Mapping[str, Any]) -> np.ndarray:
    return np.concatenate([[p["lr"], p["rho"], p["eps"]], split_powers(p["rho"])])


SPEC = OptimizerSpec(
    name="adadelta",
    hyperparameters=(
        Hyperparameter("lr", 1.0, 0.0, low_open=True),
        Hyperparameter("rho", 0.9, 0.0, 1.0),
        Hyperparameter("eps", 1e-6, 0.0, low_open=True),
        l2_hyperparameter(),
    ),
    slots=("square_avg", "acc_delta"),
    nonnegative_slots=("square_avg", "acc_delta"),
    slot_gradient_powers=(2, 0),
    step=step,
    catch_up=catch_up,
    effective_rate=effective_rate,
    pack=pack,
)
