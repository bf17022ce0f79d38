"""Stochastic gradient descent.

Update (Robbins & Monro 1951; ``torch.optim.SGD`` without momentum)::

    w <- w - lr * g

State slots: none. Effective learning rate: ``lr``.

Normalized (``u = scale * w``, normalized gradient ``g / scale``, correction ``m = T / N``; see
:mod:`optim.optimizers.base`)::

    u <- u - lr * m * g / scale        i.e.  w <- w - lr * m * g / scale**2

A grown scale multiplies ``w`` by ``r**2`` (not scale-free). Effective rate
``lr * m / scale**2``.

Importance-invariant (``invariant``): a row of weight ``h`` is the closed-form logistic step of
Karampatziakis & Langford 2011 with the rate ``lr`` (nothing to accumulate).

Lazy catch-up: a zero gradient changes nothing, so ``lazy="exact"`` and ``lazy="frozen"`` coincide
and cost the same.

>>> from optim import OnlineLogisticRegression
>>> OnlineLogisticRegression("sgd", dim=8).optimizer_params
{'lr': 0.001, 'l2': 0.0}
"""

from __future__ import annotations

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


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    return w - hp[0] * (rate_correction(c) * g)


@nb.njit(nogil=True, cache=True, error_model="numpy")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    return w


@nb.njit(nogil=True, cache=True, error_model="numpy")
def accumulate(s: np.ndarray, g: float, h: float) -> None:
    pass


@nb.njit(nogil=True, cache=True, error_model="numpy")
def effective_rate(s: np.ndarray, c: np.ndarray, hp: np.ndarray) -> float:
    return hp[0]


def pack(p: Mapping[str, Any]) -> np.ndarray:
    return np.array([p["lr"]])


SPEC = OptimizerSpec(
    name="sgd",
    hyperparameters=(Hyperparameter("lr", 1e-3, 0.0, low_open=True), l2_hyperparameter()),
    slots=(),
    step=step,
    catch_up=catch_up,
    effective_rate=effective_rate,
    pack=pack,
    lazy_modes_coincide=True,
    scale_free=False,
    accumulate=accumulate,
)
