"""Online logistic regression driven by ``torch.optim`` itself (float64).

A second, independent oracle next to :mod:`reference`: the model, gradient and
return value are the same as ``dense_reference`` (see that module's docstring),
but every optimizer step is performed by the real torch optimizer.

* One parameter tensor holds all coordinates, intercept last. When
  ``fit_intercept`` is False the tensor has size ``dim`` only, and the
  returned intercept weight / slots are padded with their initial values, so
  the intercept stays "untouched" exactly as in ``dense_reference`` (a dense
  torch step on a zero-gradient intercept would otherwise still change, e.g.,
  Adamax's ``exp_inf`` to ``eps``).
* The gradient is built by hand (no autograd): ``(p - y) * x * weight`` plus
  ``l2 * w`` on present feature coordinates only, ``(p - y) * weight`` on the
  intercept, zero elsewhere. torch's own ``weight_decay`` is not used because
  it would also decay the intercept and the absent coordinates.
* ``lazy="exact"``: dense gradient into SGD (momentum / nesterov), Adagrad,
  RMSprop, Adadelta, Adam, Adamax or NAdam, all with ``foreach=False`` (the
  single-tensor code path, which is also the CPU default).
* ``lazy="frozen"``: only ``adam`` is supported, through
  ``torch.optim.SparseAdam`` with a sparse COO gradient listing every present
  coordinate (and the intercept), even where its value is exactly zero.

SparseAdam is *not* a masked copy of Adam: it adds ``eps`` to ``sqrt(v)``
before the bias correction::

    Adam:        w -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
    SparseAdam:  w -= lr * sqrt(bc2) / bc1 * m / (sqrt(v) + eps)
               = lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps / sqrt(bc2))

with ``bc1 = 1 - beta1**t``, ``bc2 = 1 - beta2**t``. So SparseAdam behaves like
frozen Adam with a step-dependent effective eps of ``eps / sqrt(bc2)`` (about
31.6x larger at t=1, tending to ``eps``). ``dense_reference(..., lazy="frozen")``
uses Adam's placement, so the two agree exactly only when ``eps == 0``.
Its step counter is the number of ``step()`` calls (the global step), and it
still counts a call whose sparse gradient has no entries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Row = tuple[np.ndarray, np.ndarray]

# Written out again here (not imported from reference.py) to keep the two
# oracles independent. Note torch's own SGD default is momentum=0.
TORCH_DEFAULTS: dict[str, dict[str, Any]] = {
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
}

TORCH_SLOTS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "momentum": ("momentum_buffer",),
    "nesterov": ("momentum_buffer",),
    "adagrad": ("sum",),
    "rmsprop": ("square_avg",),
    "adadelta": ("square_avg", "acc_delta"),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamax": ("exp_avg", "exp_inf"),
    "nadam": ("exp_avg", "exp_avg_sq"),
}


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "torch_reference needs PyTorch; install torch (CPU build is enough)"
        ) from exc
    # Vectors of a few dozen entries: extra intra-op threads only contend for the 2 cores.
    torch.set_num_threads(1)
    return torch


def _make_optimizer(torch: Any, name: str, hp: dict[str, Any], param: Any, lazy: str) -> Any:
    optim = torch.optim
    if lazy == "frozen":
        if name != "adam":
            raise ValueError(f"torch_reference supports lazy='frozen' only for adam, not {name!r}")
        return optim.SparseAdam([param], lr=hp["lr"], betas=hp["betas"], eps=hp["eps"])
    if name == "sgd":
        return optim.SGD([param], lr=hp["lr"], momentum=0.0, foreach=False)
    if name in ("momentum", "nesterov"):
        return optim.SGD(
            [param],
            lr=hp["lr"],
            momentum=hp["momentum"],
            dampening=0.0,
            nesterov=(name == "nesterov"),
            foreach=False,
        )
    if name == "adagrad":
        return optim.Adagrad(
            [param],
            lr=hp["lr"],
            lr_decay=hp["lr_decay"],
            eps=hp["eps"],
            initial_accumulator_value=hp["initial_accumulator_value"],
            foreach=False,
        )
    if name == "rmsprop":
        return optim.RMSprop(
            [param],
            lr=hp["lr"],
            alpha=hp["alpha"],
            eps=hp["eps"],
            momentum=0.0,
            centered=False,
            foreach=False,
        )
    if name == "adadelta":
        return optim.Adadelta([param], lr=hp["lr"], rho=hp["rho"], eps=hp["eps"], foreach=False)
    if name == "adam":
        return optim.Adam([param], lr=hp["lr"], betas=hp["betas"], eps=hp["eps"], foreach=False)
    if name == "adamax":
        return optim.Adamax([param], lr=hp["lr"], betas=hp["betas"], eps=hp["eps"], foreach=False)
    if name == "nadam":
        return optim.NAdam(
            [param],
            lr=hp["lr"],
            betas=hp["betas"],
            eps=hp["eps"],
            momentum_decay=hp["momentum_decay"],
            foreach=False,
        )
    raise AssertionError(name)  # pragma: no cover


def torch_reference(
    optimizer: dict[str, Any],
    rows: list[Row],
    labels: np.ndarray,
    weights: np.ndarray | None,
    dim: int,
    lazy: str = "exact",
    fit_intercept: bool = True,
) -> dict[str, Any]:
    """Same contract as ``reference.dense_reference`` for the nine torch optimizers."""
    torch = _import_torch()
    config = dict(optimizer)
    name = config.pop("name", None)
    if name not in TORCH_DEFAULTS:
        raise ValueError(f"torch_reference: no torch optimizer for {name!r}")
    unknown = set(config) - set(TORCH_DEFAULTS[name])
    if unknown:
        raise ValueError(f"unknown hyperparameters for {name}: {sorted(unknown)}")
    hp = {**TORCH_DEFAULTS[name], **config}
    if "betas" in hp:
        hp["betas"] = (float(hp["betas"][0]), float(hp["betas"][1]))
    if lazy not in ("exact", "frozen"):
        raise ValueError(f"lazy must be 'exact' or 'frozen', got {lazy!r}")

    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _run(torch, name, hp, rows, labels, weights, dim, lazy, fit_intercept)
    finally:
        torch.set_default_dtype(previous_dtype)


def _run(
    torch: Any,
    name: str,
    hp: dict[str, Any],
    rows: list[Row],
    labels: np.ndarray,
    weights: np.ndarray | None,
    dim: int,
    lazy: str,
    fit_intercept: bool,
) -> dict[str, Any]:
    n_rows = len(rows)
    labels = np.asarray(labels, dtype=np.float64)
    row_weights = (
        np.ones(n_rows, dtype=np.float64)
        if weights is None
        else np.asarray(weights, dtype=np.float64)
    )
    size = dim + 1 if fit_intercept else dim
    intercept = dim  # only meaningful when fit_intercept

    param = torch.zeros(size, dtype=torch.float64, requires_grad=True)
    opt = _make_optimizer(torch, name, hp, param, lazy)
    probabilities = np.zeros(n_rows, dtype=np.float64)

    for i, (indices, values) in enumerate(rows):
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        x = torch.as_tensor(np.asarray(values, dtype=np.float64))

        with torch.no_grad():
            w = param.detach()
            margin = torch.dot(w[idx], x)
            if fit_intercept:
                margin = margin + w[intercept]
            p = torch.sigmoid(margin).item()
            probabilities[i] = p

            residual = (p - float(labels[i])) * float(row_weights[i])
            feature_grad = residual * x + hp["l2"] * w[idx]

            if lazy == "exact":
                grad = torch.zeros(size, dtype=torch.float64)
                grad[idx] = feature_grad
                if fit_intercept:
                    grad[intercept] = residual
            else:
                sparse_idx = idx
                sparse_val = feature_grad
                if fit_intercept:
                    sparse_idx = torch.cat([idx, torch.tensor([intercept], dtype=torch.int64)])
                    sparse_val = torch.cat([feature_grad, torch.tensor([residual])])
                grad = torch.sparse_coo_tensor(
                    sparse_idx.reshape(1, -1),
                    sparse_val,
                    (size,),
                    dtype=torch.float64,
                    check_invariants=True,
                )

        param.grad = grad
        opt.step()

    weights_out = np.zeros(dim + 1, dtype=np.float64)
    weights_out[:size] = param.detach().numpy()
    state = opt.state[param]
    slots: dict[str, np.ndarray] = {}
    for slot in TORCH_SLOTS[name]:
        initial = hp["initial_accumulator_value"] if slot == "sum" else 0.0
        out = np.full(dim + 1, initial, dtype=np.float64)
        value = state.get(slot)
        if value is not None:  # e.g. no momentum_buffer before the first step
            out[:size] = value.detach().numpy()
        slots[slot] = out
    return {"weights": weights_out, "slots": slots, "probabilities": probabilities}
