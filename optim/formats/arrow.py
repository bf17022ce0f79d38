"""Columnar input: Apache Arrow record batches (an IPC stream, a Parquet or Arrow file) into
validated batches, through pyarrow (optional: ``pip install 'adaserve[arrow]'``).

Two layouts, told apart by their columns:

* **CSR**: ``indices: list<int>`` and ``values: list<float>`` (row ``r``'s coordinates and their
  values; both lists of a row the same length), optional ``label`` and ``weight``. The child
  arrays are used as they are when they are already ``int64`` and ``float64`` without nulls (no
  copy: the batch's arrays are views of the Arrow buffers, so of the request body); other
  integer or float widths are converted. Offsets become the batch's ``indptr`` (int64; a copy of
  ``rows + 1`` numbers when the list offsets are 32-bit or the column a slice).
* **Named features**: every other column is a feature, hashed as named rows are
  (:func:`optim.hashing.feature_key`): a numeric or boolean column ``IQ`` is feature ``IQ`` with
  the cell's value, a string column ``city`` is feature ``city=<cell>`` with value 1; a null
  cell is an absent feature. ``label`` and ``weight`` are the label and importance weight.

Validation is that of every other input (:meth:`Batch.from_arrays`): a problem raises
:class:`~optim.errors.BatchError` naming the row (of the whole input, ``first_row`` on) and the
column (``indices``, ``values``, ``label``, ``weight`` or the feature's column).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from optim.batch import Batch
from optim.errors import BatchError
from optim.formats.stream import ParseError
from optim.hashing import FeatureHasher

if TYPE_CHECKING:
    import pyarrow as pa

MEDIA_TYPE = "application/vnd.apache.arrow.stream"
CSR_COLUMNS = ("indices", "values")
TARGET_COLUMNS = ("label", "weight")
# Batch.from_arrays' field names, and the columns they come from.
_COLUMN_OF_FIELD = {"labels": "label", "weights": "weight", "indptr": "indices"}


def pyarrow() -> Any:
    """The pyarrow module, or a BatchError saying how to get it."""
    try:
        import pyarrow as pa
        import pyarrow.ipc
    except ImportError:
        raise BatchError(
            "Arrow and Parquet input need pyarrow: pip install 'adaserve[arrow]'"
        ) from None
    return pa


def _renamed(error: BatchError, first_row: int) -> BatchError:
    field = _COLUMN_OF_FIELD.get(error.field or "", error.field)
    row = None if error.row is None else error.row + first_row
    return BatchError(error.reason, field=field, row=row)


def _first_null(column: pa.Array) -> int:
    return int(np.flatnonzero(~column.is_valid().to_numpy(zero_copy_only=False))[0])


def _numbers(column: pa.Array, name: str, dtype: type, first_row: int) -> np.ndarray:
    """A numeric or boolean column as a numpy array of ``dtype`` (a view when it already is)."""
    pa = pyarrow()
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise BatchError(f"must be numbers, not {kind}", field=name)
    if column.null_count:
        raise BatchError("is null", row=first_row + _first_null(column), field=name)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)


def _list_parts(
    column: pa.Array, name: str, element: str, first_row: int
) -> tuple[np.ndarray, np.ndarray]:
    """A list column's row offsets (int64, from 0) and its elements' array (its slice)."""
    pa = pyarrow()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        raise BatchError(f"must be list<{element}>, not {column.type}", field=name)
    if column.null_count:
        raise BatchError("is null (an empty list is a row without features)",
                         row=first_row + _first_null(column), field=name)  # fmt: skip
    offsets = column.offsets.to_numpy()
    start, stop = int(offsets[0]), int(offsets[-1])
    elements = column.values.slice(start, stop - start)
    if elements.null_count:
        position = _first_null(elements)
        row = int(np.searchsorted(offsets, start + position, side="right")) - 1
        raise BatchError(f"holds a null {element}", row=first_row + row, field=name)
    indptr = offsets.astype(np.int64, copy=False) - start if start else offsets.astype(np.int64)
    return indptr, elements


def _csr_batch(
    table: pa.RecordBatch, dim: int, require_labels: bool, first_row: int
) -> tuple[np.ndarray, ...]:
    pa = pyarrow()
    indptr, indices = _list_parts(table.column("indices"), "indices", "int", first_row)
    value_offsets, values = _list_parts(table.column("values"), "values", "float", first_row)
    if not np.array_equal(indptr, value_offsets):
        row = int(np.flatnonzero(np.diff(indptr) != np.diff(value_offsets))[0])
        raise BatchError(
            f"{int(value_offsets[row + 1] - value_offsets[row])} values for "
            f"{int(indptr[row + 1] - indptr[row])} indices", row=first_row + row, field="values",
        )  # fmt: skip
    if not pa.types.is_integer(indices.type):
        raise BatchError(f"must be list<int>, not list<{indices.type}>", field="indices")
    return (
        indptr,
        np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64),
        _numbers(values, "values", np.float64, first_row),
    )


def _named_batch(
    table: pa.RecordBatch, hasher: FeatureHasher, first_row: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    pa = pyarrow()
    names = [n for n in table.schema.names if n not in TARGET_COLUMNS]
    n_rows = table.num_rows
    present = np.zeros((n_rows, len(names)), dtype=bool)
    coordinates = np.zeros((n_rows, len(names)), dtype=np.int64)
    numbers = np.ones((n_rows, len(names)), dtype=np.float64)
    keys: dict[str, int] = {}
    for k, name in enumerate(names):
        if not name:
            raise BatchError("a feature column needs a non-empty name", field="columns")
        column = table.column(name)
        kind = column.type
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        present[:, k] = valid
        if pa.types.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            encoded = column.dictionary_encode()
            labels = [f"{name}={v}" for v in encoded.dictionary.to_pylist()]
            hashed = hasher.indices(labels) if labels else np.zeros(0, np.int64)
            codes = encoded.indices.to_numpy(zero_copy_only=False)
            coordinates[valid, k] = hashed[codes[valid].astype(np.int64)]
            keys.update(zip(labels, hashed.tolist(), strict=True))
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            cells = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
            bad = np.flatnonzero(valid & ~np.isfinite(cells))
            if bad.size:
                raise BatchError(f"value must be finite, got {cells[bad[0]]!r}",
                                 row=first_row + int(bad[0]), field=name)  # fmt: skip
            numbers[valid, k] = cells[valid]
            coordinates[:, k] = keys[name] = hasher.index(name)
        else:
            raise BatchError(f"must be numbers or strings, not {kind}", field=name)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    return indptr, coordinates[present], numbers[present], keys


def batch_of_record_batch(
    table: pa.RecordBatch,
    hasher: FeatureHasher,
    *,
    require_labels: bool,
    first_row: int = 0,
) -> Batch:
    """A validated batch of one Arrow record batch (CSR or named columns, see the module)."""
    try:
        return _batch_of_record_batch(table, hasher, require_labels, first_row)
    except pyarrow().ArrowException as error:  # a column pyarrow cannot convert
        raise BatchError(f"the columns cannot be read: {error}", field="columns") from None


def _batch_of_record_batch(
    table: pa.RecordBatch, hasher: FeatureHasher, require_labels: bool, first_row: int
) -> Batch:
    columns = set(table.schema.names)
    feature_names = None
    if columns & set(CSR_COLUMNS):
        missing = [c for c in CSR_COLUMNS if c not in columns]
        unknown = sorted(columns - {*CSR_COLUMNS, *TARGET_COLUMNS})
        if missing or unknown:
            what = f"missing column(s) {missing}" if missing else f"unknown column(s) {unknown}"
            raise BatchError(
                f"{what}: CSR columns are indices, values, label and weight", field="columns"
            )
        arrays = _csr_batch(table, hasher.dim, require_labels, first_row)
    else:
        *arrays, feature_names = _named_batch(table, hasher, first_row)
    labels = weights = None
    if "label" in columns:
        labels = _numbers(table.column("label"), "label", np.float64, first_row)
    if "weight" in columns:
        weights = _numbers(table.column("weight"), "weight", np.float64, first_row)
    try:
        batch = Batch.from_arrays(
            *arrays, labels, weights, dim=hasher.dim, require_labels=require_labels
        )
    except BatchError as error:
        raise _renamed(error, first_row) from None
    if feature_names:
        batch = Batch(
            batch.indptr, batch.indices, batch.values, batch.labels, batch.weights, batch.dim,
            feature_names,
        )  # fmt: skip
    return batch


def record_batches_of_ipc(data: bytes | memoryview) -> Iterator[pa.RecordBatch]:
    """The record batches of a whole Arrow IPC stream held in memory (views of it)."""
    pa = pyarrow()
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(data))
        yield from reader
    except (pa.ArrowException, OSError) as error:
        raise BatchError(f"not an Arrow IPC stream: {error}", field="body") from None


def batch_of_ipc(data: bytes, hasher: FeatureHasher, *, require_labels: bool) -> Batch:
    """One validated batch of every row of an Arrow IPC stream held in memory: its one record
    batch read in place, or several, each validated, joined."""
    batches, rows = [], 0
    for record_batch in record_batches_of_ipc(data):
        batches.append(
            batch_of_record_batch(
                record_batch, hasher, require_labels=require_labels, first_row=rows
            )
        )
        rows += record_batch.num_rows
    if not batches:
        raise BatchError("the Arrow stream holds no record batch", field="body")
    if len(batches) == 1:
        return batches[0]
    joined = Batch.concatenated(batches)
    names = {key: index for batch in batches for key, index in (batch.feature_names or {}).items()}
    return Batch(
        joined.indptr, joined.indices, joined.values, joined.labels, joined.weights, joined.dim,
        names or None,
    )  # fmt: skip


class ArrowStreamParser:
    """:class:`~optim.formats.StreamParser`'s interface over an Arrow IPC stream fed in pieces:
    each record batch, once all of its bytes have arrived, becomes a batch (of at most
    ``max_rows_per_batch`` rows: a larger record batch is cut). A stream has no lines: its
    ``line`` numbers count rows from 1 (row ``r`` is line ``r + 1``). At most one message is
    held until it is whole, and never more than ``max_message_bytes``."""

    def __init__(
        self,
        *,
        dim: int,
        hash_seed: int = 0,
        max_rows_per_batch: int = 10_000,
        max_message_bytes: int = 64 << 20,
        require_labels: bool = True,
    ) -> None:
        self.hasher = FeatureHasher(dim, hash_seed)
        self.max_rows_per_batch = max_rows_per_batch
        self.max_message_bytes = max_message_bytes
        self.require_labels = require_labels
        self.rows_parsed = 0
        self._buffer = bytearray()
        self._schema: Any = None
        self._ended = False

    @property
    def lines_read(self) -> int:
        return self.rows_parsed

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Batch]:
        self._buffer += data
        return self._messages(final=False)

    def finish(self) -> list[Batch]:
        batches = self._messages(final=True)
        if self._buffer and not self._ended:
            self._stop(f"the stream ends inside a message ({len(self._buffer)} bytes)", [])
        if self._schema is None:
            self._stop("the stream ends before its schema", batches)
        return batches

    def _stop(self, reason: str, valid: list[Batch], field: str | None = None) -> NoReturn:
        """End the stream at the row after the last one parsed (line = row + 1)."""
        at = self.rows_parsed
        raise ParseError(reason, line=at + 1, row=at, field=field or "body", valid_before=valid)

    def _messages(self, *, final: bool) -> list[Batch]:
        """The batches of the messages now whole in the buffer (each read from one copy of its
        bytes); ``final``: nothing more will come."""
        pa = pyarrow()
        batches: list[Batch] = []
        while self._buffer and not self._ended:
            length = _message_length(self._buffer)
            if max(length or 0, len(self._buffer)) > self.max_message_bytes and (
                length is None or length > self.max_message_bytes
            ):
                self._stop(f"a message of more than {self.max_message_bytes:,} bytes", batches)
            if length is None or len(self._buffer) < length:
                break
            if length == 0:  # the end-of-stream marker
                self._ended = True
                del self._buffer[:]
                break
            piece = bytes(self._buffer[:length])
            del self._buffer[:length]
            try:
                message = pa.ipc.read_message(pa.py_buffer(piece))
            except (pa.ArrowException, OSError) as error:
                self._stop(f"not an Arrow IPC stream: {error}", batches)
            batches += self._message(message, batches)
        return batches

    def _message(self, message: Any, before: list[Batch]) -> list[Batch]:
        pa = pyarrow()
        if message.type == "schema":
            self._schema = pa.ipc.read_schema(message)
            return []
        if message.type != "record batch" or self._schema is None:
            self._stop(f"unsupported Arrow message ({message.type}): send plain columns, "
                       "no dictionary batches", before)  # fmt: skip
        record_batch = pa.ipc.read_record_batch(message, self._schema)
        out = []
        for start in range(0, record_batch.num_rows, self.max_rows_per_batch):
            part = record_batch.slice(start, self.max_rows_per_batch)
            try:
                batch = self._batch(part)
            except BatchError as error:
                # the rows before the bad one are learned, as before a malformed line
                good = (error.row or self.rows_parsed) - self.rows_parsed
                if good > 0:
                    out.append(self._batch(part.slice(0, good)))
                    self.rows_parsed += good
                self._stop(error.reason, before + out, field=error.field)
            out.append(batch)
            self.rows_parsed += part.num_rows
        return out

    def _batch(self, record_batch: pa.RecordBatch) -> Batch:
        return batch_of_record_batch(
            record_batch, self.hasher, require_labels=self.require_labels,
            first_row=self.rows_parsed,
        )  # fmt: skip


_CONTINUATION = b"\xff\xff\xff\xff"


def _message_length(data: bytearray) -> int | None:
    """Bytes of the next whole message (prefix, metadata and body), 0 for the end-of-stream
    marker, None until its metadata has arrived. An encapsulated message is ``0xFFFFFFFF`` (absent
    in the pre-1.0 format), a little-endian int32 metadata length, the metadata (a flatbuffer
    ``Message`` whose ``bodyLength`` is its field 3), then the body."""
    prefix = 8 if data[:4] == _CONTINUATION else 4
    if len(data) < prefix:
        return None
    size = int.from_bytes(data[prefix - 4 : prefix], "little", signed=True)
    if size == 0:
        return 0
    if size < 0:
        raise BatchError(f"a message of a negative length ({size})", field="body")
    if len(data) < prefix + size:
        return None
    metadata = memoryview(data)[prefix : prefix + size]
    try:
        return prefix + size + _body_length(metadata)
    finally:
        metadata.release()


def _body_length(metadata: memoryview) -> int:
    """``Message.bodyLength`` of a flatbuffer (0 when absent, as flatbuffers store defaults)."""
    table = int.from_bytes(metadata[:4], "little")
    vtable = table - int.from_bytes(metadata[table : table + 4], "little", signed=True)
    vtable_size = int.from_bytes(metadata[vtable : vtable + 2], "little")
    slot = 4 + 2 * 3
    if slot + 2 > vtable_size:
        return 0
    offset = int.from_bytes(metadata[vtable + slot : vtable + slot + 2], "little")
    if offset == 0:
        return 0
    length = int.from_bytes(metadata[table + offset : table + offset + 8], "little", signed=True)
    if length < 0:
        raise BatchError(f"a message body of a negative length ({length})", field="body")
    return length
