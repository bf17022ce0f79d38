"""Slow, dense, plainly written reference for online logistic regression.

This module is a test oracle. It is written directly from the published update
equations (torch.optim's documented algorithms, and McMahan et al. 2013 for
FTRL-Proximal), in float64 numpy, with no attempt at speed. It must not share
code with the optimized implementation in ``optim/``.

Model
-----
The coordinate vector ``w`` has length ``dim + 1``; coordinate ``dim`` is the
intercept, whose feature value is 1 in every row (only when
``fit_intercept``; otherwise the intercept and its slots are never touched).

For row ``i`` (global step ``t = i + 1``)::

    margin = sum_j w[j] * x_j  (+ w[dim])
    p      = sigmoid(margin)             # recorded as the pre-update probability
    g[j]   = (p - y) * x_j * weight_i + l2 * w[j]    for present j
    g[dim] = (p - y) * weight_i                      (never l2)
    g[k]   = 0                                       for absent k

and then one optimizer step is applied with the gradient vector ``g``.

Laziness
--------
``lazy="exact"``: the dense algorithm. Every coordinate takes the step with its
gradient (0 when absent), exactly as a torch optimizer given a dense gradient.
So zero-gradient steps still decay moving averages and move weights through
momentum.

``lazy="frozen"``: only present coordinates (and the intercept) are stepped;
absent coordinates keep their weight and slots. Step counters, bias
corrections and NAdam's mu schedule still use the global step ``t``
(like ``torch.optim.SparseAdam``).

Normalized (Ross, Mineiro & Langford 2013, NG/NAG)
--------------------------------------------------
Each coordinate keeps ``scale[j]``, the largest ``|x_j|`` seen (the intercept's
value is 1). Before the step of a row, each present coordinate whose ``|x_j|``
exceeds its scale restates its state as if the new scale had held all along,
``r = old / new`` (when ``old > 0``): the weight times ``r`` (``r**2`` for SGD,
momentum and Nesterov, whose steps grow with the gradient), each slot times
``r**p`` for its power ``p`` of the gradient (``SLOT_POWERS``). Then
``T += weight_i``, ``N += weight_i * sum_j (x_j / scale[j])**2`` and the rate
correction is ``m = sqrt(T / N)`` (``T / N`` for SGD, momentum and Nesterov).
The optimizer steps ``u = scale * w`` with gradient ``g / scale``, ``m``
multiplying the gradient wherever it enters linearly (the weight step, first
moments, FTRL's ``z``); coordinates whose scale is still 0 take no steps.

Importance-invariant (Karampatziakis & Langford 2011; SGD and AdaGrad)
---------------------------------------------------------------------
AdaGrad first adds ``weight_i * g1**2`` to ``sum`` (``g1`` the unit-weight
gradient, normalized when normalized); each coordinate's rate ``rate_j`` (to a
raw gradient) is then fixed and the margin flows along
``dz/dh = ppu / (1 + exp(z))`` (``z = y * margin``, ``y = +-1``,
``ppu = sum_j rate_j x_j**2``) for ``h`` from 0 to ``weight_i``, whose solution
is ``z(h) = x - W(exp(x))``, ``x = h ppu + z0 + exp(z0)`` (W: Lambert's, via
``scipy.special.wrightomega``). Each weight moves by ``rate_j x_j`` times the
margin's change over ``ppu``, minus ``rate_j * weight_i * l2 * w_j``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import wrightomega

Row = tuple[np.ndarray, np.ndarray]

# Hyperparameter defaults per optimizer. Every optimizer except FTRL also has
# ``l2``, which is only ever added to the gradient of non-intercept coordinates.
DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.001, "l2": 0.0},
    "momentum": {"lr": 0.001, "momentum": 0.9, "l2": 0.0},
    "nesterov": {"lr": 0.001, "momentum": 0.9, "l2": 0.0},
    "adagrad": {
        "lr": 0.01,
        "lr_decay": 0.0,
        "eps": 1e-10,
        "initial_accumulator_value": 0.0,
        "l2": 0.0,
    },
    "rmsprop": {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "l2": 0.0},
    "adadelta": {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "l2": 0.0},
    "adam": {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8, "l2": 0.0},
    "adamax": {"lr": 0.002, "betas": (0.9, 0.999), "eps": 1e-8, "l2": 0.0},
    "nadam": {
        "lr": 0.002,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "momentum_decay": 0.004,
        "l2": 0.0,
    },
    "ftrl": {"alpha": 0.05, "beta": 1.0, "l1": 0.0, "l2": 0.0},
}

# Slot names per optimizer, in torch.optim's ``state`` naming.
SLOTS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "momentum": ("momentum_buffer",),
    "nesterov": ("momentum_buffer",),
    "adagrad": ("sum",),
    "rmsprop": ("square_avg",),
    "adadelta": ("square_avg", "acc_delta"),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamax": ("exp_avg", "exp_inf"),
    "nadam": ("exp_avg", "exp_avg_sq"),
    "ftrl": ("z", "n"),
}


# Normalized: each slot's power of the gradient (how it restates when a scale grows).
SLOT_POWERS: dict[str, tuple[int, ...]] = {
    "sgd": (),
    "momentum": (1,),
    "nesterov": (1,),
    "adagrad": (2,),
    "rmsprop": (2,),
    "adadelta": (2, 0),
    "adam": (1, 2),
    "adamax": (1, 1),
    "nadam": (1, 2),
    "ftrl": (1, 2),
}
GRADIENT_SCALED = ("sgd", "momentum", "nesterov")  # steps grow with the gradient


def resolve_hyperparameters(optimizer: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split ``{"name": ..., **hp}`` into the name and the full hyperparameter set.

    Unknown names and unknown hyperparameter keys raise ``ValueError`` (so a
    typo in a test cannot silently fall back to a default).
    """
    config = dict(optimizer)
    name = config.pop("name", None)
    if name not in DEFAULTS:
        raise ValueError(f"unknown optimizer name {name!r}; expected one of {sorted(DEFAULTS)}")
    unknown = set(config) - set(DEFAULTS[name])
    if unknown:
        raise ValueError(f"unknown hyperparameters for {name}: {sorted(unknown)}")
    hp = {**DEFAULTS[name], **config}
    if "betas" in hp:
        beta1, beta2 = hp["betas"]
        hp["betas"] = (float(beta1), float(beta2))
    return name, hp


def sigmoid(margin: float) -> float:
    """Numerically stable logistic function."""
    if margin >= 0.0:
        return 1.0 / (1.0 + math.exp(-margin))
    e = math.exp(margin)
    return e / (1.0 + e)


def dense_reference(
    optimizer: dict[str, Any],
    rows: list[Row],
    labels: np.ndarray,
    weights: np.ndarray | None,
    dim: int,
    lazy: str = "exact",
    fit_intercept: bool = True,
    normalized: bool = False,
    invariant: bool = False,
) -> dict[str, Any]:
    """Run online logistic regression over ``rows`` and return the final state.

    Returns ``{"weights": (dim+1,), "slots": {name: (dim+1,)},
    "probabilities": (n,)}``; the intercept is the last coordinate. Normalized:
    ``slots["scale"]`` too, and ``norm_sums`` = ``[T, N]``.
    """
    name, hp = resolve_hyperparameters(optimizer)
    if lazy not in ("exact", "frozen"):
        raise ValueError(f"lazy must be 'exact' or 'frozen', got {lazy!r}")
    labels = np.asarray(labels, dtype=np.float64)
    n_rows = len(rows)
    if labels.shape != (n_rows,):
        raise ValueError(f"labels must have shape ({n_rows},), got {labels.shape}")
    if weights is None:
        row_weights = np.ones(n_rows, dtype=np.float64)
    else:
        row_weights = np.asarray(weights, dtype=np.float64)
        if row_weights.shape != (n_rows,):
            raise ValueError(f"weights must have shape ({n_rows},), got {row_weights.shape}")

    size = dim + 1
    intercept = dim
    w = np.zeros(size, dtype=np.float64)
    slots = {slot: np.zeros(size, dtype=np.float64) for slot in SLOTS[name]}
    if name == "adagrad":
        slots["sum"][:] = hp["initial_accumulator_value"]
    # NAdam's running product of mu_t: one global scalar.
    scalars = {"mu_product": 1.0}
    scale = np.zeros(size, dtype=np.float64)
    total_weight = norm_sum = 0.0
    if invariant and name not in ("sgd", "adagrad"):
        raise ValueError(f"no importance-invariant form of {name}")

    probabilities = np.zeros(n_rows, dtype=np.float64)
    all_features = np.arange(dim, dtype=np.int64)

    for i, (indices, values) in enumerate(rows):
        t = i + 1
        indices = np.asarray(indices, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if indices.shape != values.shape or indices.ndim != 1:
            raise ValueError(f"row {i}: indices and values must be 1-d and of equal length")
        if len(np.unique(indices)) != len(indices):
            raise ValueError(f"row {i}: duplicate indices")
        if len(indices) and (indices.min() < 0 or indices.max() >= dim):
            raise ValueError(f"row {i}: index out of range [0, {dim})")

        # Forward pass with the pre-update weights.
        margin = float(np.dot(w[indices], values))
        if fit_intercept:
            margin += w[intercept]
        p = sigmoid(margin)
        probabilities[i] = p

        # Which coordinates take the step this time.
        features = all_features if lazy == "exact" else indices
        coords = np.append(features, intercept) if fit_intercept else features

        correction = 1.0
        if normalized:
            present = np.append(indices, intercept) if fit_intercept else indices
            magnitudes = np.abs(np.append(values, 1.0) if fit_intercept else values)
            norm = 0.0
            for j, magnitude in zip(present, magnitudes, strict=True):
                if magnitude > scale[j]:
                    if scale[j] > 0.0:
                        r = scale[j] / magnitude
                        w[j] *= r * r if name in GRADIENT_SCALED else r
                        for slot, power in zip(SLOTS[name], SLOT_POWERS[name], strict=True):
                            slots[slot][j] *= r**power
                    scale[j] = magnitude
                if scale[j] > 0.0:
                    norm += (magnitude / scale[j]) ** 2
            total_weight += row_weights[i]
            norm_sum += row_weights[i] * norm
            if norm_sum > 0.0:
                ratio = total_weight / norm_sum
                correction = ratio if name in GRADIENT_SCALED else math.sqrt(ratio)
            coords = coords[scale[coords] > 0.0]

        # Gradient vector (after any restatement): zero for absent coordinates.
        residual = (p - labels[i]) * row_weights[i]
        grad = np.zeros(size, dtype=np.float64)
        grad[indices] = residual * values
        if name != "ftrl":
            grad[indices] += hp["l2"] * w[indices]
        if fit_intercept:
            grad[intercept] = residual

        if invariant:
            present = np.append(indices, intercept) if fit_intercept else indices
            _invariant_step(
                name, hp, w, slots, scale if normalized else None, present,
                np.append(values, 1.0) if fit_intercept else values, p - labels[i],
                row_weights[i], margin, labels[i], t, correction, fit_intercept,
            )  # fmt: skip
        elif normalized:
            u = w * scale
            _step(name, hp, u, slots, scalars, grad / np.where(scale > 0, scale, 1.0), coords, t,
                  correction)  # fmt: skip
            w[coords] = u[coords] / scale[coords]
        else:
            _step(name, hp, w, slots, scalars, grad, coords, t)

    out = {"weights": w, "slots": slots, "probabilities": probabilities}
    if normalized:
        out["slots"] = {**slots, "scale": scale}
        out["norm_sums"] = np.array([total_weight, norm_sum])
    return out


def _invariant_step(
    name: str,
    hp: dict[str, Any],
    w: np.ndarray,
    slots: dict[str, np.ndarray],
    scale: np.ndarray | None,
    present: np.ndarray,
    x: np.ndarray,
    unit_residual: float,
    h: float,
    margin: float,
    label: float,
    t: int,
    correction: float,
    fit_intercept: bool,
) -> None:
    """SGD's or AdaGrad's importance-aware step on the row's coordinates ``present`` with
    values ``x`` (the intercept last, value 1, when ``fit_intercept``)."""
    lr = hp["lr"] if name == "sgd" else hp["lr"] / (1.0 + (t - 1) * hp["lr_decay"])
    l2 = np.full(len(present), hp["l2"])
    if fit_intercept:
        l2[-1] = 0.0
    rates = np.zeros(len(present))
    for k, j in enumerate(present):
        s = 1.0 if scale is None else scale[j]
        if s == 0.0:  # normalized, never a nonzero value: no step
            continue
        unit_gradient = (unit_residual * x[k] + l2[k] * w[j]) / s
        if name == "adagrad":
            slots["sum"][j] += h * unit_gradient**2
            rate = lr / (math.sqrt(slots["sum"][j]) + hp["eps"])
        else:
            rate = lr
        rates[k] = rate * correction / s**2
    ppu = float(np.sum(rates * x**2))
    if ppu > 0.0:
        y = 1.0 if label == 1.0 else -1.0
        z0 = y * margin
        flow = h * ppu + z0 + math.exp(z0)
        z = flow - float(np.real(wrightomega(flow)))
        coefficient = -y * (z - z0) / ppu
    else:
        coefficient = (sigmoid(margin) - label) * h
    for k, j in enumerate(present):
        w[j] -= rates[k] * (coefficient * x[k] + h * l2[k] * w[j])


def _step(
    name: str,
    hp: dict[str, Any],
    w: np.ndarray,
    slots: dict[str, np.ndarray],
    scalars: dict[str, float],
    grad: np.ndarray,
    c: np.ndarray,
    t: int,
    correction: float = 1.0,
) -> None:
    """Apply one step of optimizer ``name`` to the coordinates ``c`` (in place); the rate
    correction of normalized models multiplies the gradient where it enters linearly."""
    g = grad[c]
    gm = correction * g

    if name == "sgd":
        w[c] -= hp["lr"] * gm

    elif name == "momentum":
        b = slots["momentum_buffer"]
        b[c] = hp["momentum"] * b[c] + gm
        w[c] -= hp["lr"] * b[c]

    elif name == "nesterov":
        b = slots["momentum_buffer"]
        b[c] = hp["momentum"] * b[c] + gm
        w[c] -= hp["lr"] * (gm + hp["momentum"] * b[c])

    elif name == "adagrad":
        s = slots["sum"]
        clr = hp["lr"] / (1.0 + (t - 1) * hp["lr_decay"])
        s[c] = s[c] + g * g
        w[c] -= clr * gm / (np.sqrt(s[c]) + hp["eps"])

    elif name == "rmsprop":
        v = slots["square_avg"]
        alpha = hp["alpha"]
        v[c] = alpha * v[c] + (1.0 - alpha) * g * g
        w[c] -= hp["lr"] * gm / (np.sqrt(v[c]) + hp["eps"])

    elif name == "adadelta":
        v = slots["square_avg"]
        u = slots["acc_delta"]
        rho, eps = hp["rho"], hp["eps"]
        v[c] = rho * v[c] + (1.0 - rho) * g * g
        delta = np.sqrt(u[c] + eps) / np.sqrt(v[c] + eps) * g
        u[c] = rho * u[c] + (1.0 - rho) * delta * delta
        w[c] -= hp["lr"] * correction * delta

    elif name == "adam":
        m = slots["exp_avg"]
        v = slots["exp_avg_sq"]
        beta1, beta2 = hp["betas"]
        m[c] = beta1 * m[c] + (1.0 - beta1) * gm
        v[c] = beta2 * v[c] + (1.0 - beta2) * g * g
        bias_correction1 = 1.0 - beta1**t
        bias_correction2 = 1.0 - beta2**t
        denom = np.sqrt(v[c]) / math.sqrt(bias_correction2) + hp["eps"]
        w[c] -= (hp["lr"] / bias_correction1) * m[c] / denom

    elif name == "adamax":
        m = slots["exp_avg"]
        u = slots["exp_inf"]
        beta1, beta2 = hp["betas"]
        m[c] = beta1 * m[c] + (1.0 - beta1) * gm
        # eps sits inside the max (torch.optim.Adamax), not in the denominator.
        u[c] = np.maximum(beta2 * u[c], np.abs(g) + hp["eps"])
        w[c] -= (hp["lr"] / (1.0 - beta1**t)) * m[c] / u[c]

    elif name == "nadam":
        m = slots["exp_avg"]
        v = slots["exp_avg_sq"]
        beta1, beta2 = hp["betas"]
        lr, decay = hp["lr"], hp["momentum_decay"]
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * decay))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * decay))
        scalars["mu_product"] *= mu
        mu_product = scalars["mu_product"]
        m[c] = beta1 * m[c] + (1.0 - beta1) * gm
        v[c] = beta2 * v[c] + (1.0 - beta2) * g * g
        denom = np.sqrt(v[c] / (1.0 - beta2**t)) + hp["eps"]
        w[c] -= lr * (1.0 - mu) / (1.0 - mu_product) * gm / denom
        w[c] -= lr * mu_next / (1.0 - mu_product * mu_next) * m[c] / denom

    elif name == "ftrl":
        _ftrl_step(hp, w, slots, grad, c, correction)

    else:  # pragma: no cover - resolve_hyperparameters rejects unknown names
        raise ValueError(name)


def _ftrl_step(
    hp: dict[str, Any],
    w: np.ndarray,
    slots: dict[str, np.ndarray],
    grad: np.ndarray,
    coords: np.ndarray,
    correction: float = 1.0,
) -> None:
    """FTRL-Proximal, McMahan et al. 2013, Algorithm 1, one coordinate at a time.

    The intercept (last coordinate) is never regularized: l1 = l2 = 0 for it.
    A zero gradient leaves z and n unchanged and so reproduces the same w;
    stepping absent coordinates (exact mode) is therefore a no-op.
    """
    z, n = slots["z"], slots["n"]
    alpha, beta = hp["alpha"], hp["beta"]
    intercept = len(w) - 1
    for j in coords:
        g = grad[j]
        sigma = (math.sqrt(n[j] + g * g) - math.sqrt(n[j])) / alpha
        z[j] += correction * g - sigma * w[j]
        n[j] += g * g
        l1 = 0.0 if j == intercept else hp["l1"]
        l2 = 0.0 if j == intercept else hp["l2"]
        if abs(z[j]) <= l1:
            w[j] = 0.0
        else:
            w[j] = -(z[j] - math.copysign(l1, z[j])) / ((beta + math.sqrt(n[j])) / alpha + l2)
