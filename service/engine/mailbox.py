"""A model's mailbox: the writes waiting for its writer, drained in arrival order."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from optim import Batch, LearnResult, OnlineLogisticRegression
from service.storage import RecordBody

if TYPE_CHECKING:
    from service.engine.model import ManagedModel

J = TypeVar("J")


class Drained(Generic[J]):
    """Items put from any thread, taken in order by one worker at a time: the first ``put``
    while none runs starts one with ``run`` (in a thread pool), which hands ``take`` every item
    waiting, again and again, until none is left (a model's mailbox and its log writes)."""

    def __init__(
        self, run: Callable[[Callable[[], None]], None], take: Callable[[list[J]], None]
    ) -> None:
        self.run, self.take = run, take
        self.items: list[J] = []
        self.running = False
        self._lock = threading.Lock()

    def put(self, item: J, *, first: bool = False) -> None:
        """``item`` last or (``first``) before the items waiting."""
        with self._lock:
            self.items.insert(0 if first else len(self.items), item)
            start, self.running = not self.running, True
        if start:
            self.run(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                items, self.items = self.items, []
                if not items:
                    self.running = False
                    return
            self.take(items)


@dataclass(eq=False)
class Labels:
    """Labels (and weights) for pending rows of a model with feedback, by id (``kind`` label),
    or the rows expiring as non-clicks (``kind`` expire)."""

    ids: list[str]
    labels: object
    weights: object | None = None
    kind: str = "label"


@dataclass(eq=False)
class Update:
    """A batch to log and learn (with its log record's body when made beforehand);
    ``on_learned`` runs in the writer once it is both. With ``labels``, the batch is made of the
    pending rows they label, by the writer when it takes it (``batch`` None until then); with
    neither, it only has the writer expire the pending rows due (a sweep)."""

    batch: Batch | None
    on_learned: Callable[[ManagedModel, LearnResult], None] | None
    record: RecordBody | None = None
    done: concurrent.futures.Future[LearnResult] = field(default_factory=concurrent.futures.Future)
    labels: Labels | None = None

    @property
    def nnz(self) -> int:
        return 0 if self.batch is None else self.batch.nnz


@dataclass(eq=False)
class Remember:
    """Rows predicted with ``ids`` on a model with feedback: the writer scores them, keeps them
    pending (``reserve`` checks their bytes against the memory budget), logs them and answers
    with their margins."""

    batch: Batch
    ids: list[str]
    reserve: Callable[[int], object]
    done: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


@dataclass(eq=False)
class Call:
    """Any other write: ``fn(model)`` in the writer, between the batches before and after it."""

    fn: Callable[[OnlineLogisticRegression], Any]
    done: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


Job = Update | Call | Remember
