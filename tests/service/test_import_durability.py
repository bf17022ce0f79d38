"""An import replaces every snapshot and log, whatever their steps, and only once its own
snapshot is durable (service/storage.py ``ModelStorage.replace``)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from test_storage import OPTIMIZER, assert_same, batches

from optim import OnlineLogisticRegression
from optim.model import save_file_arrays
from service import storage as storage_module
from service.storage import ModelStorage, StorageError


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def served_for_a_while(tmp_path: Path) -> tuple[ModelStorage, OnlineLogisticRegression]:
    """A model that logged 8 batches with snapshots after the 4th and the 6th."""
    storage = ModelStorage(tmp_path / "m")
    model = OnlineLogisticRegression(OPTIMIZER, dim=16)
    storage.create(model)
    for i, batch in enumerate(batches(8)):
        storage.append(batch, model.step)
        model.learn_batch(batch)
        if i in (3, 5):
            storage.snapshot(model)
    return storage, model


def imported_state() -> OnlineLogisticRegression:
    model = OnlineLogisticRegression(OPTIMIZER, dim=16)
    for batch in batches(1, seed=7):
        model.learn_batch(batch)
    return model


def test_an_import_of_a_lower_step_supersedes_every_file_and_stays_the_fallback(
    tmp_path: Path,
) -> None:
    storage, served = served_for_a_while(tmp_path)
    imported = imported_state()
    assert imported.step < served.step - 10  # lower than both snapshots on disk
    storage.replace(imported)
    step = imported.step
    assert files(tmp_path / "m") == ["incarnation", f"snapshot-{step}.npz", f"wal-{step}.log"]
    expected = OnlineLogisticRegression.load(tmp_path / "m" / f"snapshot-{step}.npz")
    for i, batch in enumerate(batches(4, seed=3)):
        storage.append(batch, expected.step)
        expected.learn_batch(batch)
        if i == 1:
            storage.snapshot(expected)
    storage.close()
    assert_same(ModelStorage(tmp_path / "m").recover().model, expected)
    # The newest snapshot unreadable: the fallback is the import's, the logs continue from it.
    newest = max((tmp_path / "m").glob("snapshot-*.npz"), key=lambda p: int(p.stem[9:]))
    newest.write_bytes(b"not a zip")
    assert_same(ModelStorage(tmp_path / "m").recover().model, expected)


def test_an_import_the_disk_refuses_changes_no_file(tmp_path: Path, monkeypatch) -> None:
    storage, served = served_for_a_while(tmp_path)
    before = files(tmp_path / "m")

    def full(path: Path, data: object) -> None:
        path.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage_module, "_write_synced", full)
    with pytest.raises(OSError, match="No space"):
        storage.replace(imported_state())
    monkeypatch.undo()
    assert files(tmp_path / "m") == before
    extra = batches(9)[8]
    storage.append(extra, served.step)  # the log still open takes the next batch
    served.learn_batch(extra)
    storage.close()
    assert_same(ModelStorage(tmp_path / "m").recover().model, served)


def test_recovery_finishes_an_import_a_crash_left_committed(tmp_path: Path) -> None:
    """kill -9 after ``import-<step>.npz`` was made durable, before the older files were
    removed: the import was committed (its answer may have been on its way)."""
    storage, _ = served_for_a_while(tmp_path)
    storage.close()
    imported = imported_state()
    arrays = imported.file_arrays()
    directory = tmp_path / "m"
    storage_module.write_atomically(
        directory / f"import-{imported.step}.npz", lambda h: save_file_arrays(h, arrays)
    )
    (directory / ".import-99.npz.tmp").write_bytes(b"an import a crash cut short")
    recovered = ModelStorage(directory).recover()
    assert_same(recovered.model, imported)
    step = imported.step
    assert files(directory) == ["incarnation", f"snapshot-{step}.npz", f"wal-{step}.log"]


def test_a_snapshot_begun_before_an_import_writes_nothing(tmp_path: Path) -> None:
    storage, served = served_for_a_while(tmp_path)
    finish = storage.begin_snapshot(served)  # its file is written in another thread, later
    imported = imported_state()
    storage.replace(imported)
    with pytest.raises(StorageError, match="an import replaced"):
        finish()
    storage.close()
    assert_same(ModelStorage(tmp_path / "m").recover().model, imported)
