"""Durability: the write-ahead log, snapshots, torn and corrupt files, a full disk."""

from __future__ import annotations

import errno
import struct
import zlib

import numpy as np
import orjson
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient

from optim import Batch, OnlineLogisticRegression
from service import storage as storage_module
from service.app import create_app
from service.routers import learning as learning_module
from service.settings import Settings
from service.storage import ModelStorage, read_records

OPTIMIZER = {"name": "adam", "lr": 0.05}


def batches(count: int, seed: int = 0, dim: int = 16) -> list[Batch]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        X = sp.random(5 + i % 3, dim, density=0.3, format="csr", random_state=rng)
        weights = rng.uniform(0.5, 2, X.shape[0]) if i % 2 else None
        out.append(Batch.from_scipy(X, rng.integers(0, 2, X.shape[0]), weights, dim=dim))
    return out


def replay(applied: list[Batch]) -> OnlineLogisticRegression:
    model = OnlineLogisticRegression(OPTIMIZER, dim=16)
    for batch in applied:
        model.learn_batch(batch)
    return model


def crash_after(tmp_path, applied: list[Batch], snapshot_at: int | None = None) -> ModelStorage:
    """A model that logged ``applied`` (snapshotting after ``snapshot_at`` batches), then died."""
    storage = ModelStorage(tmp_path / "m")
    model = OnlineLogisticRegression(OPTIMIZER, dim=16)
    storage.create(model)
    for i, batch in enumerate(applied):
        storage.append(batch, model.step)
        model.learn_batch(batch)
        if snapshot_at is not None and i + 1 == snapshot_at:
            storage.snapshot(model)
    storage.close()  # the process is gone; only its files remain
    return ModelStorage(tmp_path / "m")


def assert_same(a: OnlineLogisticRegression, b: OnlineLogisticRegression) -> None:
    assert a.step == b.step
    assert a.table.tobytes() == b.table.tobytes() and a.counters.tobytes() == b.counters.tobytes()


def wal_files(tmp_path):
    return sorted((tmp_path / "m").glob("wal-*.log"), key=lambda p: int(p.stem[4:]))


def test_log_replays_every_batch(tmp_path) -> None:
    applied = batches(12)
    recovered = crash_after(tmp_path, applied, snapshot_at=5).recover()
    assert recovered.snapshot_step == replay(applied[:5]).step
    assert_same(recovered.model, replay(applied))
    assert recovered.dropped == []


@pytest.mark.parametrize("cut", [1, 7, 30])
def test_torn_tail_is_truncated_and_reported(tmp_path, cut: int) -> None:
    applied = batches(6)
    storage = crash_after(tmp_path, applied)
    log = wal_files(tmp_path)[-1]
    intact = log.stat().st_size
    with open(log, "r+b") as handle:  # the crash tore the last record
        handle.truncate(intact - cut)
    recovered = storage.recover()
    assert_same(recovered.model, replay(applied[:5]))
    assert len(recovered.dropped) == 1 and "torn" in recovered.dropped[0]
    assert read_records(log)[2] is None  # truncated to whole records
    storage.append(applied[5], recovered.model.step)  # and appending goes on after them
    storage.close()
    assert_same(ModelStorage(tmp_path / "m").recover().model, replay(applied))


def test_flipped_byte_is_detected_by_its_checksum(tmp_path) -> None:
    applied = batches(6)
    storage = crash_after(tmp_path, applied)
    log = wal_files(tmp_path)[-1]
    data = bytearray(log.read_bytes())
    data[-20] ^= 0x40
    log.write_bytes(bytes(data))
    recovered = storage.recover()
    assert_same(recovered.model, replay(applied[:5]))
    assert "checksum" in recovered.dropped[0]


def test_corrupt_snapshot_falls_back_to_the_previous_one_and_both_logs(tmp_path) -> None:
    applied = batches(10)
    storage = ModelStorage(tmp_path / "m")
    model = OnlineLogisticRegression(OPTIMIZER, dim=16)
    storage.create(model)
    for i, batch in enumerate(applied):
        storage.append(batch, model.step)
        model.learn_batch(batch)
        if i in (3, 6):
            storage.snapshot(model)
    storage.close()
    newest = max((tmp_path / "m").glob("snapshot-*.npz"), key=lambda p: int(p.stem[9:]))
    newest.write_bytes(newest.read_bytes()[:100])
    recovered = ModelStorage(tmp_path / "m").recover()
    assert recovered.snapshot_step == replay(applied[:4]).step
    assert_same(recovered.model, replay(applied))
    assert "unreadable" in recovered.dropped[0]


def test_old_snapshots_and_logs_are_pruned(tmp_path) -> None:
    applied = batches(9)
    storage = crash_after(tmp_path, applied[:3], snapshot_at=1)
    model = storage.recover().model
    for batch in applied[3:]:
        storage.append(batch, model.step)
        model.learn_batch(batch)
        storage.snapshot(model)
    assert len(list((tmp_path / "m").glob("snapshot-*.npz"))) == 2
    assert len(wal_files(tmp_path)) == 2


def test_service_recovers_and_serves_after_a_crash(tmp_path) -> None:
    applied = batches(6)
    crash_after(tmp_path / "models", applied)
    log = sorted((tmp_path / "models" / "m").glob("wal-*.log"))[-1]
    with open(log, "r+b") as handle:
        handle.truncate(log.stat().st_size - 3)
    settings = Settings(data_dir=tmp_path, warm_kernels=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/models/m").json()["step"] == replay(applied[:5]).step
        probe = {"indptr": [0, 1], "indices": [3], "values": [1.0]}
        assert client.post("/v1/models/m/predict", json=probe).status_code == 200


def test_full_disk_is_503_and_changes_nothing(tmp_path, monkeypatch) -> None:
    settings = Settings(data_dir=tmp_path, warm_kernels=False)
    body = {"indptr": [0, 2], "indices": [1, 2], "values": [1.0, 1.0], "labels": [1]}
    with TestClient(create_app(settings)) as client:
        client.post("/v1/models", json={"name": "m", "dim": 16, "optimizer": OPTIMIZER})
        client.post("/v1/models/m/updates", json=body)
        before = client.get("/v1/models/m/export").content
        log = sorted((tmp_path / "models" / "m").glob("wal-*.log"))[-1]
        size = log.stat().st_size
        real_writev = storage_module.os.writev

        def full_disk(descriptor: int, parts: list) -> int:
            whole = b"".join(parts)
            real_writev(descriptor, [whole[: len(whole) // 2]])  # part of the record is written
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(storage_module.os, "writev", full_disk)
        response = client.post("/v1/models/m/updates", json=body)
        assert response.status_code == 503 and response.json()["error"] == "storage_unavailable"
        assert "No space left" in response.json()["detail"]
        monkeypatch.undo()
        assert client.get("/v1/models/m/export").content == before
        assert log.stat().st_size == size  # the half record was taken back
        assert client.post("/v1/models/m/updates", json=body).status_code == 200


def test_records_of_both_index_widths_are_read_back(tmp_path) -> None:
    """Indices are logged as uint32 when the dim allows (2**32 and under), as int64 above it;
    logs written before uint32 records existed (int64, flags 0 or 1) still recover."""
    small, large = batches(2, seed=5)
    wide = Batch(small.indptr, small.indices, small.values, small.labels, small.weights, 2**33)
    for batch, index_bytes in ((small, 4), (large, 4), (wide, 8)):
        record = storage_module.encode_batch(batch, 7)
        length, checksum = struct.unpack_from("<II", record)
        payload = record[8:]
        assert zlib.crc32(payload) == checksum and len(payload) == length
        weights = 0 if batch.weights is None else batch.n_rows
        arrays = 8 * (batch.n_rows + 1) + index_bytes * batch.nnz + 8 * (batch.nnz + batch.n_rows)
        assert length == 33 + arrays + 8 * weights
        step, back = storage_module.decode_batch(payload)
        assert step == 7 and back.dim == batch.dim
        for name in ("indptr", "indices", "values", "labels", "weights"):
            got, want = getattr(back, name), getattr(batch, name)
            assert (got is None) == (want is None)
            if want is not None:
                assert got.dtype == want.dtype and np.array_equal(got, want)

    # a log of the older layout: every array 8 bytes an entry, flags = has weights
    model = OnlineLogisticRegression(OPTIMIZER, dim=16)
    storage = ModelStorage(tmp_path / "m")
    storage.create(model)
    storage.close()
    old = bytearray()
    for batch in batches(4, seed=6):
        parts = [struct.pack("<qqqqB", model.step, 16, batch.n_rows, batch.nnz,
                             batch.weights is not None)]  # fmt: skip
        arrays = [(batch.indptr, "<i8"), (batch.indices, "<i8"), (batch.values, "<f8"),
                  (batch.labels, "<f8"), (batch.weights, "<f8")]  # fmt: skip
        parts += [a.astype(t).tobytes() for a, t in arrays if a is not None]
        payload = b"".join(parts)
        old += struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
        model.learn_batch(batch)
    wal_files(tmp_path)[-1].write_bytes(bytes(old))
    recovered = ModelStorage(tmp_path / "m").recover()
    assert recovered.dropped == [] and recovered.replayed_rows == model.step
    assert_same(recovered.model, model)


def test_a_record_body_made_beforehand_gives_the_same_record(monkeypatch) -> None:
    """A batch's record body (made in the thread that parsed it) and its header made later
    (with the step, by the log writer) are byte for byte the record ``encode_batch`` builds,
    with zlib's crc32_combine and with the Python one used where ctypes cannot load it."""
    small, weighted = batches(2, seed=9)
    wide = Batch(small.indptr, small.indices, small.values, small.labels, None, 2**33)
    empty = Batch.from_arrays([0], [], [], [], dim=16)
    for combine in (storage_module._crc32_combine, storage_module._python_crc32_combine):
        monkeypatch.setattr(storage_module, "_crc32_combine", combine)
        for batch in (small, weighted, wide, empty):
            body = storage_module.record_body(batch)
            later = b"".join(storage_module.record_parts(batch, 11, body))
            assert later == storage_module.encode_batch(batch, 11)
            length, checksum = struct.unpack_from("<II", later)
            assert zlib.crc32(later[8:]) == checksum and len(later) == 8 + length


def test_a_large_update_is_logged_as_one_record_and_recovers(tmp_path) -> None:
    """/updates makes a large body's record body in its parser thread: the log holds exactly
    the record encode_batch builds, which recovery reads back (its checksum holds)."""
    rng = np.random.default_rng(4)
    X = sp.random(3000, 1 << 12, density=0.01, format="csr", random_state=rng)
    y = rng.integers(0, 2, X.shape[0])
    body = {"indptr": X.indptr.tolist(), "indices": X.indices.tolist(),
            "values": X.data.tolist(), "labels": y.tolist()}  # fmt: skip
    payload = orjson.dumps(body)
    assert len(payload) > learning_module.INLINE_BODY_BYTES  # parsed in a parser thread
    settings = Settings(data_dir=tmp_path, warm_kernels=False)
    with TestClient(create_app(settings)) as client:
        created = {"name": "m", "dim": 1 << 12, "optimizer": OPTIMIZER}
        assert client.post("/v1/models", json=created).status_code == 201
        response = client.post(
            "/v1/models/m/updates", content=payload, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200 and response.json()["step"] == X.shape[0]
    log = tmp_path / "models" / "m" / "wal-0.log"  # kept beside the shutdown's snapshot
    batch = Batch.from_scipy(X, y, dim=1 << 12)
    incarnation = bytes.fromhex((tmp_path / "models" / "m" / "incarnation").read_text())
    assert log.read_bytes() == storage_module.encode_batch(batch, 0, incarnation)
    records, valid, problem = read_records(log)
    assert problem is None and valid == log.stat().st_size and len(records) == 1
    assert records[0][1] == 0 and np.array_equal(records[0][2].values, batch.values)


def test_the_compiled_checksum_is_zlibs_crc32() -> None:
    rng = np.random.default_rng(3)
    parts = [rng.integers(0, 256, n).astype(np.uint8) for n in (33, 0, 4096, 70_001, 1, 0)]
    expected = zlib.crc32(b"".join(p.tobytes() for p in parts))
    assert storage_module._checksum(*parts) == expected
    assert storage_module._python_checksum(*parts) == expected


def test_a_snapshot_is_written_while_learning_goes_on(tmp_path) -> None:
    """begin_snapshot copies the state and starts a new log; batches logged before the file is
    written recover from the previous snapshot and both logs, and from the new one after."""
    storage = ModelStorage(tmp_path / "m")
    model = OnlineLogisticRegression(OPTIMIZER, dim=16)
    storage.create(model)
    applied = batches(6, seed=8)
    for batch in applied[:3]:
        storage.append(batch, model.step)
        model.learn_batch(batch)
    at = model.step
    finish = storage.begin_snapshot(model)
    for batch in applied[3:]:  # learned and logged while the file is not written yet
        storage.append(batch, model.step)
        model.learn_batch(batch)
    before = ModelStorage(tmp_path / "m").recover()  # a crash now
    assert before.snapshot_step == 0 and before.replayed_rows == model.step
    assert_same(before.model, model)
    assert finish().name == f"snapshot-{at}.npz"
    storage.close()
    after = ModelStorage(tmp_path / "m").recover()
    assert after.snapshot_step == at and after.replayed_rows == model.step - at
    assert_same(after.model, model)
    assert_same(
        OnlineLogisticRegression.load(tmp_path / "m" / f"snapshot-{at}.npz"), replay(applied[:3])
    )
