"""FTRL-Proximal: follow the regularized leader with per-coordinate rates and L1 sparsity.

Update (McMahan et al. 2013, "Ad Click Prediction: a View from the Trenches", Algorithm 1)::

    sigma = (sqrt(n + g**2) - sqrt(n)) / alpha
    z <- z + g - sigma * w
    n <- n + g**2
    w  = 0                                                    if |z| <= l1
       = -(z - sign(z) l1) / ((beta + sqrt(n)) / alpha + l2)  otherwise

State slots: ``z``, ``n``. Effective learning rate: ``alpha / (beta + sqrt(n))``.
``l1`` and ``l2`` are the paper's (in the weight formula, not added to the gradient); weights are
exactly 0 while ``|z| <= l1``. The intercept is never regularized.

Normalized (``u = scale * w``, gradient ``g / scale``, correction ``m = sqrt(T / N)``; see
:mod:`optim.optimizers.base`): the rule above on ``u`` with ``z <- z + m * g / scale - sigma * u``
(``z`` corrected normalized, ``n`` uncorrected normalized squares, so with a fixed ``m`` it is
FTRL with ``alpha * m``). A grown scale multiplies ``z`` by ``r``, ``n`` by ``r**2`` and ``w`` by
``r``. Effective rate ``alpha * m / (scale**2 * (beta + sqrt(n)))``.

Lazy catch-up: a zero gradient changes nothing, so ``lazy="exact"`` and ``lazy="frozen"``
coincide and cost the same.

>>> from optim import OnlineLogisticRegression
>>> OnlineLogisticRegression("ftrl", dim=8).optimizer_params
{'alpha': 0.05, 'beta': 1.0, 'l1': 0.0, 'l2': 0.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba as nb
import numpy as np

from optim.optimizers.base import Hyperparameter, OptimizerSpec, rate_correction

ALPHA, BETA, L1, L2 = 0, 1, 2, 3


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    n = s[1]
    sigma = (math.sqrt(n + g * g) - math.sqrt(n)) / hp[ALPHA]
    s[0] += rate_correction(c) * g - sigma * w
    s[1] = n + g * g
    z = s[0]
    l1 = hp[L1] if regularize else 0.0
    l2 = hp[L2] if regularize else 0.0
    if abs(z) <= l1:
        return 0.0
    return -(z - math.copysign(l1, z)) / ((hp[BETA] + math.sqrt(s[1])) / hp[ALPHA] + l2)


@nb.njit(nogil=True, cache=True, error_model="numpy")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    return w


@nb.njit(nogil=True, cache=True, error_model="numpy")
def effective_rate(s: np.ndarray, c: np.ndarray, hp: np.ndarray) -> float:
    return hp[ALPHA] / (hp[BETA] + math.sqrt(s[1]))


def pack(p: Mapping[str, Any]) -> np.ndarray:
    return np.array([p["alpha"], p["beta"], p["l1"], p["l2"]])


SPEC = OptimizerSpec(
    name="ftrl",
    hyperparameters=(
        Hyperparameter("alpha", 0.05, 0.0, low_open=True),
        Hyperparameter("beta", 1.0, 0.0),
        Hyperparameter("l1", 0.0, 0.0),
        Hyperparameter("l2", 0.0, 0.0),
    ),
    slots=("z", "n"),
    nonnegative_slots=("n",),
    slot_gradient_powers=(1, 2),
    step=step,
    catch_up=catch_up,
    effective_rate=effective_rate,
    pack=pack,
    l2_in_gradient=False,
    lazy_modes_coincide=True,
)
