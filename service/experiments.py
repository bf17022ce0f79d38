"""Experiments: several models (one per optimizer setting) learning the same stream.

An experiment's members are ordinary models named ``<experiment>.<n>`` (or given names; a ``/``
cannot be part of a model's URL), sharing ``dim``/``hash_bits``, ``hash_seed`` and ``dtype`` so
that a batch is parsed once and learned by every member in the same order. Its definition is kept
in ``<data_dir>/experiments/<name>.json``; the members persist like any model. A member cannot
be deleted on its own (409 ``model_in_experiment``): deleting the experiment deletes its members.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optim import AdaserveError, ConfigError
from optim.portfolio import memory_bytes_for
from service.engine.errors import (
    EngineError,
    ExperimentExists,
    ExperimentNotFound,
    InvalidExperiment,
    InvalidMember,
    ModelInExperiment,
)
from service.registry import NAME_PATTERN, ManagedModel, ModelRegistry
from service.storage import write_atomically

log = logging.getLogger("adaserve")
SHARED = ("dim", "hash_bits", "hash_seed", "dtype", "fit_intercept")


@dataclass(eq=False)
class Experiment:
    name: str
    members: list[str]
    # Batches reach every member in the same order.
    order: asyncio.Lock = field(default_factory=asyncio.Lock)


class ExperimentRegistry:
    def __init__(self, models: ModelRegistry) -> None:
        self.models = models
        self.experiments: dict[str, Experiment] = {}
        # Experiments being created, with their members' names (held from the start).
        self._creating: dict[str, list[str]] = {}
        self.directory = Path(models.settings.data_dir) / "experiments"
        self.directory.mkdir(parents=True, exist_ok=True)

    def load_all(self) -> None:
        """Every experiment's definition; one that cannot be read is logged and left out (its
        file and members stay)."""
        known = self.models.names()
        for path in sorted(self.directory.glob("*.json")):
            try:
                listed = json.loads(path.read_text())["members"]
                members = [m for m in listed if m in known]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("experiment %s: its definition cannot be read: %r", path.stem, exc)
                continue
            self.experiments[path.stem] = Experiment(path.stem, members)

    def get(self, name: str) -> Experiment:
        experiment = self.experiments.get(name)
        if experiment is None:
            raise ExperimentNotFound(name)
        return experiment

    def refuse_member(self, model: str) -> None:
        """:class:`ModelInExperiment` if ``model`` is a member of an experiment (or of one being
        created)."""
        experiments = {e.name: e.members for e in self.experiments.values()} | self._creating
        for experiment, members in experiments.items():
            if model in members:
                raise ModelInExperiment(model, experiment)

    def standing(self, experiment: Experiment) -> tuple[list[ManagedModel], dict[str, str]]:
        """The members that serve, and why each other one is unavailable (quarantined)."""
        serving, unavailable = [], {}
        for name in experiment.members:
            quarantined = self.models.quarantined.get(name)
            if quarantined is None:
                serving.append(self.models.get(name))
            else:
                unavailable[name] = quarantined.reason
        return serving, unavailable

    def members(self, experiment: Experiment) -> list[ManagedModel]:
        return [self.models.get(name) for name in experiment.members]

    async def create(
        self, name: str, shared: dict[str, Any], entries: list[dict[str, Any]]
    ) -> Experiment:
        if not NAME_PATTERN.fullmatch(name) or name.startswith("."):
            raise InvalidExperiment("name must match [A-Za-z0-9_.-]{1,64}", field="name")
        if name in self.experiments or name in self._creating:
            raise ExperimentExists(name)
        if not 1 <= len(entries) <= 32:
            raise InvalidExperiment("an experiment has 1 to 32 models", field="models")
        names = [entry.get("name") or f"{name}.{i}" for i, entry in enumerate(entries)]
        if len(set(names)) != len(names):
            raise InvalidExperiment("member names must differ", field="models")
        dim = 2 ** shared["hash_bits"] if shared.get("hash_bits") is not None else shared.get("dim")
        if isinstance(dim, int) and dim >= 1:
            try:
                needed = sum(
                    memory_bytes_for(
                        e.get("optimizer", "adagrad"), dim, shared.get("dtype", "float64"),
                        e.get("recent_window", shared.get("recent_window", 10_000)),
                    )
                    for e in entries
                )  # fmt: skip
            except ConfigError:
                needed = 0  # the member's own creation reports its bad optimizer
            self.models.check_budget(needed, what="the members")
        created: list[str] = []
        self._creating[name] = names
        try:
            for i, (member, entry) in enumerate(zip(names, entries, strict=True)):
                config = {k: v for k, v in entry.items() if k != "name"}
                try:
                    await self.models.create(member, {**shared, **config})
                except AdaserveError as error:
                    raise InvalidMember(i, error) from None
                created.append(member)
            write_atomically(
                self.directory / f"{name}.json", json.dumps({"members": names}).encode()
            )
        except EngineError:
            for member in created:
                await self.models.delete(member)
            raise
        finally:
            del self._creating[name]
        experiment = Experiment(name, names)
        self.experiments[name] = experiment
        return experiment

    async def delete(self, name: str) -> None:
        """The experiment, then each of its members (through its writer)."""
        experiment = self.get(name)
        (self.directory / f"{name}.json").unlink(missing_ok=True)
        del self.experiments[name]
        for member in experiment.members:
            if member in self.models.models or member in self.models.quarantined:
                await self.models.delete(member)


def leaderboard_entry(managed: ManagedModel) -> dict[str, Any]:
    """One member's standing (call with its state lock held)."""
    metrics = managed.model.metrics.to_dict()
    return {
        "model": managed.name,
        "optimizer": managed.model.config["optimizer"],
        "lazy": managed.model.lazy,
        "rows": metrics["rows"],
        "log_loss": metrics["overall"]["log_loss"],
        "recent_log_loss": metrics["recent"]["log_loss"],
        "auc": metrics["recent"]["auc"],
        "calibration": metrics["overall"]["calibration"],
        "curve": metrics["curve"],
    }
