"""Durable model storage: snapshots plus a write-ahead log of every acknowledged batch.

Layout of one model under ``<data_dir>/models/<name>/``::

    snapshot-<step>.npz    the model file (optim's format) at that step; the newest two are kept
    wal-<step>.log         every batch applied after that snapshot, in order

A WAL record is ``length (u32) | crc32 (u32) | payload`` where the payload holds the step the
batch starts at, its shape, flags, and its CSR arrays (indices as uint32 when the dim allows,
labels and optional weights). A batch is appended (and, with ``fsync="always"``, made durable:
the log is opened ``O_DSYNC``, a write returns once its bytes are synced, as by ``fdatasync``)
before it is acknowledged; the batches a model's writer takes together are appended with one
write (group commit, see ``service.registry``), and one the log refuses is not applied:
what was acknowledged survives a crash. ``fsync="interval"`` fsyncs every ``fsync_interval_ms``
instead, so a crash may lose the batches of that last window; ``"off"`` leaves it to the
operating system.

Recovery loads the newest snapshot that validates and replays the logs after it. A record whose
length or checksum does not hold (a write torn by a crash: it was never acknowledged) ends the log:
it is reported and truncated. A corrupt snapshot falls back to the previous one and both logs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numba as nb
import numpy as np

from optim import Batch, ConfigError, OnlineLogisticRegression
from optim.model import save_file_arrays

log = logging.getLogger("adaserve.storage")

_RECORD = struct.Struct("<II")  # payload length, crc32 of the payload
_HEADER = struct.Struct("<qqqqB")  # step before, dim, rows, nnz, flags
_WEIGHTED = 1  # flag: the record holds weights
_NARROW_INDICES = 2  # flag: indices are uint32 (the model's dim is at most 2**32)
_SNAPSHOT = re.compile(r"snapshot-(\d+)\.npz")
_WAL = re.compile(r"wal-(\d+)\.log")
FSYNC_MODES = ("always", "interval", "off")
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


class StorageError(OSError):
    """Writing to the data directory failed; the batch was not applied."""


def fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: Path, data: bytes | Callable[[IO[bytes]], None]) -> None:
    """Temporary file, fsync, rename, fsync of the directory: all of ``data`` (bytes, or a
    function writing them to the file it is given) or the old file."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        if callable(data):
            data(handle)
        else:
            handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)


@dataclass(frozen=True, eq=False)
class RecordBody:
    """A batch's log record but for its header (which holds the step the batch starts at): the
    arrays in their logged types, their crc32 and byte length, and the header's flags.

    This is the costly part of logging a batch (indices converted to uint32, every byte
    checksummed: ~0.3 ms a 1,000-row batch) and it does not depend on the step, so it can be
    made in any thread, e.g. the one that parsed the batch, rather than by a model's log
    writer, which writes one group of records at a time (:func:`record_parts`).
    """

    flags: int
    arrays: list[memoryview]
    checksum: int
    length: int


def record_body(batch: Batch) -> RecordBody:
    """Indices are logged as uint32 when the dim allows (a quarter less to write and fsync than
    int64: 16 bytes a non-zero become 12), other arrays as they are when they already have
    the logged types (int64 and float64, as the parsers make them): no copy, and the checksum
    is computed piece by piece in one compiled call. A stream batch of 10,000 rows is ~4 MB;
    converting, copying and joining it cost about as much as learning it."""
    flags = (_WEIGHTED if batch.weights is not None else 0) | (
        _NARROW_INDICES if batch.dim <= 2**32 else 0
    )
    labels = batch.labels if batch.labels is not None else np.zeros(batch.n_rows)
    index_type = "<u4" if flags & _NARROW_INDICES else "<i8"
    typed = [
        (batch.indptr, "<i8"), (batch.indices, index_type), (batch.values, "<f8"), (labels, "<f8")
    ]  # fmt: skip
    if batch.weights is not None:
        typed.append((batch.weights, "<f8"))
    arrays = [memoryview(np.ascontiguousarray(a, dtype=t)).cast("B") for a, t in typed]
    views = [np.frombuffer(array, np.uint8) for array in arrays]
    views += [np.empty(0, np.uint8)] * (6 - len(views))
    return RecordBody(flags, arrays, _checksum(*views), sum(len(array) for array in arrays))


def record_parts(
    batch: Batch, step_before: int, body: RecordBody | None = None
) -> list[bytes | memoryview]:
    """The pieces of a batch's log record, in order: written one after the other they are the
    record :func:`encode_batch` builds. ``body`` is the batch's :func:`record_body` when it
    was made beforehand: what is left is the header and its share of the checksum."""
    body = body or record_body(batch)
    header = _HEADER.pack(step_before, batch.dim, batch.n_rows, batch.nnz, body.flags)
    checksum = _crc32_combine(zlib.crc32(header), body.checksum, body.length)
    return [_RECORD.pack(len(header) + body.length, checksum), header, *body.arrays]


def _python_checksum(*parts: np.ndarray) -> int:
    checksum = 0
    for part in parts:
        checksum = zlib.crc32(part, checksum)
    return checksum


def _python_crc32_combine(first: int, second: int, second_length: int) -> int:
    """The crc32 of ``a + b`` from ``crc32(a)``, ``crc32(b)`` and ``len(b)``: zlib's
    ``crc32_combine``, where ctypes cannot load it (crc32 of ``b`` started at ``crc32(a)`` is
    ``crc32(b) ^ crc32(zeros) ^ crc32(zeros, crc32(a))``; linear in ``len(b)`` here, slower
    than zlib's logarithmic one but exact)."""
    zeros = bytes(second_length)
    return second ^ zlib.crc32(zeros) ^ zlib.crc32(zeros, first)


def _zlib_checksums() -> tuple[Callable[..., int], Callable[[int, int, int], int]]:
    """The crc32 of a record's pieces (six uint8 arrays, some empty) in one compiled call of
    zlib's C function: the log writer keeps the GIL for those ~0.1 ms, where zlib.crc32 per
    piece lets it go and waits to get it back each time (behind the event loop, up to the
    interpreter's switch interval); and zlib's ``crc32_combine``, also keeping the GIL (a
    microsecond). Where ctypes cannot load zlib, zlib.crc32 piece by piece and the same
    combination in Python."""
    try:
        name = ctypes.util.find_library("z") or "libz.so.1"
        crc32 = ctypes.CDLL(name).crc32
        combine = ctypes.PyDLL(name).crc32_combine64  # PyDLL: the call keeps the GIL
    except (OSError, AttributeError):
        return _python_checksum, _python_crc32_combine
    crc32.argtypes = (ctypes.c_ulong, ctypes.c_void_p, ctypes.c_uint)
    crc32.restype = ctypes.c_ulong
    combine.argtypes = (ctypes.c_ulong, ctypes.c_ulong, ctypes.c_int64)
    combine.restype = ctypes.c_ulong

    @nb.njit  # not cached: the C function's address differs from one process to the next
    def checksum(a, b, c, d, e, f):  # type: ignore[no-untyped-def]
        crc = crc32(0, a.ctypes.data, a.size)
        crc = crc32(crc, b.ctypes.data, b.size)
        crc = crc32(crc, c.ctypes.data, c.size)
        crc = crc32(crc, d.ctypes.data, d.size)
        crc = crc32(crc, e.ctypes.data, e.size)
        return crc32(crc, f.ctypes.data, f.size)

    return checksum, combine


_checksum, _crc32_combine = _zlib_checksums()


def _write_all(descriptor: int, parts: list[bytes | memoryview]) -> None:
    """Every byte of ``parts``, in order, with as few system calls as the OS allows (one
    ``writev`` for a group of records, where a write per piece would let the GIL go and wait
    to get it back each time)."""
    pending = [memoryview(part).cast("B") for part in parts]
    while pending:
        written = os.writev(descriptor, pending[:_IOV_MAX])
        while pending and written >= len(pending[0]):
            written -= len(pending.pop(0))
        if written:
            pending[0] = pending[0][written:]


def encode_batch(batch: Batch, step_before: int) -> bytes:
    return b"".join(record_parts(batch, step_before))


def decode_batch(payload: bytes) -> tuple[int, Batch]:
    step, dim, rows, nnz, flags = _HEADER.unpack_from(payload)
    offset = _HEADER.size

    def take(count: int, dtype: str) -> np.ndarray:
        nonlocal offset
        array = np.frombuffer(payload, dtype=dtype, count=count, offset=offset)
        offset += array.nbytes
        return array.astype(np.int64 if dtype[1] in "iu" else np.float64)

    indptr = take(rows + 1, "<i8")
    indices = take(nnz, "<u4" if flags & _NARROW_INDICES else "<i8")
    values, labels = take(nnz, "<f8"), take(rows, "<f8")
    weights = take(rows, "<f8") if flags & _WEIGHTED else None
    if offset != len(payload):
        raise ValueError("record size does not match its header")
    # Logged batches were validated before they were logged; Batch is rebuilt as is.
    return step, Batch(indptr, indices, values, labels, weights, dim)


def read_records(path: Path) -> tuple[list[tuple[int, int, Batch]], int, str | None]:
    """Records ``(byte offset, step before, batch)`` of a log, the byte length of its valid
    prefix, and why the rest (if any) is bad."""
    data = path.read_bytes()
    records, offset = [], 0
    while offset < len(data):
        if len(data) - offset < _RECORD.size:
            return records, offset, f"{len(data) - offset} trailing bytes (torn record header)"
        length, checksum = _RECORD.unpack_from(data, offset)
        payload = data[offset + _RECORD.size : offset + _RECORD.size + length]
        if len(payload) < length:
            return records, offset, f"record of {length} bytes cut at {len(payload)} (torn write)"
        if zlib.crc32(payload) != checksum:
            return records, offset, "checksum mismatch (corrupt record)"
        try:
            records.append((offset, *decode_batch(payload)))
        except (ValueError, struct.error) as exc:
            return records, offset, f"undecodable record: {exc}"
        offset += _RECORD.size + length
    return records, offset, None


@dataclass
class Recovered:
    model: OnlineLogisticRegression
    snapshot_step: int
    replayed_rows: int
    dropped: list[str]


class ModelStorage:
    """One model's directory: its snapshots and its write-ahead log."""

    def __init__(
        self, directory: Path, fsync: str = "always", fsync_interval_ms: int = 100
    ) -> None:
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}, got {fsync!r}")
        self.directory = directory
        self.fsync = fsync
        self.fsync_interval = fsync_interval_ms / 1000
        self._wal: object | None = None  # the open log file
        self._wal_base = 0
        self._last_sync = time.monotonic()
        self._dirty = False
        self._lock = threading.Lock()
        self._snapshot_lock = threading.Lock()

    # ------------------------------------------------------------------ files
    def _steps(self, pattern: re.Pattern[str]) -> list[int]:
        return sorted(
            int(m.group(1))
            for p in self.directory.iterdir()
            if (m := pattern.fullmatch(p.name)) is not None
        )

    def _snapshot_path(self, step: int) -> Path:
        return self.directory / f"snapshot-{step}.npz"

    def _wal_path(self, step: int) -> Path:
        return self.directory / f"wal-{step}.log"

    def _open_wal(self, base: int) -> None:
        self.close()
        path = self._wal_path(base)
        new = not path.exists()
        # Unbuffered: records are written with os.writev on its descriptor (_write_all). With
        # fsync "always", O_DSYNC: a write returns once its bytes are durable (as fdatasync),
        # one system call where a write and an fsync each let the GIL go and waited to get it
        # back (a log writer queued behind the event loop twice a group).
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        if self.fsync == "always":
            flags |= os.O_DSYNC
        self._wal = open(os.open(path, flags, 0o644), "ab", buffering=0)  # noqa: SIM115
        self._wal_base = base
        if new:
            fsync_directory(self.directory)

    def close(self) -> None:
        if self._wal is not None:
            self._wal.flush()  # type: ignore[attr-defined]
            os.fsync(self._wal.fileno())  # type: ignore[attr-defined]
            self._wal.close()  # type: ignore[attr-defined]
            self._wal = None

    # ------------------------------------------------------------------ lifecycle
    def create(self, model: OnlineLogisticRegression) -> None:
        """A new model: its directory, first snapshot and empty log, all durable."""
        self.directory.mkdir(parents=True)
        fsync_directory(self.directory.parent)
        self.snapshot(model)

    def delete(self) -> None:
        """Remove the model durably (a renamed-away directory is no model at start-up)."""
        self.close()
        tombstone = self.directory.with_name(f".deleted-{self.directory.name}-{time.time_ns()}")
        os.replace(self.directory, tombstone)
        fsync_directory(self.directory.parent)
        shutil.rmtree(tombstone, ignore_errors=True)

    # ------------------------------------------------------------------ writes
    def append(self, batch: Batch, step_before: int) -> None:
        """Log a batch before it is applied; on failure nothing is left half-written."""
        self.append_all([(batch, step_before, None)])

    def append_all(self, records: Sequence[tuple[Batch, int, RecordBody | None]]) -> None:
        """Log batches (each with its step before and its :func:`record_body` when made
        beforehand) in order, with one write (synchronized with fsync "always"): all of them
        or, on failure, none (nothing is left half-written)."""
        parts = [part for record in records for part in record_parts(*record)]
        with self._lock:
            if self._wal is None:
                self._open_wal(self._wal_base)
            handle = self._wal
            start = handle.tell()  # type: ignore[attr-defined]
            try:
                _write_all(handle.fileno(), parts)  # type: ignore[attr-defined]
                self._dirty = self.fsync != "always"  # O_DSYNC: written is durable
            except OSError as exc:
                self._undo(handle, start)
                raise StorageError(exc.errno, f"could not log the batch: {exc.strerror}") from exc

    def _undo(self, handle: object, start: int) -> None:
        try:
            handle.truncate(start)  # type: ignore[attr-defined]
            handle.seek(start)  # type: ignore[attr-defined]
        except OSError:
            # The log may end in a torn record now; recovery drops it by its checksum.
            log.exception("could not truncate %s back to %d bytes", self.directory, start)

    def sync_if_due(self) -> None:
        """With ``fsync="interval"``: fsync the log when the interval has passed."""
        with self._lock:
            if self._dirty and self._wal is not None:
                now = time.monotonic()
                if now - self._last_sync >= self.fsync_interval:
                    os.fsync(self._wal.fileno())  # type: ignore[attr-defined]
                    self._dirty = False
                    self._last_sync = now

    def snapshot(self, model: OnlineLogisticRegression) -> Path:
        """Write the model file; start a new log; keep one previous snapshot and its log."""
        return self.begin_snapshot(model, copy=False)()

    def begin_snapshot(
        self, model: OnlineLogisticRegression, *, copy: bool = True
    ) -> Callable[[], Path]:
        """Start a new log at the model's step and copy its state (hold the model still for
        this: a memory copy, ~10 ms for 30 MB); the function returned writes the model file from
        the copy, atomically, then removes the snapshots and logs it supersedes. Learning and
        logging may go on meanwhile: until the file is written, recovery takes the previous
        snapshot and both logs. ``copy=False`` when the model stays still until then."""
        step, arrays = model.step, model.file_arrays(copy=copy)
        with self._lock:
            self._open_wal(step)

        def finish() -> Path:
            path = self._snapshot_path(step)
            with self._snapshot_lock:  # one at a time: each prunes what the newest supersedes
                write_atomically(path, lambda handle: save_file_arrays(handle, arrays))
                snapshots = self._steps(_SNAPSHOT)
                keep_from = snapshots[-2] if len(snapshots) >= 2 else snapshots[-1]
                for old in snapshots:
                    if old < keep_from:
                        self._snapshot_path(old).unlink(missing_ok=True)
                for old in self._steps(_WAL):
                    if old < keep_from:
                        self._wal_path(old).unlink(missing_ok=True)
            return path

        return finish

    # ------------------------------------------------------------------ recovery
    def recover(self) -> Recovered:
        """The newest snapshot that loads, plus every logged batch after it."""
        dropped: list[str] = []
        for snapshot_step in reversed(self._steps(_SNAPSHOT)):
            try:
                model = OnlineLogisticRegression.load(self._snapshot_path(snapshot_step))
            except ConfigError as exc:
                dropped.append(f"snapshot-{snapshot_step}.npz unreadable ({exc}); falling back")
                log.error("model %s: %s", self.directory.name, dropped[-1])
                continue
            if model.step != snapshot_step:
                dropped.append(f"snapshot-{snapshot_step}.npz holds step {model.step}; skipped")
                continue
            replayed = self._replay(model, dropped)
            self._open_wal(max(self._steps(_WAL), default=snapshot_step))
            return Recovered(model, snapshot_step, replayed, dropped)
        raise ConfigError(f"no readable snapshot in {self.directory}", field="data_dir")

    def reload(self) -> Recovered:
        """:meth:`recover` while running, after the log refused a record (and took it back): the
        model as the files hold it. The open log is closed without the fsync :meth:`close` does
        (it may be what just failed; every record before was synced, or is in ``fsync``'s
        window); the logs are then read back as at start-up."""
        if self._wal is not None:
            try:
                self._wal.close()  # type: ignore[attr-defined]
            except OSError:
                log.exception("closing %s's log", self.directory)
            self._wal = None
        return self.recover()

    def _replay(self, model: OnlineLogisticRegression, dropped: list[str]) -> int:
        replayed = 0
        for base in self._steps(_WAL):
            path = self._wal_path(base)
            records, valid, problem = read_records(path)
            for offset, step_before, batch in records:
                if step_before < model.step:
                    continue  # covered by the snapshot
                if step_before > model.step:
                    problem = f"gap: record at step {step_before}, model at {model.step}"
                    valid = offset  # nothing from the gap on can be applied
                    break
                model.learn_batch(batch)
                replayed += batch.n_rows
            if problem is not None:
                message = f"{path.name}: {problem} at byte {valid}; truncated (never acknowledged)"
                dropped.append(message)
                log.warning("model %s: %s", self.directory.name, message)
                with open(path, "r+b") as handle:
                    handle.truncate(valid)
                    os.fsync(handle.fileno())
        return replayed
