"""Compiled sums shared by the lazy catch-ups of several optimizers."""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba import types
from numba.core.extending import intrinsic


@intrinsic
def _float64_pointer(typingctx, address):
    signature = types.CPointer(types.float64)(types.intp)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.float64)))

    return signature, codegen


@intrinsic
def data_address(typingctx, array):
    """The address of ``array``'s data (``array.ctypes.data`` without the reference it holds)."""
    signature = types.intp(array)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.ptrtoint(data, context.get_value_type(types.intp))

    return signature, codegen


@nb.njit(nogil=True, cache=True, inline="always")
def unowned_view(address: int, size: int) -> np.ndarray:
    """The ``size`` float64s at ``address`` (see ``data_address``) as an array that numba does
    not reference-count; the caller keeps the array alive.

    A compiled function that passes an array to a call on any of its paths pays numba's atomic
    reference-count increment and decrement on every call, taken path or not (~20 ns, as much as
    a whole lazy catch-up). Fast paths hand their rare slow path an address instead.
    """
    return nb.carray(_float64_pointer(address), size)


# Relative size below which a remaining tail is dropped: far under float64's 2**-53 resolution.
TAIL_TOLERANCE = 2.0**-60
# b**k for k < POWER_SPLIT**2 as table[k // POWER_SPLIT] * table[POWER_SPLIT + k % POWER_SPLIT].
POWER_SPLIT = 1024


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def geometric_sum(r: float, k: int) -> float:
    """``r + r**2 + ... + r**k`` for ``r >= 0``, accurate also for ``r`` near 1."""
    if k <= 0 or r == 0.0:
        return 0.0
    if r == 1.0:
        return float(k)
    # r**k - 1 through expm1 keeps full relative accuracy when r is close to 1.
    return r * math.expm1(k * math.log(r)) / (r - 1.0)


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def geometric_decay(r: float, k: int) -> float:
    """``r**k`` with ``0**0 == 1``, through libm's pow: numba's ``r**k`` for an integer ``k`` is a
    loop, which costs more and keeps numba from pruning reference counts in the caller."""
    if k <= 0:
        return 1.0
    return math.pow(r, float(k))


def split_powers(b: float, scale: float = 1.0) -> np.ndarray:
    """The ``2 * POWER_SPLIT`` table ``split_power`` reads for the powers of ``b**scale``:
    ``b**(scale*POWER_SPLIT*i)``, then ``b**(scale*i)``, for ``i < POWER_SPLIT`` (each entry
    from its exact exponent, not from a rounded ``b**scale``)."""
    i = np.arange(POWER_SPLIT, dtype=np.float64)
    return np.concatenate([b ** (scale * POWER_SPLIT * i), b ** (scale * i)])


def geometric_sums(b: float) -> np.ndarray:
    """``sum_{i=1}^{k} b**i`` for ``k < POWER_SPLIT`` (``geometric_sum``, once per model)."""
    return np.array([geometric_sum(b, k) for k in range(POWER_SPLIT)])


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def split_power(hp: np.ndarray, table: int, k: int) -> float:
    """``b**k`` for ``0 <= k < POWER_SPLIT**2`` from the ``split_powers(b)`` table at
    ``hp[table]``, within a few ulps: two loads instead of a ``pow`` call (~35 ns)."""
    return hp[table + k // POWER_SPLIT] * hp[table + POWER_SPLIT + k % POWER_SPLIT]


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def tabulated_decay(hp: np.ndarray, table: int, b: float, k: int) -> float:
    """``b**k`` for ``k >= 0``: ``split_power`` below ``POWER_SPLIT**2``, ``pow`` beyond."""
    if k < POWER_SPLIT * POWER_SPLIT:
        return split_power(hp, table, k)
    return geometric_decay(b, k)


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def moment_tail_bound(
    scale: float, a1: float, a2: float, b1: float, sb2: float, sv: float, eps: float
) -> float:
    """Bound on ``sum_{i>=1} scale * a1*b1**i / max(sv*a2*sb2**i, eps)``.

    The zero-gradient drift of Adam-like optimizers: ``a1 = b1**j`` and ``a2 = sqrt(b2)**j`` after
    ``j`` missed steps, ``sv = sqrt(v0)``. Both ``b1**i/eps`` and, when ``b1 < sqrt(b2)``,
    ``(b1/sqrt(b2))**i / (sv*a2)`` bound the terms; the smaller geometric tail is returned.
    """
    bound = scale * a1 * b1 / ((1.0 - b1) * eps)
    q = b1 / sb2 if sb2 > 0.0 else math.inf
    if sv > 0.0 and q < 1.0:
        bound = min(bound, scale * (a1 / (sv * a2)) * q / (1.0 - q))
    return bound


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _geometric_sum_from_log(r: float, log_r: float, k: int) -> float:
    if r == 1.0:
        return float(k)
    if k * log_r < -45.0:  # r**k < 2**-64: below the sum's last bit
        return r / (1.0 - r)
    return r * math.expm1(k * log_r) / (r - 1.0)


@nb.njit(nogil=True, cache=True, error_model="numpy")
def ratio_sum(b1: float, log_b1: float, sb2: float, log_sb2: float, x: float, r: int) -> float:
    """``sum_{i=1}^{r} b1**i / (1 + x * sb2**i)`` for ``0 < b1 < 1``, ``0 < sb2 <= 1``, ``x >= 0``.

    The steady-state (bias corrections equal to 1) zero-gradient drift of Adam, with
    ``x = sqrt(v)/eps``. Up to 32 terms are added directly. Otherwise terms beyond ``i_max`` (where
    ``b1**i`` has made all of them together smaller than ``TAIL_TOLERANCE`` of the first term)
    are dropped; then, if every ``x*sb2**i`` is large (or every one is small), ``1/(1+y)`` is
    expanded as a geometric series in ``1/y`` (or ``y``), each order being a closed-form geometric
    sum, until an order adds less than ``TAIL_TOLERANCE`` of the sum. Otherwise (``x*sb2**i``
    crosses 1 within the first few hundred steps) the terms are added one by one.
    """
    if r <= 0 or b1 == 0.0:
        return 0.0
    total = 0.0
    if r <= 32:
        a1 = 1.0
        a2 = 1.0
        for _ in range(r):
            a1 *= b1
            a2 *= sb2
            total += a1 / (1.0 + x * a2)
        return total
    if r > 600:
        first = b1 / (1.0 + x * sb2)
        i_max = int(math.log(TAIL_TOLERANCE * (1.0 - b1) * first / b1) / log_b1) + 1
        r = min(r, i_max)
    if x == 0.0:
        return _geometric_sum_from_log(b1, log_b1, r)
    limit = 256.0
    if x * math.exp(r * log_sb2) >= limit:
        # 1/(1+y) = sum_n (-1)**n y**-(n+1)
        inverse = 1.0 / x
        power = inverse
        ratio = b1
        log_ratio = log_b1
        for _ in range(64):
            ratio /= sb2
            log_ratio -= log_sb2
            term = power * _geometric_sum_from_log(ratio, log_ratio, r)
            total += term
            if abs(term) <= TAIL_TOLERANCE * abs(total):
                break
            power *= -inverse
        return total
    if x * sb2 <= 1.0 / limit:
        # 1/(1+y) = sum_n (-y)**n
        power = 1.0
        ratio = b1
        log_ratio = log_b1
        for _ in range(64):
            term = power * _geometric_sum_from_log(ratio, log_ratio, r)
            total += term
            if abs(term) <= TAIL_TOLERANCE * abs(total):
                break
            power *= -x
            ratio *= sb2
            log_ratio += log_sb2
        return total
    a1 = 1.0
    a2 = 1.0
    for _ in range(r):
        a1 *= b1
        a2 *= sb2
        total += a1 / (1.0 + x * a2)
    return total
