"""The optimizer registry: one module per optimizer, one line here per module."""

from __future__ import annotations

from optim.errors import ConfigError
from optim.optimizers import (
    adadelta,
    adagrad,
    adam,
    adamax,
    ftrl,
    momentum,
    nadam,
    nesterov,
    rmsprop,
    sgd,
)
from optim.optimizers.base import Hyperparameter, OptimizerSpec

REGISTRY: dict[str, OptimizerSpec] = {
    module.SPEC.name: module.SPEC
    for module in (sgd, momentum, nesterov, adagrad, rmsprop, adadelta, adam, adamax, nadam, ftrl)
}


def get_optimizer(name: object) -> OptimizerSpec:
    """The optimizer called ``name``, or a ConfigError listing the valid names."""
    if not isinstance(name, str) or name.lower() not in REGISTRY:
        raise ConfigError(
            f"unknown optimizer {name!r}; valid: {sorted(REGISTRY)}", field="optimizer.name"
        )
    return REGISTRY[name.lower()]


__all__ = ["REGISTRY", "Hyperparameter", "OptimizerSpec", "get_optimizer"]
