"""The exceptions of the learning library.

Every problem with user input raises a subclass of :class:`AdaserveError` (itself a ``ValueError``)
whose message names where the problem is and why, so the service can turn it into a 4xx body as is.
"""

from __future__ import annotations


class AdaserveError(ValueError):
    """Base class: bad input to the learning library."""

    def __init__(self, reason: str, *, field: str | None = None, row: int | None = None) -> None:
        self.reason = reason
        self.field = field
        self.row = row
        where = []
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)

    @property
    def where(self) -> dict[str, int | str]:
        """Location of the problem as a JSON-friendly dict (``row`` and/or ``field``)."""
        out: dict[str, int | str] = {}
        if self.row is not None:
            out["row"] = self.row
        if self.field is not None:
            out["field"] = self.field
        return out


class BatchError(AdaserveError):
    """A batch of rows is malformed; nothing of it was learned."""


class ConfigError(AdaserveError):
    """A model or optimizer setting is unknown or out of range."""


class ModelFileError(ConfigError):
    """A model file (or its arrays) is not one this library writes: which member, and why."""

    def __init__(self, reason: str, *, member: str | None = None) -> None:
        self.member = member
        super().__init__(reason if member is None else f"member '{member}' {reason}", field="file")

    @property
    def where(self) -> dict[str, int | str]:
        out = super().where
        if self.member is not None:
            out["member"] = self.member
        return out


class NonFiniteUpdate(BatchError):
    """Learning a row of a batch would make the model's state or its progressive metrics
    non-finite; nothing of the batch was learned. ``where`` adds the ``coordinate`` (``dim`` is
    the intercept) and the ``state`` (``"weight"`` or a slot's name) that would have been hit."""

    def __init__(
        self, reason: str, *, row: int, coordinate: int | None = None, state: str | None = None
    ) -> None:
        super().__init__(reason, row=row)
        self.coordinate = coordinate
        self.state = state

    @property
    def where(self) -> dict[str, int | str]:
        out = super().where
        if self.coordinate is not None:
            out["coordinate"] = self.coordinate
        if self.state is not None:
            out["state"] = self.state
        return out
