"""Durable model storage: snapshots plus a write-ahead log of every acknowledged batch.

Layout of one model under ``<data_dir>/models/<name>/``::

    incarnation            this model's identity (uuid4 hex), written when it was created
    snapshot-<step>.npz    the model file (optim's format) at that step; the newest two are kept
    wal-<step>.log         every batch applied after that snapshot, in order
    import-<step>.npz      an imported state, durable, not in place yet (see below)
    damaged/               logs and snapshots ``adaserve repair`` moved aside (:func:`repair_model`)

A model is created under a temporary name (``.creating-<name>-<uuid>``) and renamed into place
once its incarnation, first snapshot and empty log are durable; one deleted is renamed to
``.deleted-<name>-<ns>`` first. Leftovers of either (a crash in between) are removed at start-up
(:func:`remove_leftovers`).

A WAL record is ``length (u32) | crc32 (u32) | payload`` where the payload holds the step the
batch starts at, its shape, flags, the model's incarnation (16 bytes; records written before
incarnations existed have none), its CSR arrays (indices as uint32 when the dim allows, labels
and optional weights), the feature names the batch brings (JSON, when it has any) and, for a
model with feedback, the change of its pending table the record makes (JSON, see
:class:`optim.feedback.FeedbackEntry`: rows remembered at prediction, not learned; pending rows
labelled or expired, learned; rows dropped, none) and, when it held rows out, one byte a
row (1: held out; replayed as such, whatever decided it). A batch is
appended (and, with ``fsync="always"``, made durable: the log is opened ``O_DSYNC``, a write
returns once its bytes are synced, as by ``fdatasync``) before it is acknowledged; the batches a
model's writer takes together are appended with one write (group commit, see
``service.registry``), and one the log refuses is not applied: what was acknowledged survives a
crash. ``fsync="interval"`` fsyncs every ``fsync_interval_ms`` instead, so a crash may lose the
batches of that last window; ``"off"`` leaves it to the operating system.

An import supersedes every snapshot and log, whatever their steps (an imported state may be of a
lower step than the one it replaces): its file is made durable as ``import-<step>.npz`` (the
commit), then every other snapshot and log is removed, its empty log created and the file renamed
to ``snapshot-<step>.npz``; recovery finishes an import a crash interrupted after the commit.

The steps that name snapshots and logs and that records start at are the model's rows seen
(:attr:`~optim.OnlineLogisticRegression.rows_seen`: its step plus the rows it held out, its step
when it held none out): a record of ``n`` rows ends ``n`` after it starts, held out or not.

Recovery loads the newest snapshot that loads (any error falls back to the previous one and both
logs) and replays the logs after it. Only a log's last record can be torn by a crash: a bad
record (length or checksum) with no valid record after it was never acknowledged; it is reported
and truncated. A bad record with valid records after it, a step gap, a record out of order or of
another incarnation is *damage*: nothing is changed, the error names the log, byte offset and
step, and :class:`ModelUnrecoverable` is raised (the service quarantines the model) until
``adaserve repair`` keeps the rows before the damage and moves the damaged files aside.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import logging
import os
import re
import shutil
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numba as nb
import numpy as np

from optim import Batch, OnlineLogisticRegression
from optim.feedback import FeedbackEntry
from optim.model import save_file_arrays
from optim.portfolio import load_model

log = logging.getLogger("adaserve.storage")

_RECORD = struct.Struct("<II")  # payload length, crc32 of the payload
_HEADER = struct.Struct("<qqqqB")  # step before, dim, rows, nnz, flags
_WEIGHTED = 1  # flag: the record holds weights
_NARROW_INDICES = 2  # flag: indices are uint32 (the model's dim is at most 2**32)
_INCARNATION = 4  # flag: the header is followed by the model's incarnation (16 bytes)
_NAMES = 8  # flag: the record ends with the batch's feature names (u64 length, JSON)
_FEEDBACK = 16  # flag: then a change of the pending table (u64 length, JSON)
_HOLDOUT = 32  # flag: then one byte a row, 1 for a row held out
_KNOWN_FLAGS = _WEIGHTED | _NARROW_INDICES | _INCARNATION | _NAMES | _FEEDBACK | _HOLDOUT
_INCARNATION_BYTES = 16
_NAMES_LENGTH = struct.Struct("<Q")
_SMALLEST_RECORD = _RECORD.size + _HEADER.size + 8  # no rows: the header and indptr's one entry
INCARNATION_FILE = "incarnation"
DAMAGED_FOLDER = "damaged"
_LEFTOVER = re.compile(r"\.(creating|deleted)-.+")
_SNAPSHOT = re.compile(r"snapshot-(\d+)\.npz")
_WAL = re.compile(r"wal-(\d+)\.log")
_IMPORTED = re.compile(r"import-(\d+)\.npz")
FSYNC_MODES = ("always", "interval", "off")
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


class StorageError(OSError):
    """Writing to the data directory failed; the batch was not applied."""


class ModelGone(StorageError):
    """The model was deleted: its storage writes nothing more (not even into a new model of the
    same name), and this write was not made."""

    def __init__(self, directory: Path) -> None:
        super().__init__(errno.ENOENT, f"model {directory.name!r} was deleted")


class ImportUnfinished(StorageError):
    """An import was committed (its file is durable) but could not be put in place: the files
    hold the imported state, which the next recovery puts in place; nothing may be logged until
    then."""


class ModelUnrecoverable(Exception):
    """No state of the model can be recovered from its files without losing or inventing
    acknowledged rows (``reason`` says why); its files were left as they are."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_synced(path: Path, data: bytes | Callable[[IO[bytes]], None]) -> None:
    with open(path, "wb") as handle:
        if callable(data):
            data(handle)
        else:
            handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_atomically(path: Path, data: bytes | Callable[[IO[bytes]], None]) -> None:
    """Temporary file, fsync, rename, fsync of the directory: all of ``data`` (bytes, or a
    function writing them to the file it is given) or the old file."""
    temporary = path.with_name(f".{path.name}.tmp")
    _write_synced(temporary, data)
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


def record_body(batch: Batch, entry: FeedbackEntry | None = None) -> RecordBody:
    """Indices are logged as uint32 when the dim allows (a quarter less to write and fsync than
    int64: 16 bytes a non-zero become 12), other arrays as they are when they already have
    the logged types (int64 and float64, as the parsers make them): no copy, and the checksum
    is computed piece by piece in one compiled call. A stream batch of 10,000 rows is ~4 MB;
    converting, copying and joining it cost about as much as learning it. A batch of named
    features also logs its names (so the names learned since the last snapshot are replayed
    after a crash): one JSON text, ``ensure_ascii`` so that any Python string round-trips.
    ``entry``: the change of the model's pending table the record makes (see the module)."""
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
    if batch.feature_names:
        flags |= _NAMES
        names = json.dumps(batch.feature_names, separators=(",", ":")).encode("ascii")
        arrays.append(memoryview(_NAMES_LENGTH.pack(len(names)) + names))
    if entry is not None:
        flags |= _FEEDBACK
        text = entry.to_json()
        arrays.append(memoryview(_NAMES_LENGTH.pack(len(text)) + text))
    views = [np.frombuffer(array, np.uint8) for array in arrays]
    if len(views) == 7:  # weights, names and an entry: the last two checksummed as one piece
        views[5:] = [np.concatenate(views[5:])]
    views += [np.empty(0, np.uint8)] * (6 - len(views))
    return RecordBody(flags, arrays, _checksum(*views), sum(len(array) for array in arrays))


def record_parts(
    batch: Batch, step_before: int, body: RecordBody | None = None, incarnation: bytes = b""
) -> list[bytes | memoryview]:
    """The pieces of a batch's log record, in order: written one after the other they are the
    record :func:`encode_batch` builds. ``body`` is the batch's :func:`record_body` when it
    was made beforehand: what is left is the header (with ``incarnation``, the model's 16-byte
    identity, when given) and its share of the checksum."""
    body = body or record_body(batch)
    flags = body.flags | (_INCARNATION if incarnation else 0)
    held_out = b""
    if batch.holdout is not None and batch.holdout.any():
        flags |= _HOLDOUT
        held_out = batch.holdout.astype(np.uint8).tobytes()
    header = _HEADER.pack(step_before, batch.dim, batch.n_rows, batch.nnz, flags) + incarnation
    checksum = _crc32_combine(zlib.crc32(header), body.checksum, body.length)
    checksum = zlib.crc32(held_out, checksum)
    length = len(header) + body.length + len(held_out)
    return [_RECORD.pack(length, checksum), header, *body.arrays, *([held_out] if held_out else [])]


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


def encode_batch(batch: Batch, step_before: int, incarnation: bytes = b"") -> bytes:
    return b"".join(record_parts(batch, step_before, incarnation=incarnation))


@dataclass(frozen=True, eq=False)
class LogRecord:
    """A record read back from a log: where it starts, the step the batch starts at, the
    incarnation it was written by (None: a record from before incarnations) and the batch."""

    log: str
    offset: int
    step_before: int
    incarnation: bytes | None
    batch: Batch
    entry: FeedbackEntry | None = None

    @property
    def learned(self) -> bool:
        """Whether its rows are learned (not those remembered at prediction, nor a drop's)."""
        return self.entry is None or self.entry.kind in ("label", "expire")

    @property
    def step_after(self) -> int:
        return self.step_before + (self.batch.n_rows if self.learned else 0)


def decode_record(payload: bytes) -> tuple[int, bytes | None, Batch, FeedbackEntry | None]:
    """The step before, incarnation, batch and change of the pending table of a record's
    payload (ValueError if it does not hold together)."""
    step, dim, rows, nnz, flags = _HEADER.unpack_from(payload)
    offset = _HEADER.size
    if flags & ~_KNOWN_FLAGS or min(step, dim - 1, rows, nnz) < 0:
        raise ValueError(f"impossible header (flags {flags}, dim {dim}, {rows} rows, {nnz} nnz)")
    incarnation = None
    if flags & _INCARNATION:
        incarnation = payload[offset : offset + _INCARNATION_BYTES]
        offset += _INCARNATION_BYTES

    def take(count: int, dtype: str) -> np.ndarray:
        nonlocal offset
        array = np.frombuffer(payload, dtype=dtype, count=count, offset=offset)
        offset += array.nbytes
        return array.astype(np.int64 if dtype[1] in "iu" else np.float64)

    indptr = take(rows + 1, "<i8")
    indices = take(nnz, "<u4" if flags & _NARROW_INDICES else "<i8")
    values, labels = take(nnz, "<f8"), take(rows, "<f8")
    weights = take(rows, "<f8") if flags & _WEIGHTED else None
    names = None
    if flags & _NAMES:
        (length,) = _NAMES_LENGTH.unpack_from(payload, offset)
        offset += _NAMES_LENGTH.size
        names = json.loads(payload[offset : offset + length])
        offset += length
        if not isinstance(names, dict) or not all(type(i) is int for i in names.values()):
            raise ValueError("feature names are not a mapping of names to indices")
    entry = None
    if flags & _FEEDBACK:
        (length,) = _NAMES_LENGTH.unpack_from(payload, offset)
        offset += _NAMES_LENGTH.size
        entry = FeedbackEntry.from_json(payload[offset : offset + length])
        offset += length
        if rows != (0 if entry.kind == "drop" else len(entry.ids)):  # a drop has no rows
            raise ValueError(f"a {entry.kind} entry of {len(entry.ids)} ids for {rows} rows")
    # Explicit either way: which rows the model held out is what was logged, not its setting.
    holdout = take(rows, "<u1") != 0 if flags & _HOLDOUT else np.zeros(rows, dtype=bool)
    if offset != len(payload):
        raise ValueError("record size does not match its header")
    # Logged batches were validated before they were logged; Batch is rebuilt as is.
    batch = Batch(indptr, indices, values, labels, weights, dim, names, holdout)
    return step, incarnation, batch, entry


def decode_batch(payload: bytes) -> tuple[int, Batch]:
    step, _, batch, _ = decode_record(payload)
    return step, batch


@nb.njit
def _little_endian(data: np.ndarray, at: int, size: int) -> int:
    value = 0
    for k in range(size):
        value |= np.int64(data[at + k]) << (8 * k)
    return value


@nb.njit
def _next_plausible_record(data: np.ndarray, start: int) -> int:
    """The first offset from ``start`` where a record could begin: its length, its header's
    fields and flags agree with each other (a checksum is worth computing there), or -1.
    Eight-byte fields are taken as at most 2**56 (their top byte zero) so they fit int64."""
    end = data.shape[0]
    for at in range(start, end - 8 - 33 + 1):
        length = _little_endian(data, at, 4)
        payload = at + 8
        if length < 33 or payload + length > end:
            continue
        if data[payload + 7] or data[payload + 15] or data[payload + 23] or data[payload + 31]:
            continue
        dim = _little_endian(data, payload + 8, 7)
        rows = _little_endian(data, payload + 16, 7)
        nnz = _little_endian(data, payload + 24, 7)
        flags = data[payload + 32]
        if flags & ~63 or dim < 1 or rows > length or nnz > length:
            continue
        size = 33 + (16 if flags & 4 else 0) + 8 * (rows + 1) + (4 if flags & 2 else 8) * nnz
        size += 8 * nnz + 8 * rows + (8 * rows if flags & 1 else 0)
        if flags & 8:
            if size + 8 > length or data[payload + size + 7]:
                continue
            size += 8 + _little_endian(data, payload + size, 7)
        if flags & 16:
            if size + 8 > length or data[payload + size + 7]:
                continue
            size += 8 + _little_endian(data, payload + size, 7)
        if flags & 32:
            size += rows
        if size == length:
            return at
    return -1


@dataclass
class LogScan:
    """A log read back: its valid prefix (``records``, ``valid`` bytes long), why the byte at
    ``valid`` begins no valid record (``problem``, None when the log is whole), and the valid
    records found after that (``after``: then it is damage, not a torn tail)."""

    records: list[LogRecord]
    valid: int
    problem: str | None
    after: list[LogRecord]


def _read_valid(name: str, data: bytes, offset: int) -> tuple[list[LogRecord], int, str | None]:
    records = []
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
            records.append(LogRecord(name, offset, *decode_record(payload)))
        except (ValueError, struct.error) as exc:
            return records, offset, f"undecodable record: {exc}"
        offset += _RECORD.size + length
    return records, offset, None


def scan_log(name: str, data: bytes) -> LogScan:
    """Read a log's records; past a bad one, look for valid records further on (compiled: a
    log of hundreds of MB is searched in a second)."""
    records, valid, problem = _read_valid(name, data, 0)
    after: list[LogRecord] = []
    if problem is not None and len(data) - valid > _SMALLEST_RECORD:  # a bad byte and a record fit
        array = np.frombuffer(data, np.uint8)
        start = valid + 1
        while (candidate := _next_plausible_record(array, start)) >= 0:
            found, end, _ = _read_valid(name, data, candidate)
            if not found:
                start = candidate + 1
                continue
            after += found
            start = end + 1  # past the records found (and the bad one that ends them, if any)
    return LogScan(records, valid, problem, after)


def read_records(path: Path) -> tuple[list[tuple[int, int, Batch]], int, str | None]:
    """Records ``(byte offset, step before, batch)`` of a log, the byte length of its valid
    prefix, and why the rest (if any) is bad."""
    scan = scan_log(path.name, path.read_bytes())
    return [(r.offset, r.step_before, r.batch) for r in scan.records], scan.valid, scan.problem


def remove_leftovers(models_dir: Path) -> list[str]:
    """Remove what a crash left of a model being created or deleted (never acknowledged as
    created, or already acknowledged as deleted): the names removed, each logged (one that
    cannot be removed is logged as an error and left; it is no model)."""
    removed = []
    for path in sorted(models_dir.iterdir()):
        if _LEFTOVER.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
            try:
                shutil.rmtree(path)
            except OSError as exc:  # the service starts anyway: it is no model
                log.error("could not remove %s, left by a crash: %s", path, exc)
                continue
            log.warning("removed %s, left by a crash while a model was created or deleted", path)
            removed.append(path.name)
    if removed:
        fsync_directory(models_dir)
    return removed


@dataclass
class Recovered:
    model: OnlineLogisticRegression
    snapshot_step: int
    replayed_rows: int
    dropped: list[str]


@dataclass
class _LogsAfter:
    """What the logs after a snapshot hold: the records to replay in order, the torn tails to
    truncate, and, when they are damaged, why, the logs from the damaged one on, and the valid
    records from the damage on (lost unless an operator recovers them by hand)."""

    logs: list[str]
    records: list[LogRecord] = field(default_factory=list)
    torn: list[tuple[str, int, str]] = field(default_factory=list)  # log, valid bytes, problem
    damage: str | None = None
    damaged_logs: list[str] = field(default_factory=list)
    lost: list[LogRecord] = field(default_factory=list)

    def damaged(self, why: str, log_name: str, lost: list[LogRecord]) -> None:
        self.damage = why
        self.damaged_logs = self.logs[self.logs.index(log_name) :]
        self.lost = lost


@dataclass
class Repaired:
    """What :func:`repair_model` did. ``damage`` is None when the model recovers as it is (then
    nothing was changed); otherwise the model now holds ``kept_step`` rows (the snapshot at
    ``snapshot_step`` plus the records before the damage), and ``lost_records`` valid records
    after the damage (``lost_rows`` rows, counting the damaged one) were moved aside with the
    damaged files (``moved``, into ``damaged/``)."""

    damage: str | None
    snapshot_step: int
    kept_step: int
    lost_records: int
    lost_rows: int
    moved: list[str]


class ModelStorage:
    """One model's directory: its incarnation, snapshots and write-ahead log.

    After :meth:`delete` every write raises :class:`ModelGone` and writes nothing: each write
    checks it under the lock :meth:`delete` holds while it renames the directory away, so no
    write can land in a model created later under the same name.
    """

    def __init__(
        self, directory: Path, fsync: str = "always", fsync_interval_ms: int = 100
    ) -> None:
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}, got {fsync!r}")
        self.directory = directory
        self.fsync = fsync
        self.fsync_interval = fsync_interval_ms / 1000
        # This model's identity (uuid4 hex), set by create and recover; logged in every record.
        self.incarnation: str | None = None
        self._incarnation = b""
        self._deleted = False
        self._wal: object | None = None  # the open log file
        self._wal_base = 0
        self._last_sync = time.monotonic()
        self._dirty = False
        self._lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._imports = 0  # how many imports replaced the state: a snapshot begun before is void

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

    def _check_alive(self) -> None:
        if self._deleted:
            raise ModelGone(self.directory)

    def _set_incarnation(self, incarnation: str) -> None:
        self.incarnation, self._incarnation = incarnation, bytes.fromhex(incarnation)

    def _read_incarnation(self) -> str | None:
        """The directory's incarnation; None for a model created before incarnations existed."""
        try:
            text = (self.directory / INCARNATION_FILE).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return uuid.UUID(hex=text.decode("ascii").strip()).hex
        except ValueError:
            raise ModelUnrecoverable(f"{INCARNATION_FILE} is unreadable: {text[:64]!r}") from None

    def _incarnation_on_disk(self) -> str | None:
        try:
            return self._read_incarnation()
        except ModelUnrecoverable:  # damaged, but this model's files as far as anyone knows
            return self.incarnation

    # ------------------------------------------------------------------ lifecycle
    def create(self, model: OnlineLogisticRegression) -> None:
        """A new model with a new incarnation: built under a temporary name (its incarnation,
        first snapshot and empty log, each fsynced, then the folder), renamed into place and the
        rename fsynced. A crash leaves the whole model or a leftover :func:`remove_leftovers`
        removes (creating a model of 2**26 coordinates takes seconds)."""
        self._check_alive()
        if self.directory.exists():
            raise FileExistsError(errno.EEXIST, "the model's directory exists", str(self.directory))
        incarnation = uuid.uuid4().hex
        building = self.directory.with_name(f".creating-{self.directory.name}-{incarnation}")
        building.parent.mkdir(parents=True, exist_ok=True)
        building.mkdir()
        try:
            _write_synced(building / INCARNATION_FILE, incarnation.encode())
            arrays = model.file_arrays()
            snapshot = building / self._snapshot_path(model.rows_seen).name
            _write_synced(snapshot, lambda handle: save_file_arrays(handle, arrays))
            _write_synced(building / self._wal_path(model.rows_seen).name, b"")
            fsync_directory(building)
            os.rename(building, self.directory)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        fsync_directory(self.directory.parent)
        self._set_incarnation(incarnation)
        with self._lock:
            self._open_wal(model.rows_seen)

    def delete(self) -> None:
        """Remove the model durably (a renamed-away directory is no model at start-up); from
        then on every write of this object raises :class:`ModelGone`. Waits for a snapshot
        being written."""
        with self._snapshot_lock, self._lock:
            self._check_alive()
            if self.incarnation is not None and self._incarnation_on_disk() != self.incarnation:
                self._deleted = True  # the directory is another model's already
                raise ModelGone(self.directory)
            self.close()
            tombstone = self.directory.with_name(f".deleted-{self.directory.name}-{time.time_ns()}")
            os.replace(self.directory, tombstone)
            self._deleted = True
            fsync_directory(self.directory.parent)
        shutil.rmtree(tombstone, ignore_errors=True)

    # ------------------------------------------------------------------ writes
    def append(self, batch: Batch, step_before: int) -> None:
        """Log a batch before it is applied; on failure nothing is left half-written."""
        self.append_all([(batch, step_before, None)])

    def append_all(self, records: Sequence[tuple[Batch, int, RecordBody | None]]) -> None:
        """Log batches (each with its step before and its :func:`record_body` when made
        beforehand) in order, with one write (synchronized with fsync "always"): all of them
        or, on failure, none (nothing is left half-written). :class:`ModelGone` once deleted."""
        incarnation = self._incarnation
        parts = [
            part
            for batch, step, body in records
            for part in record_parts(batch, step, body, incarnation)
        ]
        with self._lock:
            self._check_alive()
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
        snapshot and both logs. ``copy=False`` when the model stays still until then. Both
        raise :class:`ModelGone` once the model is deleted."""
        step, arrays = model.rows_seen, model.file_arrays(copy=copy)
        with self._lock:
            self._check_alive()
            self._open_wal(step)
            imports = self._imports

        def finish() -> Path:
            path = self._snapshot_path(step)
            with self._snapshot_lock:  # one at a time: each prunes what the newest supersedes
                self._check_alive()
                if self._imports != imports:  # its state was replaced: never written over it
                    raise StorageError(errno.ESTALE, "an import replaced the state it holds")
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

    def replace(self, model: OnlineLogisticRegression) -> Path:
        """Make ``model`` (an imported state, held still) the one the files hold, in place of
        every snapshot and log: its file is written and made durable as ``import-<step>.npz``
        (the commit), then put in place by :meth:`_finish_import`, and its empty log is opened.
        An OSError before the commit leaves every file as it was (the log open as it was);
        :class:`ImportUnfinished` after it. :class:`ModelGone` once deleted."""
        step, arrays = model.rows_seen, model.file_arrays(copy=False)
        committed = self.directory / f"import-{step}.npz"
        temporary = committed.with_name(f".{committed.name}.tmp")
        with self._snapshot_lock, self._lock:
            self._check_alive()
            self._finish_import()  # one committed earlier and not in place (then nothing here)
            try:
                _write_synced(temporary, lambda handle: save_file_arrays(handle, arrays))
                os.rename(temporary, committed)
                fsync_directory(self.directory)
            except OSError:
                temporary.unlink(missing_ok=True)
                committed.unlink(missing_ok=True)
                raise
            self._imports += 1
            try:
                self._drop_wal()
                self._finish_import()
                self._open_wal(step)
            except OSError as exc:
                raise ImportUnfinished(
                    exc.errno, f"the import was written but not put in place: {exc.strerror}"
                ) from exc
        return self._snapshot_path(step)

    def _finish_import(self) -> None:
        """Put a committed import in place: every other snapshot and log removed, its empty log
        created, its file renamed to its snapshot. A crash anywhere in it is finished by the
        next call (nothing is logged before it ends); an uncommitted one's file is removed."""
        for leftover in self.directory.glob(".import-*.npz.tmp"):
            leftover.unlink()
        imported = self._steps(_IMPORTED)
        if not imported:
            return
        (step,) = imported  # a second one is committed only once the first is in place
        for old in self._steps(_SNAPSHOT):
            self._snapshot_path(old).unlink()
        for old in self._steps(_WAL):
            self._wal_path(old).unlink()
        _write_synced(self._wal_path(step), b"")
        fsync_directory(self.directory)
        os.rename(self.directory / f"import-{step}.npz", self._snapshot_path(step))
        fsync_directory(self.directory)
        log.info("model %s: the import of step %d is in place", self.directory.name, step)

    def _drop_wal(self) -> None:
        """Close the open log without :meth:`close`'s fsync (it may be what just failed, or
        what an import superseded)."""
        if self._wal is not None:
            try:
                self._wal.close()  # type: ignore[attr-defined]
            except OSError:
                log.exception("closing %s's log", self.directory)
            self._wal = None

    # ------------------------------------------------------------------ recovery
    def recover(self) -> Recovered:
        """The newest snapshot that loads, plus every logged batch after it; a torn tail is
        truncated. :class:`ModelUnrecoverable` (any error, the logs damaged, no snapshot that
        loads) leaves every file as it was."""
        with self._snapshot_lock, self._lock:
            return self._recover()

    def reload(self) -> Recovered:
        """:meth:`recover` while running, after the log refused a record (and took it back): the
        model as the files hold it. The open log is closed without the fsync :meth:`close` does
        (it may be what just failed; every record before was synced, or is in ``fsync``'s
        window); the logs are then read back as at start-up."""
        with self._snapshot_lock, self._lock:
            self._drop_wal()
            return self._recover()

    def _recover(self) -> Recovered:
        self._check_alive()
        name = self.directory.name
        try:
            self._finish_import()
            model, snapshot_step, dropped, _ = self._newest_snapshot()
            incarnation = self._read_incarnation()
            logs = self._logs_after(snapshot_step, incarnation)
            replayed = self._replay(model, logs)
            if logs.damage is not None:
                reason = (
                    f"{logs.damage}; its files are kept as they are (`adaserve repair` keeps "
                    f"the rows before the damage)"
                )
                log.error("model %s: %s", name, reason)
                raise ModelUnrecoverable(reason)
            if incarnation is None:  # a model from before incarnations: it gets one now
                incarnation = uuid.uuid4().hex
                write_atomically(self.directory / INCARNATION_FILE, incarnation.encode())
            for log_name, valid, problem in logs.torn:
                message = f"{log_name}: {problem} at byte {valid}; truncated (never acknowledged)"
                dropped.append(message)
                log.warning("model %s: %s", name, message)
                with open(self.directory / log_name, "r+b") as handle:
                    handle.truncate(valid)
                    os.fsync(handle.fileno())
            self._set_incarnation(incarnation)
            self._open_wal(max([*self._steps(_WAL), snapshot_step]))
        except (ModelUnrecoverable, ModelGone):
            raise
        except Exception as exc:
            reason = f"recovery failed: {type(exc).__name__}: {exc}"
            log.exception("model %s: %s", name, reason)
            raise ModelUnrecoverable(reason) from exc
        return Recovered(model, snapshot_step, replayed, dropped)

    def _newest_snapshot(self) -> tuple[OnlineLogisticRegression, int, list[str], list[int]]:
        """The newest snapshot that loads and its step, what was skipped (as messages, and the
        steps of the snapshots skipped): any error loading one falls back to the previous."""
        dropped: list[str] = []
        skipped: list[int] = []
        for step in reversed(self._steps(_SNAPSHOT)):
            try:
                model = load_model(self._snapshot_path(step))
            except Exception as exc:
                dropped.append(
                    f"snapshot-{step}.npz unreadable ({type(exc).__name__}: {exc}); falling back"
                )
                log.error("model %s: %s", self.directory.name, dropped[-1])
                skipped.append(step)
                continue
            if model.rows_seen == step:
                return model, step, dropped, skipped
            dropped.append(f"snapshot-{step}.npz holds step {model.rows_seen}; skipped")
            skipped.append(step)
        raise ModelUnrecoverable(
            f"no readable snapshot in {self.directory}"
            + (f": {'; '.join(dropped)}" if dropped else " (no snapshot file)")
        )

    def _logs_after(self, snapshot_step: int, incarnation: str | None) -> _LogsAfter:
        """Read the logs from the newest one begun at or before the snapshot (every record
        before that one is in the snapshot) and check each record's place: in its log, each
        starts where the previous one ended; the first not in the snapshot starts at its step;
        none is of another incarnation (records from before incarnations have none)."""
        bases = self._steps(_WAL)
        first = max((base for base in bases if base <= snapshot_step), default=None)
        names = [self._wal_path(b).name for b in bases if first is None or b >= first]
        logs = _LogsAfter(names)
        expected = bytes.fromhex(incarnation) if incarnation is not None else None
        step = snapshot_step
        scans = [scan_log(name, (self.directory / name).read_bytes()) for name in names]
        for index, (name, scan) in enumerate(zip(names, scans, strict=True)):
            previous: int | None = None
            for position, record in enumerate(scan.records):
                why = None
                if record.incarnation is not None and record.incarnation != expected:
                    why = f"a record of another model (incarnation {record.incarnation.hex()})"
                elif previous is not None and record.step_before != previous:
                    kind = "a gap" if record.step_before > previous else "out of order"
                    why = f"{kind}: a record of step {record.step_before} after one ending at "
                    why += str(previous)
                elif record.step_before > step:
                    why = f"a gap: a record of step {record.step_before}, the model at {step}"
                elif record.step_before < step < record.step_after:
                    why = (
                        f"a record of steps {record.step_before}-{record.step_after} across {step}"
                    )
                if why is not None:
                    lost = scan.records[position:] + scan.after + _all_records(scans[index + 1 :])
                    logs.damaged(f"{name}: {why}, at byte {record.offset}", name, lost)
                    return logs
                previous = record.step_after
                if record.step_before == step:
                    logs.records.append(record)
                    step = record.step_after
            if scan.problem is None:
                continue
            if not scan.after:
                logs.torn.append((name, scan.valid, scan.problem))
                continue
            where = previous if previous is not None else int(name[4:-4])
            why = (
                f"{name}: {scan.problem} at byte {scan.valid} (the record of step {where}), "
                f"followed by {len(scan.after)} valid records: damage, not a torn tail"
            )
            logs.damaged(why, name, scan.after + _all_records(scans[index + 1 :]))
            return logs
        return logs

    def _replay(self, model: OnlineLogisticRegression, logs: _LogsAfter) -> int:
        """Learn the records ``logs`` holds; one the model refuses is damage (the records from
        it on are not learned)."""
        replayed = 0
        for position, record in enumerate(logs.records):
            try:
                learn_record(model, record)
            except Exception as exc:  # a whole record the model refuses: nothing was changed
                why = f"{record.log}: the record at byte {record.offset} (step "
                why += f"{record.step_before}) cannot be learned: {type(exc).__name__}: {exc}"
                logs.damaged(why, record.log, logs.records[position:] + logs.lost)
                del logs.records[position:]
                break
            replayed += record.step_after - record.step_before
        return replayed

    def repair(self) -> Repaired:
        """See :func:`repair_model`."""
        with self._snapshot_lock, self._lock:
            self._check_alive()
            self._finish_import()
            model, snapshot_step, _, skipped = self._newest_snapshot()
            logs = self._logs_after(snapshot_step, self._read_incarnation())
            self._replay(model, logs)
            if logs.damage is None:
                return Repaired(None, snapshot_step, model.rows_seen, 0, 0, [])
            # Each step leaves a model that recovers as before or as repaired (or is damaged
            # the same way, and repairs the same): snapshots that did not load out of the way,
            # the state before the damage written, then the damaged logs out of the way.
            aside = self.directory / DAMAGED_FOLDER
            aside.mkdir(exist_ok=True)
            moved = [self._move_aside(self._snapshot_path(step).name) for step in skipped]
            arrays = model.file_arrays()
            write_atomically(
                self._snapshot_path(model.rows_seen),
                lambda handle: save_file_arrays(handle, arrays),
            )
            moved += [self._move_aside(name) for name in logs.damaged_logs]
            fsync_directory(aside)
            fsync_directory(self.directory)
            lost_rows = (
                max((r.step_after for r in logs.lost), default=model.rows_seen) - model.rows_seen
            )
            log.warning(
                "model %s repaired: kept step %d; %d valid records (%d rows) after the damage "
                "moved aside with %s (%s)", self.directory.name, model.rows_seen, len(logs.lost),
                lost_rows, moved, logs.damage,
            )  # fmt: skip
            return Repaired(
                logs.damage, snapshot_step, model.rows_seen, len(logs.lost), lost_rows, moved
            )

    def _move_aside(self, name: str) -> str:
        target = self.directory / DAMAGED_FOLDER / name
        if target.exists():
            target = target.with_name(f"{name}.{time.time_ns()}")
        os.rename(self.directory / name, target)
        return f"{DAMAGED_FOLDER}/{target.name}"


def learn_record(model: OnlineLogisticRegression, record: LogRecord) -> None:
    """Apply one logged record to ``model`` as its writer did: learn its rows (a label's or an
    expiry's only when the pending table has not replayed it yet) and replay its change of the
    pending table. What the model refuses raises, the model unchanged."""
    entry, feedback = record.entry, model.feedback
    if entry is not None and feedback is None:
        raise ValueError("a change of pending rows, but the model has no feedback")
    if entry is None or (record.learned and entry.seq > feedback.seq):
        model.learn_batch(record.batch)
    if entry is not None:
        feedback.replay(entry, record.batch)


class LostTrack(Exception):
    """The files no longer continue the state a :class:`LogFollower` holds (an import replaced
    them, the log it read was removed, a record out of its place): load it again."""


class LogFollower:
    """A model's files read and never written, for a read-only copy (a cluster's read
    replica): :meth:`load` gives the newest snapshot's state, then :meth:`follow` learns the
    records logged since, a few bytes at a time: it remembers the log and byte it stopped at.

    A log is complete once a newer one exists (the writer starts the next log at a snapshot,
    after every earlier record is written), so the logs are listed before the current one is
    read: records continue in the next log at the step the current one ended at. A torn record
    at the end of the log being written is read again next time. Anything else that does not
    continue the state it holds raises :class:`LostTrack`: a log removed (the copy fell more
    than a snapshot behind) or replaced (an import), a record out of place."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files = ModelStorage(directory)  # for its read-only helpers: never written
        self.step = 0  # the rows seen of the state it holds
        self._log: tuple[int, int] | None = None  # the log being read: base step, inode
        self._offset = 0

    def load(self) -> OnlineLogisticRegression:
        """The newest snapshot that loads; the records after it are read from the log begun at
        or before it (as recovery reads them)."""
        model, self.step, _, _ = self._files._newest_snapshot()
        bases = self._files._steps(_WAL)
        base = max((b for b in bases if b <= self.step), default=min(bases, default=None))
        self._log = None if base is None else self._open(base)
        return model

    def _open(self, base: int) -> tuple[int, int]:
        self._offset = 0
        try:
            return base, self._files._wal_path(base).stat().st_ino
        except FileNotFoundError:
            raise LostTrack(f"wal-{base}.log was removed") from None

    def follow(self, learn: Callable[[LogRecord], None]) -> int:
        """Give ``learn`` each record logged since the last call that continues the state (at
        :attr:`step`, which it returns); :class:`LostTrack` when the files do not continue it."""
        while True:
            bases = self._files._steps(_WAL)  # before reading: a newer log completes this one
            if self._log is None:
                if not bases:
                    return self.step
                self._log = self._open(bases[0])
            base, inode = self._log
            path = self._files._wal_path(base)
            try:
                with open(path, "rb") as handle:
                    status = os.fstat(handle.fileno())
                    if status.st_ino != inode or status.st_size < self._offset:
                        raise LostTrack(f"{path.name} was replaced (an import)")
                    handle.seek(self._offset)
                    data = handle.read()
            except FileNotFoundError:
                raise LostTrack(f"{path.name} was removed") from None
            records, valid, problem = _read_valid(path.name, data, 0)
            start = self._offset
            ends = [record.offset for record in records[1:]] + [valid] if records else []
            for record, end in zip(records, ends, strict=True):
                if record.step_before == self.step:
                    learn(record)
                    self.step = record.step_after
                elif record.step_after > self.step:  # past it, or across it
                    raise LostTrack(
                        f"{path.name}: a record of step {record.step_before}, the copy at "
                        f"{self.step}"
                    )
                # else: a record the snapshot it loaded holds already
                self._offset = start + end  # never learned twice, even if the next one fails
            later = [b for b in bases if b > base]
            if not later:
                return self.step
            if problem is not None or later[0] != self.step:
                raise LostTrack(f"{path.name} does not end where wal-{later[0]}.log begins")
            self._log = self._open(later[0])


def _all_records(scans: Sequence[LogScan]) -> list[LogRecord]:
    return [record for scan in scans for record in (*scan.records, *scan.after)]


def repair_model(directory: Path) -> Repaired:
    """Make a model whose logs are damaged start again (``adaserve repair``; the service must
    not be running): the newest snapshot that loads plus the records before the damage are
    written as a new snapshot, and the damaged logs (the one with the damage and every later
    one) and the snapshots that did not load are moved into ``damaged/`` for an operator. The
    rows after the damage are lost: :class:`Repaired` says how many. A model that recovers as
    it is is left alone; one without a snapshot that loads raises :class:`ModelUnrecoverable`
    (nothing is changed)."""
    return ModelStorage(directory).repair()
