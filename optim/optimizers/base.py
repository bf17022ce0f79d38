"""What an optimizer module provides, and the validation of its hyperparameters.

An optimizer is a set of functions compiled with numba, working on one coordinate's weight ``w``
(a float) and state slots ``s`` (a small float64 array, updated in place). ``hp`` is the packed
hyperparameter array (``pack``), which may carry derived constants too.

``constants(t, hp, c)``
    Fills ``c`` (length ``n_constants``) with what step ``t`` shares across coordinates (bias
    corrections, decayed rates), once per row instead of once per non-zero.
``step(w, s, g, c, hp, regularize) -> w``
    One update with gradient ``g`` using the constants of its step. ``regularize`` is False for
    the intercept (only FTRL uses it: the others get their ``l2`` in the gradient from the loop).
``catch_up(w, s, t_last, t_now, hp) -> w``
    The steps ``t_last+1 .. t_now`` with a zero gradient, as the dense algorithm would take them
    (``lazy="exact"``). Closed forms where they exist; bounded loops with a documented stopping
    rule where they don't.
``effective_rate(s, c, hp) -> float``
    The factor the optimizer multiplies a gradient (or, for momentum methods, its first moment)
    by, with the constants ``c`` of the model's current step.
``accumulate(s, g, h)`` (SGD and AdaGrad only: what ``invariant`` needs)
    Adds to the state what ``h`` rows of gradient ``g`` add (AdaGrad: ``h * g**2``), leaving the
    weight: the loop then takes the importance-aware step with the rates this leaves.

``c`` holds one entry past ``n_constants``: the global rate correction of ``normalized`` models
(:func:`rate_correction`, 1.0 otherwise). A step multiplies each gradient it adds to a quantity
linear in gradients (the weight itself, a first moment, FTRL's ``z``) by it and feeds squares,
maxima and ratios the uncorrected gradient: the correction acts when the gradient arrives, so a
zero-gradient step, and thus the lazy catch-up, does not depend on it.

Normalized models (Ross, Mineiro & Langford 2013, "Normalized Online Learning"; VW's
``--normalized``) keep a coordinate's largest ``|x|``, ``scale``, and run the optimizer on
``u = scale * w`` with gradient ``g / scale``: the state slots hold normalized quantities. When the
scale grows by ``r = old / new``, everything is restated as if the new scale had held from the
start: a slot of gradient power ``p`` (``slot_gradient_powers``) is multiplied by ``r**p``, and the
weight by ``r`` when the optimizer is ``scale_free`` (its normalized weight ``u`` stays) and by
``r**2`` otherwise (``u`` shrinks like the gradients that made it).

The compiled online loop in :mod:`optim.kernels` is shared by every optimizer and calls these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numba as nb
import numpy as np

from optim.errors import ConfigError


@dataclass(frozen=True)
class Hyperparameter:
    """One named setting: its default, its allowed interval and what it means."""

    name: str
    default: float | tuple[float, float]
    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    doc: str = ""

    def validate(self, value: object) -> float | tuple[float, float]:
        if isinstance(self.default, tuple):
            if not isinstance(value, list | tuple) or len(value) != len(self.default):
                raise ConfigError(
                    f"must be a pair of numbers, got {value!r}", field=f"optimizer.{self.name}"
                )
            return tuple(self._check(v, f"{self.name}[{i}]") for i, v in enumerate(value))  # type: ignore[return-value]
        return self._check(value, self.name)

    def _check(self, value: object, label: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ConfigError(f"must be a number, got {value!r}", field=f"optimizer.{label}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            number = math.inf if value > 0 else -math.inf
        too_low = number < self.low or (self.low_open and number == self.low)
        too_high = number > self.high or (self.high_open and number == self.high)
        if not math.isfinite(number) or too_low or too_high:
            interval = (
                f"{'(' if self.low_open else '['}{self.low:g}, "
                f"{self.high:g}{')' if self.high_open or math.isinf(self.high) else ']'}"
            )
            raise ConfigError(f"must be in {interval}, got {value!r}", field=f"optimizer.{label}")
        return number


def l2_hyperparameter() -> Hyperparameter:
    return Hyperparameter(
        "l2",
        0.0,
        0.0,
        doc="per-occurrence L2: a coordinate present in the row gets l2*w added to its gradient",
    )


@nb.njit(nogil=True, cache=True, error_model="numpy")
def no_constants(t: int, hp: np.ndarray, c: np.ndarray) -> None:
    """For optimizers whose steps do not depend on the step number."""


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def rate_correction(c: np.ndarray) -> float:
    """The global rate correction the loop puts after a step's constants (see the docstring)."""
    return c[c.shape[0] - 1]


@nb.njit(nogil=True, cache=True, error_model="numpy")
def no_accumulation(s: np.ndarray, g: float, h: float) -> None:
    """``accumulate`` of optimizers without importance-invariant updates (never called)."""


def _no_initial_state(params: Mapping[str, Any]) -> tuple[float, ...]:
    return ()


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything the model needs to know about one optimizer."""

    name: str
    hyperparameters: tuple[Hyperparameter, ...]
    slots: tuple[str, ...]
    step: Callable[..., float]
    catch_up: Callable[..., float]
    effective_rate: Callable[..., float]
    pack: Callable[[Mapping[str, Any]], np.ndarray]
    initial_slots: Callable[[Mapping[str, Any]], tuple[float, ...]] = field(
        default=_no_initial_state
    )
    constants: Callable[..., None] = no_constants
    n_constants: int = 0
    l2_in_gradient: bool = True
    lazy_modes_coincide: bool = False
    # Slots that no update can make negative (sums and averages of squares, their maxima): a
    # loaded state with a negative one was not written by this optimizer.
    nonnegative_slots: tuple[str, ...] = ()
    # Normalized models (see the module docstring): each slot's power of the gradient, and
    # whether a step is unchanged when every gradient is multiplied by a constant (then the
    # global correction is sqrt(T / N), else T / N).
    slot_gradient_powers: tuple[int, ...] = ()
    scale_free: bool = True
    # Importance-invariant updates: None for optimizers without them.
    accumulate: Callable[..., None] | None = None

    def __post_init__(self) -> None:
        stray = sorted(set(self.nonnegative_slots) - set(self.slots))
        if stray:
            raise ValueError(f"{self.name}: nonnegative_slots {stray} are not slots")
        if len(self.slot_gradient_powers) != len(self.slots):
            raise ValueError(f"{self.name}: one slot_gradient_powers entry per slot")

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validated hyperparameters with defaults filled in (``name`` excluded)."""
        known = {h.name: h for h in self.hyperparameters}
        unknown = sorted(set(params) - set(known) - {"name"})
        if unknown:
            raise ConfigError(
                f"unknown hyperparameter(s) {unknown} for {self.name}; valid: {sorted(known)}",
                field=f"optimizer.{unknown[0]}",
            )
        return {
            h.name: h.validate(params[h.name]) if h.name in params else h.default
            for h in self.hyperparameters
        }

    def initial_slot_values(self, params: Mapping[str, Any]) -> tuple[float, ...]:
        values = self.initial_slots(params)
        return values if values else (0.0,) * len(self.slots)
