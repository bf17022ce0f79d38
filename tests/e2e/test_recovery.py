"""Issue 14, storage side: atomic creation, incarnations, isolated recovery, damage in the middle
of a log (never taken for a torn tail), ``adaserve repair``, feature names across a crash."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from datasets import REPO
from fastapi.testclient import TestClient
from servers import free_port, start_server
from test_storage import OPTIMIZER, assert_same, batches, replay

from optim import OnlineLogisticRegression
from service import cli
from service import storage as storage_module
from service.app import create_app
from service.settings import Settings
from service.storage import (
    ModelGone,
    ModelStorage,
    ModelUnrecoverable,
    encode_batch,
    read_records,
    remove_leftovers,
    repair_model,
)


def logged(directory: Path, applied: list, snapshot_at: tuple[int, ...] = ()) -> ModelStorage:
    """A model that logged ``applied`` (snapshots after the batches numbered ``snapshot_at``)
    and died without a snapshot: the storage object is dropped, only its files remain."""
    storage = ModelStorage(directory)
    model = OnlineLogisticRegression(OPTIMIZER, dim=16)
    storage.create(model)
    for i, batch in enumerate(applied):
        storage.append(batch, model.step)
        model.learn_batch(batch)
        if i + 1 in snapshot_at:
            storage.snapshot(model)
    storage.close()
    return ModelStorage(directory)


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` and a digest of its bytes."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def newest(directory: Path, pattern: str) -> Path:
    return max(directory.glob(pattern), key=lambda p: int(p.stem.split("-")[1]))


# ---------------------------------------------------------------------- atomic creation
CREATE_AND_DIE = """
import os, sys
from pathlib import Path
from optim import OnlineLogisticRegression
from service import storage

stage = sys.argv[2]
if stage == "rename":
    os.rename = lambda *args: os._exit(9)
else:
    write = storage._write_synced
    def dying(path, data):
        if path.name.startswith(stage):
            os._exit(9)  # as kill -9 here: no clean-up, no finally
        write(path, data)
    storage._write_synced = dying
model = OnlineLogisticRegression({"name": "adagrad", "lr": 0.1}, hash_bits=12)
storage.ModelStorage(Path(sys.argv[1]) / "models" / "big").create(model)
"""


@pytest.mark.parametrize("stage", ["incarnation", "snapshot", "wal", "rename"])
def test_a_crash_while_creating_leaves_no_model_and_start_up_removes_it(
    tmp_path: Path, stage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The process dies (os._exit: no clean-up, as kill -9) at each step of creating a model:
    no model directory appears, the leftover temporary one is removed at start-up with a
    warning, the other models serve, and the name can be created again."""
    logged(tmp_path / "models" / "good", batches(3))
    died = subprocess.run(
        [sys.executable, "-c", CREATE_AND_DIE, str(tmp_path), stage], cwd=REPO, check=False
    )
    assert died.returncode == 9
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".creating-big-")
    assert not (tmp_path / "models" / "big").exists()
    settings = Settings(data_dir=tmp_path, warm_kernels=False)
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)) as client:
        assert [m["name"] for m in client.get("/v1/models").json()["models"]] == ["good"]
        assert client.get("/v1/models/good").json()["step"] == replay(batches(3)).step
        created = {"name": "big", "dim": 16, "optimizer": OPTIMIZER}
        assert client.post("/v1/models", json=created).status_code == 201
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["big", "good"]
    assert any(leftovers[0] in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)  # fmt: skip


def test_kill_minus_nine_of_the_server_while_it_creates_a_large_model(tmp_path: Path) -> None:
    """The issue's reproduction: the server is killed (SIGKILL) while it writes a large new
    model. Restarted, it serves the other model; the large one is either whole (the kill came
    after the rename) or gone with its leftover removed, never a directory that stops start-up."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(tmp_path, port, quiet=True)
    try:
        created = {"name": "good", "dim": 16, "optimizer": OPTIMIZER}
        assert httpx.post(f"{url}/v1/models", json=created, timeout=60).status_code == 201
        body = {"indptr": [0, 1], "indices": [3], "values": [1.0], "labels": [1]}
        assert httpx.post(f"{url}/v1/models/good/updates", json=body, timeout=60).status_code == 200
        big = {"name": "big", "hash_bits": 22, "optimizer": "adagrad"}

        def create_big() -> None:
            with contextlib.suppress(httpx.TransportError):  # the server dies meanwhile
                httpx.post(f"{url}/v1/models", json=big, timeout=120)

        creating = threading.Thread(target=create_big, daemon=True)
        creating.start()
        deadline = time.monotonic() + 120
        while not list((tmp_path / "models").glob(".creating-big-*")):
            assert time.monotonic() < deadline, "the model was never being created"
            time.sleep(0.002)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    creating.join(timeout=60)
    process = start_server(tmp_path, port, quiet=True)
    try:
        names = {m["name"] for m in httpx.get(f"{url}/v1/models", timeout=60).json()["models"]}
        assert httpx.get(f"{url}/v1/models/good", timeout=60).json()["step"] == 1
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert not list((tmp_path / "models").glob(".creating-*"))
    assert names == {"good"} or names == {"good", "big"}
    assert (names == {"good", "big"}) == (tmp_path / "models" / "big").exists()


def test_remove_leftovers_removes_only_leftovers(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for name in (".creating-a-0123", ".deleted-b-456", "c", ".hidden"):
        (models / name).mkdir(parents=True)
        (models / name / "snapshot-0.npz").write_bytes(b"x")
    (models / ".creating-file").write_bytes(b"a file, not a leftover directory")
    assert remove_leftovers(models) == [".creating-a-0123", ".deleted-b-456"]
    assert sorted(p.name for p in models.iterdir()) == [".creating-file", ".hidden", "c"]


def test_a_leftover_that_cannot_be_removed_does_not_stop_start_up(
    tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / ".deleted-a-1").mkdir()

    def refuse(path):  # type: ignore[no-untyped-def]
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(storage_module.shutil, "rmtree", refuse)
    assert remove_leftovers(tmp_path) == []
    assert any("could not remove" in r.getMessage() for r in caplog.records)


def test_creating_over_an_existing_model_changes_nothing(tmp_path: Path) -> None:
    logged(tmp_path / "m", batches(2))
    before = fingerprint(tmp_path)
    with pytest.raises(FileExistsError):
        ModelStorage(tmp_path / "m").create(OnlineLogisticRegression(OPTIMIZER, dim=16))
    assert fingerprint(tmp_path) == before


# ---------------------------------------------------------------------- incarnations
def test_every_record_carries_the_models_incarnation(tmp_path: Path) -> None:
    storage = logged(tmp_path / "m", batches(4))
    incarnation = (tmp_path / "m" / "incarnation").read_text()
    assert len(incarnation) == 32 and int(incarnation, 16) >= 0
    scan = storage_module.scan_log("wal-0.log", (tmp_path / "m" / "wal-0.log").read_bytes())
    assert len(scan.records) == 4 and scan.problem is None
    assert {r.incarnation for r in scan.records} == {bytes.fromhex(incarnation)}
    storage.recover()
    assert storage.incarnation == incarnation


def test_a_model_from_before_incarnations_recovers_and_gets_one(tmp_path: Path) -> None:
    """A directory without an incarnation file and records without one (the older layout) is
    recovered as it is; it gets an incarnation then, carried by the records logged after."""
    applied = batches(5)
    logged(tmp_path / "m", applied[:3])
    (tmp_path / "m" / "incarnation").unlink()
    log = tmp_path / "m" / "wal-0.log"
    old = b"".join(encode_batch(r[2], r[1]) for r in read_records(log)[0])  # no incarnation
    log.write_bytes(old)
    storage = ModelStorage(tmp_path / "m")
    recovered = storage.recover()
    assert recovered.dropped == [] and recovered.replayed_rows == replay(applied[:3]).step
    assert storage.incarnation == (tmp_path / "m" / "incarnation").read_text()
    for batch in applied[3:]:
        storage.append(batch, recovered.model.step)
        recovered.model.learn_batch(batch)
    storage.close()
    assert_same(ModelStorage(tmp_path / "m").recover().model, replay(applied))


def test_a_deleted_models_storage_writes_nothing_into_a_new_model_of_its_name(
    tmp_path: Path,
) -> None:
    """After delete, every write of the old storage object raises ModelGone and leaves the
    new model of the same name, at the same path, exactly as it was."""
    applied = batches(6)
    old = logged(tmp_path / "m", applied[:2])
    old_model = old.recover().model
    finish = old.begin_snapshot(old_model)  # a snapshot in progress while the model is deleted
    old.delete()
    assert not any(p.name.startswith(".deleted-") for p in tmp_path.iterdir())
    new = ModelStorage(tmp_path / "m")
    model = OnlineLogisticRegression(OPTIMIZER, dim=16)
    new.create(model)
    for batch in applied[2:4]:
        new.append(batch, model.step)
        model.learn_batch(batch)
    assert new.incarnation != old.incarnation
    before = fingerprint(tmp_path)
    attempts = [
        lambda: old.append(applied[4], old_model.step),
        lambda: old.append_all([(applied[4], old_model.step, None)]),
        lambda: old.snapshot(old_model),
        lambda: old.begin_snapshot(old_model),
        finish,
        old.reload,
        old.recover,
        old.delete,
    ]
    for attempt in attempts:
        with pytest.raises(ModelGone, match="was deleted"):
            attempt()
    assert fingerprint(tmp_path) == before
    new.close()
    assert_same(ModelStorage(tmp_path / "m").recover().model, model)


def test_a_record_of_another_incarnation_is_damage_wherever_it_is(tmp_path: Path) -> None:
    """A whole record stamped with another model's incarnation (what a request of a deleted
    model could once write into a new one) is refused as damage, even as the last record:
    never replayed, never truncated as if torn."""
    applied = batches(4)
    logged(tmp_path / "m", applied[:3])
    model = replay(applied[:3])
    log = tmp_path / "m" / "wal-0.log"
    with open(log, "ab") as handle:
        handle.write(encode_batch(applied[3], model.step, os.urandom(16)))
    before = fingerprint(tmp_path)
    with pytest.raises(ModelUnrecoverable) as caught:
        ModelStorage(tmp_path / "m").recover()
    assert "another model" in caught.value.reason and "wal-0.log" in caught.value.reason
    assert fingerprint(tmp_path) == before


# ---------------------------------------------------------------------- isolated recovery
def zip_directory_entries(path: Path) -> list[int]:
    """Byte offsets of the central directory entries of a zip (npz) file."""
    data = path.read_bytes()
    offsets, at = [], data.find(b"PK\x01\x02")
    while at >= 0:
        offsets.append(at)
        at = data.find(b"PK\x01\x02", at + 1)
    return offsets


def test_any_byte_flipped_in_the_newest_snapshots_zip_directory_falls_back(tmp_path: Path) -> None:
    """Each byte of the newest snapshot's zip directory flipped in turn (one of them, the
    compression method, once raised NotImplementedError out of start-up): recovery either reads it
    or falls back to the previous snapshot and both logs; the model is always the replay of
    every batch."""
    applied = batches(9)
    logged(tmp_path / "m", applied, snapshot_at=(3, 6))
    snapshot = newest(tmp_path / "m", "snapshot-*.npz")
    intact = snapshot.read_bytes()
    start = zip_directory_entries(snapshot)[0]
    expected = replay(applied)
    fell_back = 0
    for position in range(start, len(intact)):
        flipped = bytearray(intact)
        flipped[position] ^= 0xFF
        snapshot.write_bytes(bytes(flipped))
        recovered = ModelStorage(tmp_path / "m").recover()
        assert_same(recovered.model, expected)
        fell_back += recovered.snapshot_step != replay(applied[:6]).step
    assert fell_back > 0
    method = zip_directory_entries(snapshot)[-1] + 10  # the last member's compression method
    flipped = bytearray(intact)
    flipped[method : method + 2] = (99).to_bytes(2, "little")
    snapshot.write_bytes(bytes(flipped))
    recovered = ModelStorage(tmp_path / "m").recover()
    assert "method 99" in recovered.dropped[0], recovered.dropped
    assert_same(recovered.model, expected)


def test_any_exception_loading_a_snapshot_falls_back(tmp_path: Path, monkeypatch) -> None:
    applied = batches(8)
    logged(tmp_path / "m", applied, snapshot_at=(3, 5))
    real_load = OnlineLogisticRegression.load
    newest_step = replay(applied[:5]).step

    def load(path):  # type: ignore[no-untyped-def]
        if Path(path).name == f"snapshot-{newest_step}.npz":
            raise RuntimeError("anything at all")
        return real_load(path)

    monkeypatch.setattr(OnlineLogisticRegression, "load", staticmethod(load))
    recovered = ModelStorage(tmp_path / "m").recover()
    assert recovered.snapshot_step == replay(applied[:3]).step
    assert "RuntimeError: anything at all" in recovered.dropped[0]
    assert_same(recovered.model, replay(applied))


def test_nothing_recoverable_raises_unrecoverable_and_changes_no_file(tmp_path: Path) -> None:
    """No snapshot loads: ModelUnrecoverable with the reason, and every file stays as it was
    (even the torn tail that a recovery would have truncated)."""
    applied = batches(6)
    logged(tmp_path / "m", applied, snapshot_at=(2, 4))
    for snapshot in (tmp_path / "m").glob("snapshot-*.npz"):
        snapshot.write_bytes(snapshot.read_bytes()[:200])
    log = newest(tmp_path / "m", "wal-*.log")
    log.write_bytes(log.read_bytes()[:-5])
    before = fingerprint(tmp_path)
    with pytest.raises(ModelUnrecoverable) as caught:
        ModelStorage(tmp_path / "m").recover()
    assert caught.value.reason.startswith("no readable snapshot")
    assert "snapshot-0.npz" not in caught.value.reason  # pruned long ago
    assert fingerprint(tmp_path) == before


def test_an_unexpected_error_in_recovery_is_unrecoverable_not_a_crash(
    tmp_path: Path, monkeypatch
) -> None:
    logged(tmp_path / "m", batches(3))
    before = fingerprint(tmp_path)

    def broken(*args):  # type: ignore[no-untyped-def]
        raise MemoryError("no room")

    monkeypatch.setattr(storage_module, "scan_log", broken)
    with pytest.raises(ModelUnrecoverable, match="MemoryError: no room"):
        ModelStorage(tmp_path / "m").recover()
    assert fingerprint(tmp_path) == before


# ---------------------------------------------------------------------- damage mid-log
def flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x40
    path.write_bytes(bytes(data))


def damaged_model(tmp_path: Path, where: str) -> tuple[Path, list, int]:
    """40 batches logged after the first snapshot, then one byte flipped a quarter of the way
    into the log (``where``: in a record's payload, its length or its checksum): the
    directory, the batches and how many were logged before the damaged one."""
    applied = batches(40, seed=3)
    logged(tmp_path / "models" / "m", applied)
    log = tmp_path / "models" / "m" / "wal-0.log"
    records = read_records(log)[0]
    offsets = [offset for offset, _, _ in records]
    quarter = log.stat().st_size // 4
    damaged = max(k for k, offset in enumerate(offsets) if offset <= quarter)
    position = {
        "payload": quarter,
        "length": offsets[damaged] + 3,
        "checksum": offsets[damaged] + 5,
    }
    if where == "payload":
        assert offsets[damaged] + 8 < quarter  # inside the record's payload
    flip(log, position[where])
    return tmp_path / "models" / "m", applied, damaged


@pytest.mark.parametrize("where", ["payload", "length", "checksum"])
def test_a_flipped_byte_a_quarter_into_the_log_is_damage_not_a_torn_tail(
    tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's reproduction: recovery used to truncate everything after the flipped byte
    ("never acknowledged"). Now the model is unrecoverable with the record's offset and step,
    an ERROR says so, and not one byte of any file changes."""
    directory, applied, damaged = damaged_model(tmp_path, where)
    offset = read_records(directory / "wal-0.log")[1]
    step = replay(applied[:damaged]).step
    before = fingerprint(directory)
    with caplog.at_level(logging.ERROR), pytest.raises(ModelUnrecoverable) as caught:
        ModelStorage(directory).recover()
    reason = caught.value.reason
    assert f"at byte {offset} (the record of step {step})" in reason
    assert f"followed by {40 - damaged - 1} valid records" in reason and "not a torn tail" in reason
    assert any(r.levelno == logging.ERROR and f"at byte {offset}" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert fingerprint(directory) == before


@pytest.mark.parametrize("missing", [0, 2])
def test_a_record_missing_from_a_log_is_damage(tmp_path: Path, missing: int) -> None:
    """A whole record missing from a log (the steps jump) is not replayed past."""
    applied = batches(6)
    logged(tmp_path / "m", applied)
    log = tmp_path / "m" / "wal-0.log"
    data = log.read_bytes()
    offsets = [offset for offset, _, _ in read_records(log)[0]]
    log.write_bytes(data[: offsets[missing]] + data[offsets[missing + 1] :])
    with pytest.raises(ModelUnrecoverable, match="a gap: a record of step") as caught:
        ModelStorage(tmp_path / "m").recover()
    assert f"at byte {offsets[missing]}" in caught.value.reason


def test_only_the_last_record_torn_stays_a_torn_tail(tmp_path: Path) -> None:
    """A flipped byte in the last record, or a record cut short: truncated with a warning, the
    rest replayed, as before (the scan past the bad record finds nothing valid)."""
    applied = batches(8)
    logged(tmp_path / "m", applied)
    log = tmp_path / "m" / "wal-0.log"
    last = read_records(log)[0][-1][0]
    flip(log, last + 2)  # the last record's length: it now looks cut
    recovered = ModelStorage(tmp_path / "m").recover()
    assert_same(recovered.model, replay(applied[:7]))
    assert "torn" in recovered.dropped[0] and log.stat().st_size == last


def test_a_byte_flipped_anywhere_is_a_torn_tail_only_in_the_last_record(tmp_path: Path) -> None:
    """Bytes flipped at seeded random places of a 30-record log: in the last record, it is
    truncated and the 29 others replayed; anywhere before, the model is unrecoverable and no
    file changes (never a silent loss of the records after the flip)."""
    applied = batches(30, seed=11)
    logged(tmp_path / "m", applied)
    log = tmp_path / "m" / "wal-0.log"
    intact = log.read_bytes()
    last = read_records(log)[0][-1][0]
    rng = np.random.default_rng(14)
    positions = [*rng.integers(0, last, 40), *rng.integers(last, len(intact), 10)]
    for position in positions:
        log.write_bytes(intact)
        flip(log, int(position))
        if position >= last:
            recovered = ModelStorage(tmp_path / "m").recover()
            assert_same(recovered.model, replay(applied[:29]))
            assert log.stat().st_size == last
            continue
        before = fingerprint(tmp_path)
        with pytest.raises(ModelUnrecoverable, match="not a torn tail"):
            ModelStorage(tmp_path / "m").recover()
        assert fingerprint(tmp_path) == before


def test_one_stray_byte_before_the_smallest_record_is_damage(tmp_path: Path) -> None:
    """The search past a bad record finds even a record of no rows one byte further on."""
    empty = storage_module.Batch.from_arrays([0], [], [], [], dim=16)
    logged(tmp_path / "m", [*batches(2), empty])
    log = tmp_path / "m" / "wal-0.log"
    data = log.read_bytes()
    last = read_records(log)[0][-1][0]
    assert len(data) - last == storage_module._SMALLEST_RECORD + 16  # with its incarnation
    log.write_bytes(data[:last] + b"\x00" + data[last:])
    with pytest.raises(ModelUnrecoverable, match="followed by 1 valid records"):
        ModelStorage(tmp_path / "m").recover()


# ---------------------------------------------------------------------- repair
def test_repair_keeps_the_rows_before_the_damage_and_the_model_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """corrupt -> unrecoverable -> ``adaserve repair`` -> the service starts, the model at the
    step before the damage (learning goes on from there, across a restart); the damaged log is
    kept byte for byte in damaged/ and the command says what was kept and lost."""
    directory, applied, damaged = damaged_model(tmp_path, "payload")
    corrupt_log = (directory / "wal-0.log").read_bytes()
    with pytest.raises(ModelUnrecoverable):
        ModelStorage(directory).recover()
    kept, total = replay(applied[:damaged]).step, replay(applied).step
    assert cli.main(["repair", str(tmp_path), "m"]) == 0
    out = capsys.readouterr().out
    assert f"kept: step {kept} (snapshot-0.npz + {kept} logged rows" in out
    assert f"lost: {total - kept} rows (steps {kept} to {total})" in out
    assert f"in {40 - damaged - 1} readable records from the damage on" in out
    assert "moved aside: damaged/wal-0.log" in out
    assert (directory / "damaged" / "wal-0.log").read_bytes() == corrupt_log
    assert cli.main(["repair", str(tmp_path), "m"]) == 0  # a second run: nothing to repair
    assert "nothing to repair" in capsys.readouterr().out
    settings = Settings(data_dir=tmp_path, warm_kernels=False)
    body = {"indptr": [0, 2], "indices": [1, 2], "values": [1.0, 1.0], "labels": [1]}
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/models/m").json()["step"] == kept
        assert client.post("/v1/models/m/updates", json=body).json()["step"] == kept + 1
        exported = client.get("/v1/models/m/export").content
    expected = replay(applied[:damaged])
    expected.learn_batch(storage_module.Batch.from_arrays(**body, dim=16))
    back = OnlineLogisticRegression.from_arrays(dict(np.load(io.BytesIO(exported))))
    assert_same(back, expected)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/models/m").json()["step"] == kept + 1


def test_repair_falls_back_past_an_unreadable_snapshot_and_moves_it_aside(tmp_path: Path) -> None:
    applied = batches(12)
    logged(tmp_path / "m", applied, snapshot_at=(4, 8))
    snapshot = newest(tmp_path / "m", "snapshot-*.npz")
    unreadable = snapshot.read_bytes()[:300]
    snapshot.write_bytes(unreadable)
    log = newest(tmp_path / "m", "wal-*.log")
    records = read_records(log)[0]
    flip(log, records[1][0] + 20)  # the second of the four records after the newest snapshot
    repaired = repair_model(tmp_path / "m")
    assert repaired.snapshot_step == replay(applied[:4]).step
    assert repaired.kept_step == replay(applied[:9]).step
    assert (
        repaired.lost_records == 2
        and repaired.lost_rows == replay(applied).step - replay(applied[:9]).step
    )
    assert (tmp_path / "m" / "damaged" / snapshot.name).read_bytes() == unreadable
    recovered = ModelStorage(tmp_path / "m").recover()
    assert recovered.dropped == [] and recovered.snapshot_step == repaired.kept_step
    assert_same(recovered.model, replay(applied[:9]))


def test_repair_without_a_readable_snapshot_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logged(tmp_path / "models" / "m", batches(3))
    snapshot = tmp_path / "models" / "m" / "snapshot-0.npz"
    snapshot.write_bytes(b"not a zip")
    before = fingerprint(tmp_path)
    assert cli.main(["repair", str(tmp_path), "m"]) == 1
    assert "no readable snapshot" in capsys.readouterr().err
    assert cli.main(["repair", str(tmp_path), "nope"]) == 2
    assert fingerprint(tmp_path) == before


# ---------------------------------------------------------------------- feature names
def named_rows(start: int, count: int) -> list[dict]:
    return [
        {"features": {f"word{i}": 1.0, "city": ["paris", "oslo", "lima"][i % 3], "é\u2603": 0.5},
         "label": i % 2}
        for i in range(start, start + count)
    ]  # fmt: skip


def test_feature_names_learned_since_the_snapshot_survive_a_crash(tmp_path: Path) -> None:
    """Named rows logged after the last snapshot, the storage dropped without a snapshot:
    recovery knows their names (the records carry them), as the live model did."""
    storage = ModelStorage(tmp_path / "m")
    model = OnlineLogisticRegression(OPTIMIZER, hash_bits=12, max_feature_names=50)
    storage.create(model)
    for start in range(0, 60, 12):
        rows = named_rows(start, 12)
        batch = model.to_batch([r["features"] for r in rows], [r["label"] for r in rows])
        storage.append(batch, model.step)
        model.learn_batch(batch)
    storage.close()
    assert len(model.feature_names) == 50  # the cap was reached: replay must stop alike
    recovered = ModelStorage(tmp_path / "m").recover()
    assert recovered.model.feature_names == model.feature_names
    assert_same(recovered.model, model)


def test_feature_names_survive_kill_minus_nine_of_the_server(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(tmp_path, port, quiet=True)
    try:
        created = {"name": "m", "hash_bits": 10, "optimizer": OPTIMIZER}
        assert httpx.post(f"{url}/v1/models", json=created, timeout=60).status_code == 201
        rows = named_rows(0, 20)
        response = httpx.post(f"{url}/v1/models/m/updates", json={"rows": rows})
        assert response.status_code == 200
        before = httpx.get(f"{url}/v1/models/m/export").content
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    live = OnlineLogisticRegression.from_arrays(dict(np.load(io.BytesIO(before))))
    assert {"city=paris", "word3"} <= set(live.feature_names.values())
    process = start_server(tmp_path, port, quiet=True)
    try:
        after = httpx.get(f"{url}/v1/models/m/export").content
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    back = OnlineLogisticRegression.from_arrays(dict(np.load(io.BytesIO(after))))
    assert back.feature_names == live.feature_names
    assert_same(back, live)


def test_names_are_logged_only_for_named_batches(tmp_path: Path) -> None:
    """A batch without names logs exactly the record it did before names were logged."""
    plain = batches(1)[0]
    body = storage_module.record_body(plain)
    assert not body.flags & storage_module._NAMES
    step, back = storage_module.decode_batch(encode_batch(plain, 3)[8:])
    assert step == 3 and back.feature_names is None
