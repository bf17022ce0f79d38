"""AdaMax: Adam with the infinity norm in place of the second moment.

Update (Kingma & Ba 2015, section 7.1; ``torch.optim.Adamax``, with ``eps`` inside the max)::

    m <- b1 * m + (1 - b1) * g
    u <- max(b2 * u, |g| + eps)
    w <- w - (lr / (1 - b1**t)) * m / u

State slots: ``exp_avg`` (``m``), ``exp_inf`` (``u``).
Effective learning rate (the factor on ``m``): ``(lr / (1 - b1**t)) / u``.

Lazy catch-up over ``k`` zero-gradient steps (``j = 1..k``): ``m_j = b1**j m`` and
``u_j = max(b2**j u, eps)``. While ``b1**s >= 2**-60`` (the first ~400 steps of a model) the steps
are taken one by one; after that the bias correction is exactly 1 and the drift is two closed-form
geometric sums: ``(lr m/u) sum_{j<=J} (b1/b2)**j + (lr m b1**J/eps) sum_{i<=k-J} b1**i`` where ``J``
is the last step at which ``b2**j u`` is still above ``eps``.

>>> from optim import OnlineLogisticRegression
>>> OnlineLogisticRegression("adamax", dim=8).optimizer_params
{'lr': 0.002, 'betas': (0.9, 0.999), 'eps': 1e-08, 'l2': 0.0}
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from optim.optimizers._series import TAIL_TOLERANCE, geometric_sum
from optim.optimizers.adam import betas, pack
from optim.optimizers.base import Hyperparameter, OptimizerSpec, l2_hyperparameter

LR, BETA1, BETA2, EPS = 0, 1, 2, 3


@nb.njit(nogil=True, cache=True, error_model="numpy")
def constants(t: int, hp: np.ndarray, c: np.ndarray) -> None:
    c[0] = hp[LR] / (1.0 - hp[BETA1] ** t)


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def effective_rate(s: np.ndarray, c: np.ndarray, hp: np.ndarray) -> float:
    return c[0] / max(s[1], hp[EPS])


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    s[0] = hp[BETA1] * s[0] + (1.0 - hp[BETA1]) * g
    s[1] = max(hp[BETA2] * s[1], abs(g) + hp[EPS])
    return w - c[0] * s[0] / s[1]


@nb.njit(nogil=True, cache=True, error_model="numpy")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    lr, b1, b2, eps = hp[LR], hp[BETA1], hp[BETA2], hp[EPS]
    k = t_now - t_last
    m0, u0 = s[0], s[1]
    s[0] = m0 * b1**k
    s[1] = max(u0 * b2**k, eps)
    if m0 == 0.0:
        return w
    p1 = b1**t_last
    a1 = 1.0
    u = u0
    j = 0
    while j < k and p1 >= TAIL_TOLERANCE:
        j += 1
        p1 *= b1
        a1 *= b1
        u = max(b2 * u, eps)
        w -= lr / (1.0 - p1) * a1 * m0 / u
    r = k - j
    if r > 0:
        above = 0
        if u > eps and b2 > 0.0:
            above = min(r, int(math.log(eps / u) / math.log(b2)))
        drift = b1**above * geometric_sum(b1, r - above) / eps
        if above > 0:
            drift += geometric_sum(b1 / b2, above) / u
        w -= lr * m0 * a1 * drift
    return w


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
    step=step,
    catch_up=catch_up,
    effective_rate=effective_rate,
    pack=pack,
    constants=constants,
    n_constants=1,
)
