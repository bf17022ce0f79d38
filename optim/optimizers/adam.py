"""Adam: bias-corrected first and second moment estimates.

Update (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization"; ``torch.optim.Adam`` with
``amsgrad=False``)::

    m <- b1 * m + (1 - b1) * g
    v <- b2 * v + (1 - b2) * g**2
    w <- w - (lr / (1 - b1**t)) * m / (sqrt(v) / sqrt(1 - b2**t) + eps)

State slots: ``exp_avg`` (``m``), ``exp_avg_sq`` (``v``).
Effective learning rate (the factor on ``m``): ``(lr / bc1) / (sqrt(v) / sqrt(bc2) + eps)`` with
``bc1 = 1 - b1**t`` and ``bc2 = 1 - b2**t``.

Lazy catch-up over ``k`` zero-gradient steps ``s = t_last+1 .. t_last+k`` (``j = s - t_last``)::

    m <- b1**k m,   v <- b2**k v
    w <- w - sum_j (lr / (1 - b1**s)) * b1**j m / (sqrt(b2**j v) / sqrt(1 - b2**s) + eps)

The sum has no closed form because of ``eps``. While the bias corrections still differ from 1
(``b1**s`` or ``b2**s`` >= 2**-60: the first ~41,600 steps at the default betas) its terms are
added from per-model tables of ``lr/(1-b1**s)``, ``1/sqrt(1-b2**s)``, ``b1**j`` and ``sqrt(b2)**j``
in branch-free blocks of 16 (vectorized), stopping when a geometric bound on all remaining terms
(``moment_tail_bound``) is below 2**-60 of the sum (a few hundred terms at most). Afterwards the
sum is ``(lr m/eps) * sum_i b1**i / (1 + x sqrt(b2)**i)`` with ``x = sqrt(v)/eps``: up to 64
terms from the tables, beyond that ``ratio_sum``'s few closed-form geometric series.
``lazy="frozen"`` keeps absent coordinates as they are and still uses the global ``t`` in the
bias corrections, as
``torch.optim.SparseAdam`` and TensorFlow's LazyAdam do (SparseAdam puts ``eps`` inside the bias
correction: ``sqrt(v) + eps`` is divided by ``sqrt(bc2)``).

>>> from optim import OnlineLogisticRegression
>>> OnlineLogisticRegression("adam", dim=8).optimizer_params
{'lr': 0.001, 'betas': (0.9, 0.999), 'eps': 1e-08, 'l2': 0.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba as nb
import numpy as np

from optim.optimizers._series import TAIL_TOLERANCE, moment_tail_bound, ratio_sum
from optim.optimizers.base import Hyperparameter, OptimizerSpec, l2_hyperparameter

LR, BETA1, BETA2, EPS, LOG_BETA1, SQRT_BETA2, LOG_SQRT_BETA2, STEADY_STEP = range(8)
TABLE_STEPS, TABLE_POWERS, HEADER = 8, 9, 10
BIAS_STEP, INVERSE_SQRT_BIAS2 = 0, 1


@nb.njit(nogil=True, cache=True, error_model="numpy")
def constants(t: int, hp: np.ndarray, c: np.ndarray) -> None:
    c[BIAS_STEP] = hp[LR] / (1.0 - hp[BETA1] ** t)
    c[INVERSE_SQRT_BIAS2] = 1.0 / math.sqrt(1.0 - hp[BETA2] ** t)


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def effective_rate(s: np.ndarray, c: np.ndarray, hp: np.ndarray) -> float:
    return c[BIAS_STEP] / (math.sqrt(s[1]) * c[INVERSE_SQRT_BIAS2] + hp[EPS])


@nb.njit(nogil=True, cache=True, error_model="numpy")
def step(
    w: float, s: np.ndarray, g: float, c: np.ndarray, hp: np.ndarray, regularize: bool
) -> float:
    s[0] = hp[BETA1] * s[0] + (1.0 - hp[BETA1]) * g
    s[1] = hp[BETA2] * s[1] + (1.0 - hp[BETA2]) * g * g
    return w - effective_rate(s, c, hp) * s[0]


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _tables(hp: np.ndarray) -> tuple[int, int, int, int]:
    """Offsets in ``hp`` of lr/(1-b1**s), 1/sqrt(1-b2**s), b1**j and sqrt(b2)**j (see pack)."""
    bias1 = HEADER
    bias2 = bias1 + int(hp[TABLE_STEPS]) + 1
    powers1 = bias2 + int(hp[TABLE_STEPS]) + 1
    return bias1, bias2, powers1, powers1 + int(hp[TABLE_POWERS]) + 1


@nb.njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _tabulated_drift(hp: np.ndarray, sv: float, t_last: int, k: int) -> tuple[int, float, bool]:
    """The bias-correction phase of the drift per unit of ``m``, from the per-model tables.

    Blocks of 16 terms without branches (so the compiler vectorizes them), then the tail bound.
    Returns (terms taken, their sum, whether the bound says the rest is negligible).
    """
    b1, eps, sb2 = hp[BETA1], hp[EPS], hp[SQRT_BETA2]
    a0, b0, p10, p20 = _tables(hp)
    limit = min(k, int(hp[TABLE_POWERS]))
    total = 0.0
    j = 0
    while j < limit:
        stop = min(limit, j + 16)
        for i in range(j + 1, stop + 1):
            s = t_last + i
            total += hp[a0 + s] * hp[p10 + i] / (sv * hp[p20 + i] * hp[b0 + s] + eps)
        j = stop
        scale = hp[a0 + t_last + j + 1]
        if j == k or moment_tail_bound(scale, hp[p10 + j], hp[p20 + j], b1, sb2, sv, eps) <= (
            TAIL_TOLERANCE * abs(total)
        ):
            return j, total, True
    return j, total, False


@nb.njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _short_steady_drift(hp: np.ndarray, sv: float, k: int) -> float:
    """Per unit of ``m``, ``k <= 64`` steps once the bias corrections are 1: vectorizable."""
    _, _, p10, p20 = _tables(hp)
    total = 0.0
    for i in range(1, k + 1):
        total += hp[p10 + i] / (sv * hp[p20 + i] + hp[EPS])
    return hp[LR] * total


@nb.njit(nogil=True, cache=True, error_model="numpy")
def zero_gradient_drift(hp: np.ndarray, m0: float, v0: float, t_last: int, k: int) -> float:
    """How far ``k`` zero-gradient Adam steps after step ``t_last`` move the weight (see above)."""
    lr, b1, b2, eps, sb2 = hp[LR], hp[BETA1], hp[BETA2], hp[EPS], hp[SQRT_BETA2]
    sv = math.sqrt(v0)
    total = 0.0
    j = 0
    if t_last < hp[STEADY_STEP]:
        j, per_unit, done = _tabulated_drift(hp, sv, t_last, k)
        total = per_unit * m0
        if done:
            return total
    elif k <= min(64, hp[TABLE_POWERS]):
        return _short_steady_drift(hp, sv, k) * m0
    a1 = b1**j
    a2 = sb2**j
    p1 = b1 ** (t_last + j)
    p2 = b2 ** (t_last + j)
    # Beyond the tables (b1**j < 2**-120 yet the tail bound unmet: huge |m|/eps): term by term.
    while j < k and (p1 >= TAIL_TOLERANCE or p2 >= TAIL_TOLERANCE):
        j += 1
        p1 *= b1
        p2 *= b2
        a1 *= b1
        a2 *= sb2
        total += lr / (1.0 - p1) * a1 * m0 / (sv * a2 / math.sqrt(1.0 - p2) + eps)
        tail = moment_tail_bound(lr * abs(m0) / (1.0 - p1 * b1), a1, a2, b1, sb2, sv, eps)
        if tail <= TAIL_TOLERANCE * abs(total):
            return total
    if j < k:
        x = sv * a2 / eps
        total += (
            lr * m0 * a1 / eps
            * ratio_sum(b1, hp[LOG_BETA1], sb2, hp[LOG_SQRT_BETA2], x, k - j)
        )  # fmt: skip
    return total


@nb.njit(nogil=True, cache=True, error_model="numpy")
def catch_up(w: float, s: np.ndarray, t_last: int, t_now: int, hp: np.ndarray) -> float:
    k = t_now - t_last
    m0, v0 = s[0], s[1]
    if k <= hp[TABLE_POWERS]:
        _, _, p10, p20 = _tables(hp)
        s[0] = m0 * hp[p10 + k]
        s[1] = v0 * hp[p20 + k] * hp[p20 + k]
    else:
        s[0] = m0 * hp[BETA1] ** k
        s[1] = v0 * hp[BETA2] ** k
    if m0 == 0.0:
        return w
    return w - zero_gradient_drift(hp, m0, v0, t_last, k)


def pack(p: Mapping[str, Any]) -> np.ndarray:
    """Hyperparameters, derived constants, and the tables of the bias-correction phase.

    The tables hold ``lr/(1-b1**s)`` and ``1/sqrt(1-b2**s)`` for every step ``s`` up to the end of
    that phase plus ``J``, and ``b1**j``, ``sqrt(b2)**j`` for ``j <= J`` where ``b1**J < 2**-120``
    (about 700 KB at the default betas).
    """
    b1, b2 = p["betas"]
    # First step from which b1**t and b2**t are both below TAIL_TOLERANCE (bias corrections == 1).
    steady = max(
        math.ceil(math.log(TAIL_TOLERANCE) / math.log(b)) if b > 0 else 0 for b in (b1, b2)
    )
    powers = min(math.ceil(-120 * math.log(2) / math.log(b1)) if b1 > 0 else 1, 1 << 16)
    span = steady + powers + 1
    with np.errstate(divide="ignore"):
        s = np.arange(span + 1, dtype=np.float64)
        bias1 = p["lr"] / (1.0 - b1**s)
        bias2 = 1.0 / np.sqrt(1.0 - b2**s)
    j = np.arange(powers + 1, dtype=np.float64)
    header = [
        p["lr"], b1, b2, p["eps"],
        math.log(b1) if b1 > 0 else -math.inf,
        math.sqrt(b2), math.log(b2) / 2 if b2 > 0 else -math.inf,
        float(steady), float(span), float(powers),
    ]  # fmt: skip
    return np.concatenate([header, bias1, bias2, b1**j, math.sqrt(b2) ** j])


def betas(default: tuple[float, float]) -> Hyperparameter:
    return Hyperparameter("betas", default, 0.0, 1.0, high_open=True)


SPEC = OptimizerSpec(
    name="adam",
    hyperparameters=(
        Hyperparameter("lr", 1e-3, 0.0, low_open=True),
        betas((0.9, 0.999)),
        Hyperparameter("eps", 1e-8, 0.0, low_open=True),
        l2_hyperparameter(),
    ),
    slots=("exp_avg", "exp_avg_sq"),
    step=step,
    catch_up=catch_up,
    effective_rate=effective_rate,
    pack=pack,
    constants=constants,
    n_constants=2,
)
