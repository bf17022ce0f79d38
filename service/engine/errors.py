"""What a model's engine refuses, in its own terms; :mod:`service.errors` alone maps each kind
to an HTTP status and code (the engine holds no HTTP)."""

from __future__ import annotations


class EngineError(Exception):
    """An operation on model ``model`` was refused; ``detail`` says why in a sentence, and
    ``field`` names the request's field at fault, if one is."""

    field: str | None = None

    def __init__(self, model: str, detail: str) -> None:
        super().__init__(detail)
        self.model, self.detail = model, detail


class ModelNotFound(EngineError):
    """No model of that name."""

    def __init__(self, model: str) -> None:
        super().__init__(model, f"no model named {model!r}")


class ModelExists(EngineError):
    """A model (or a quarantined one's files, or one being created) holds that name."""

    def __init__(self, model: str) -> None:
        super().__init__(model, f"a model named {model!r} exists")


class ModelDeleted(EngineError):
    """The instance a request was resolved to has been deleted meanwhile: nothing was written."""

    def __init__(self, model: str) -> None:
        super().__init__(
            model,
            f"model {model!r} was deleted while this request was in flight; nothing of it "
            "was learned or written",
        )


class ModelUnavailable(EngineError):
    """The model could not be recovered at start-up (quarantined): its files are kept as they
    are for an operator; ``reason`` says what failed."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(model, f"model {model!r} is unavailable: {reason}")
        self.reason = reason


class TooManyModels(EngineError):
    """The service holds as many models as it may."""

    def __init__(self, model: str, limit: int) -> None:
        super().__init__(model, f"at most {limit} models")


class OverMemoryBudget(EngineError):
    """The model's state would not fit in the memory budget left; ``field`` is the request's
    field that asked for it (``dim`` for a new model, ``file`` for an import)."""

    def __init__(self, model: str, detail: str, *, field: str = "dim") -> None:
        super().__init__(model, detail)
        self.field = field


class StorageUnavailable(EngineError):
    """The data directory refused a write (or the model cannot safely write any more)."""


class ModelInExperiment(EngineError):
    """The model is a member of an experiment: delete the experiment (with its members)."""

    def __init__(self, model: str, experiment: str) -> None:
        super().__init__(
            model,
            f"model {model!r} is a member of experiment {experiment!r}; delete the experiment "
            "to delete its models",
        )
        self.experiment = experiment


class TooManyWatches(EngineError):
    """The model watches as many coordinates as it may (``Settings.max_watches``)."""

    field = "index"

    def __init__(self, model: str, limit: int) -> None:
        super().__init__(
            model, f"model {model!r} watches {limit} coordinates, the most it may; remove one"
        )


class WatchNotFound(EngineError):
    """The coordinate is not watched."""

    field = "index"

    def __init__(self, model: str, index: int) -> None:
        super().__init__(model, f"model {model!r} does not watch coordinate {index}")
