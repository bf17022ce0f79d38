"""SGD with Nesterov momentum.

Update (Nesterov 1983, in the form of Sutskever et al. 2013;
``torch.optim.SGD(momentum=mu, dampening=0, nesterov=True)``)::

    b <- mu * b + g
    w <- w - lr * (g + mu * b)

State slots: ``momentum_buffer``. Effective learning rate: ``lr``.

Lazy catch-up over ``k`` zero-gradient steps (closed form)::

    w <- w - lr * mu * b * (mu + ... + mu**k)
    b <- mu**k * b

Normalized: as :mod:`optim.optimizers.momentum`, with ``m * g / scale`` for ``g`` in both
places (``b`` holds corrected normalized gradients).

with the tables of :mod:`optim.optimizers.momentum` (``momentum_series``).

>>> from optim import OnlineLogisticRegression
>>> OnlineLogisticRegression("nesterov", dim=8).optimizer_params
{'lr': 0.001, 'momentum': 0.9, 'l2': 0.0}
"""

from __future__ import annotations

import numba as nb
import numpy as np

from optim.optimizers.base import OptimizerSpec, rate_correction
from optim.optimizers.momentum import (
    HYPERPARAMETERS,
    LR,
    MOMENTUM,
    effective_rate,
    momentum_series,
    pack,
)


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    g = rate_correction(c) * g
    s[0] = hp[MOMENTUM] * s[0] + g
    return w - hp[LR] * (g + hp[MOMENTUM] * s[0])


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    total, decay = momentum_series(hp, t_now - t_last)
    w -= hp[LR] * hp[MOMENTUM] * s[0] * total
    s[0] *= decay
    return w


SPEC = OptimizerSpec(
    name="nesterov",
    hyperparameters=HYPERPARAMETERS,
    slots=("momentum_buffer",),
    slot_gradient_powers=(1,),
    scale_free=False,
    step=step,
    catch_up=catch_up,
    effective_rate=effective_rate,
    pack=pack,
)
