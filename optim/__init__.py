"""adaserve's learning library: online logistic regression over sparse rows with lazy
per-coordinate optimizers, compiled with numba. No web code; usable alone from a notebook."""

# first: numba must cache every compiled function of the package under its source key
import optim._cache
import optim._numba_start  # noqa: F401  (before any kernel loads)
from optim.batch import Batch
from optim.errors import (
    AdaserveError,
    BatchError,
    ConfigError,
    ModelFileError,
    NonFiniteUpdate,
)
from optim.hashing import FeatureHasher, murmurhash3_32
from optim.model import LearnResult, OnlineLogisticRegression
from optim.optimizers import REGISTRY, get_optimizer
from optim.portfolio import PortfolioLogisticRegression, load_model, new_model

__all__ = [
    "REGISTRY",
    "AdaserveError",
    "Batch",
    "BatchError",
    "ConfigError",
    "FeatureHasher",
    "LearnResult",
    "ModelFileError",
    "NonFiniteUpdate",
    "OnlineLogisticRegression",
    "PortfolioLogisticRegression",
    "get_optimizer",
    "load_model",
    "murmurhash3_32",
    "new_model",
]
