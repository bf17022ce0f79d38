"""A model's snapshots: the state copied in its writer, the file written in another thread
while learning goes on, and the rows since the last one counted toward the next; and an import,
whose snapshot replaces every earlier file before it replaces the state in memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from optim import OnlineLogisticRegression
from service.engine.errors import EngineError, ModelDeleted, StorageUnavailable
from service.storage import ImportUnfinished

if TYPE_CHECKING:
    from service.engine.model import ManagedModel

# What begin() hands back: the function that writes the file, the step it holds, and the rows
# and time since the previous snapshot it ends.
Begun = tuple[Callable[[], Path], int, int, float]
log = logging.getLogger("adaserve")


def begin(managed: ManagedModel, model: OnlineLogisticRegression, *, copy: bool = True) -> Begun:
    """In the writer: copy the state and start a new log (see :data:`Begun`). The file is
    written under the model's files lock, never once the model is deleted (its directory may
    be another model's by then)."""
    if managed.failed is not None:  # memory holds a batch the log refused: never save it
        raise StorageUnavailable(managed.name, managed.failed)
    try:
        finish = managed.storage.begin_snapshot(model, copy=copy)
    except OSError as exc:
        raise _failed(managed, exc) from None
    rows, when = managed.rows_since_snapshot, managed.last_snapshot
    managed.rows_since_snapshot = 0
    managed.last_snapshot = time.monotonic()

    def written() -> Path:
        with managed.files_lock:
            if managed.deleted:
                raise ModelDeleted(managed.name)
            try:
                return finish()
            except OSError as exc:  # the logs since the previous snapshot are all kept
                raise _failed(managed, exc) from None

    return written, model.step, rows, when


async def in_background(managed: ManagedModel) -> tuple[Path, int]:
    """A snapshot holding up the model's writes only while its state is copied: the writer
    starts it after every earlier batch is logged, and the file is written in another thread
    while learning goes on (a 2**20-coordinate AdaGrad model is ~34 MB, ~0.25 s to serialize
    and fsync). The file and the step it holds."""
    finish, step, rows, when = await managed.write(lambda model: begin(managed, model))
    try:
        return await asyncio.to_thread(finish), step
    except EngineError:
        # Those rows are still only in the logs: count them again (in the writer, beside the
        # batches learned since), so the next attempt is due as if this one never began.
        def recount(_: OnlineLogisticRegression) -> None:
            managed.rows_since_snapshot += rows
            managed.last_snapshot = min(managed.last_snapshot, when)

        with contextlib.suppress(EngineError):  # a model whose log failed: nothing to save
            await managed.write(recount)
        raise


def replace(managed: ManagedModel, model: OnlineLogisticRegression) -> Path:
    """In the writer: make ``model`` (an imported state) the model's. Its snapshot and new log
    are made durable first, in place of every earlier one (:meth:`ModelStorage.replace`), and
    only then does memory change: an import the disk refuses changes nothing, and the current
    model goes on serving and logging. It also ends a refusal of writes (:attr:`failed`): the
    files no longer describe the state memory was ahead of."""
    try:
        path = managed.storage.replace(model)
    except ImportUnfinished as exc:  # the files hold the import: so does memory, but no log
        managed.model = model
        managed.failed = f"writes refused: {exc.strerror}; restart the service to finish it"
        log.error("model %s: %s", managed.name, managed.failed)
        raise StorageUnavailable(managed.name, managed.failed) from None
    except OSError as exc:
        raise StorageUnavailable(managed.name, f"the import was not applied: {exc}") from None
    managed.model = model
    managed.failed = None
    managed.rows_since_snapshot = 0
    managed.last_snapshot = time.monotonic()
    return path


def _failed(managed: ManagedModel, exc: OSError) -> StorageUnavailable:
    return StorageUnavailable(managed.name, f"the snapshot was not written: {exc}")
