"""AdaGrad: per-coordinate rates shrinking with the sum of squared gradients.

Update (Duchi, Hazan & Singer 2011, "Adaptive Subgradient Methods"; ``torch.optim.Adagrad``)::

    clr = lr / (1 + (t - 1) * lr_decay)
    G  <- G + g**2
    w  <- w - clr * g / (sqrt(G) + eps)

State slots: ``sum`` (``G``, starting at ``initial_accumulator_value``).
Effective learning rate: ``lr / (1 + (t-1)*lr_decay) / (sqrt(G) + eps)``.

Normalized (``u = scale * w``, gradient ``g / scale``, correction ``m = sqrt(T / N)``; see
:mod:`optim.optimizers.base`): ``sum`` holds normalized squared gradients, so with a fixed scale
``sum = G / scale**2`` for the raw ``G`` and::

    w <- w - clr * m * g / (scale * (sqrt(G) + eps * scale))

VW's ``--adaptive --normalized`` (``eps`` aside; VW steps each occurrence of a feature a row
repeats at one coordinate, where our rows hold their sum: at 2**24 coordinates, on VW's own
coordinates, the two agree to 1e-6 of progressive log-loss, ``loadtest/REPORT_QUALITY.md``). A
grown scale multiplies ``w`` by ``r`` and
``sum`` by ``r**2``. Effective rate ``clr * m / (scale**2 * (sqrt(sum) + eps))``.

Importance-invariant (``invariant``): a row of weight ``h`` adds ``h * g**2`` to ``sum`` (``g``
the gradient of the row at weight 1), then takes the closed-form logistic step of
Karampatziakis & Langford 2011 with the rates that leaves (VW's default update).

Lazy catch-up: a zero gradient changes nothing (the step count only enters ``clr``, which is
global), so ``lazy="exact"`` and ``lazy="frozen"`` coincide and cost the same. This is why a rarely
present feature keeps a large rate while a busy one's shrinks.

>>> from optim import OnlineLogisticRegression
>>> OnlineLogisticRegression("adagrad", dim=8).optimizer_params
{'lr': 0.01, 'lr_decay': 0.0, 'eps': 1e-10, 'initial_accumulator_value': 0.0, 'l2': 0.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba as nb
import numpy as np

from optim.optimizers.base import (
    Hyperparameter,
    OptimizerSpec,
    l2_hyperparameter,
    rate_correction,
)

LR, LR_DECAY, EPS = 0, 1, 2


@nb.njit(nogil=True, cache=True, error_model="numpy")
def constants(t: int, hp: np.ndarray, c: np.ndarray) -> None:
    c[0] = hp[LR] / (1.0 + (t - 1) * hp[LR_DECAY])


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def effective_rate(s: np.ndarray, c: np.ndarray, hp: np.ndarray) -> float:
    return c[0] / (math.sqrt(s[0]) + hp[EPS])


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    s[0] += g * g
    return w - effective_rate(s, c, hp) * (rate_correction(c) * g)


@nb.njit(nogil=True, cache=True, error_model="numpy")
def accumulate(s: np.ndarray, g: float, h: float) -> None:
    s[0] += h * (g * g)


@nb.njit(nogil=True, cache=True, error_model="numpy")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    return w


def pack(p: Mapping[str, Any]) -> np.ndarray:
    return np.array([p["lr"], p["lr_decay"], p["eps"]])


def initial_slots(p: Mapping[str, Any]) -> tuple[float, ...]:
    return (p["initial_accumulator_value"],)


SPEC = OptimizerSpec(
    name="adagrad",
    hyperparameters=(
        Hyperparameter("lr", 1e-2, 0.0, low_open=True),
        Hyperparameter("lr_decay", 0.0, 0.0),
        Hyperparameter("eps", 1e-10, 0.0, low_open=True),
        Hyperparameter("initial_accumulator_value", 0.0, 0.0),
        l2_hyperparameter(),
    ),
    slots=("sum",),
    nonnegative_slots=("sum",),
    slot_gradient_powers=(2,),
    accumulate=accumulate,
    step=step,
    catch_up=catch_up,
    effective_rate=effective_rate,
    pack=pack,
    initial_slots=initial_slots,
    constants=constants,
    n_constants=1,
    lazy_modes_coincide=True,
)
