"""What a model's engine refuses, in its own terms; :mod:`service.errors` alone maps each kind
to an HTTP status and code (the engine holds no HTTP)."""

from __future__ import annotations

from typing import Any

from optim import AdaserveError


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


class ModelRecovering(EngineError):
    """The process (or node) that owned the model died: it is being recovered from its files
    elsewhere; its requests are refused until then (nothing acknowledged is lost)."""

    def __init__(self, model: str) -> None:
        super().__init__(
            model,
            f"model {model!r} is being recovered from its files after its owner stopped; "
            "retry in a few seconds",
        )


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


class ExperimentNotFound(EngineError):
    """No experiment of that name."""

    def __init__(self, experiment: str) -> None:
        super().__init__("", f"no experiment named {experiment!r}")
        self.experiment = experiment


class ExperimentExists(EngineError):
    """An experiment (or one being created) holds that name."""

    def __init__(self, experiment: str) -> None:
        super().__init__("", f"an experiment named {experiment!r} exists")
        self.experiment = experiment


class InvalidExperiment(EngineError):
    """An experiment's definition is refused; ``field`` names the part at fault."""

    def __init__(self, detail: str, *, field: str) -> None:
        super().__init__("", detail)
        self.field = field


class InvalidMember(EngineError):
    """Member ``member`` (its index in the definition) of a new experiment has a bad setting:
    ``where`` locates it, as the model's own error does."""

    def __init__(self, member: int, error: AdaserveError) -> None:
        super().__init__("", str(error))
        self.member = member
        self.where: dict[str, Any] = {**error.where, "member": member}


class FeedbackNotEnabled(EngineError):
    """Ids or labels for pending rows sent to a model created without a feedback setting."""

    field = "ids"

    def __init__(self, model: str) -> None:
        super().__init__(
            model,
            f"model {model!r} has no feedback setting: create it with "
            '"feedback": {"ttl_seconds": ..., "on_expiry": ...} to predict with ids',
        )


class PendingIdsConflict(EngineError):
    """Rows predicted with ids already pending (or given twice): none of them was remembered."""

    field = "ids"

    def __init__(self, model: str, ids: list[str]) -> None:
        shown = ", ".join(repr(i) for i in ids[:10]) + (" ..." if len(ids) > 10 else "")
        super().__init__(
            model, f"{len(ids)} id(s) already pending or given twice: {shown}; nothing remembered"
        )
        self.ids = ids


class FeedbackIdsRefused(EngineError):
    """Labels for ids that are not pending (unknown, expired, already labelled, or given twice):
    nothing was learned. ``reasons``: why, by id."""

    field = "ids"

    def __init__(self, model: str, reasons: dict[str, str]) -> None:
        shown = "; ".join(f"{i!r}: {why}" for i, why in list(reasons.items())[:10])
        more = f" (and {len(reasons) - 10} more)" if len(reasons) > 10 else ""
        super().__init__(
            model, f"{len(reasons)} id(s) cannot be labelled: {shown}{more}; nothing learned"
        )
        self.ids = list(reasons)
        self.reasons = reasons


class TooManyPending(EngineError):
    """Remembering the rows would exceed the memory budget: none was remembered."""

    field = "ids"


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
