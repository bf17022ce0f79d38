"""Parquet and Arrow files for ``adaserve train`` and ``adaserve predict`` (``--format parquet``
or ``--format arrow``), read through pyarrow (the ``arrow`` extra) in record batches of at most
10,000 rows: the columns of :mod:`optim.formats.arrow` (CSR ``indices``/``values`` lists, or one
column per named feature; ``label``, ``weight``). An Arrow file is the IPC file format (Feather
v2, memory-mapped) or an IPC stream, which is also what ``-`` (stdin) may hold; a Parquet file
is read a row group at a time. An error names the row of the file and the column."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optim import Batch

FORMATS = ("parquet", "arrow")
BATCH_ROWS = 10_000


def _record_batches(pa: Any, source: str, fmt: str) -> tuple[Iterator[Any], int | None]:
    """The file's record batches and its row count (None: not known beforehand)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(sys.stdin.buffer if source == "-" else source)
        return parquet.iter_batches(batch_size=BATCH_ROWS), parquet.metadata.num_rows
    if source == "-":
        return iter(pa.ipc.open_stream(sys.stdin.buffer)), None
    mapped = pa.memory_map(source)
    try:
        reader = pa.ipc.open_file(mapped)
    except pa.ArrowInvalid:  # not the file format: a stream
        mapped.seek(0)
        return iter(pa.ipc.open_stream(mapped)), None
    batches = (reader.get_batch(k) for k in range(reader.num_record_batches))
    return batches, sum(reader.get_batch(k).num_rows for k in range(reader.num_record_batches))


def file_batches(
    source: str,
    fmt: str,
    *,
    dim: int,
    hash_seed: int,
    require_labels: bool,
    on_read: Callable[[int], None],
) -> Iterator[Batch]:
    """Validated batches of a Parquet or Arrow file (``-``: stdin), ``on_read`` told the bytes
    read so far in proportion to the rows (the file's size is what the progress bar counts)."""
    from optim import BatchError
    from optim.formats.arrow import batch_of_record_batch, pyarrow
    from optim.hashing import FeatureHasher

    pa = pyarrow()
    hasher = FeatureHasher(dim, hash_seed)
    try:
        record_batches, total_rows = _record_batches(pa, source, fmt)
    except (pa.ArrowException, OSError) as error:
        raise BatchError(f"not a readable {fmt} file: {error}") from None
    size = 0 if source == "-" else os.path.getsize(source)
    rows = reported = 0
    while True:
        try:
            record_batch = next(record_batches, None)
        except (pa.ArrowException, OSError) as error:
            raise BatchError(f"unreadable after row {rows}: {error}") from None
        if record_batch is None:
            break
        for start in range(0, record_batch.num_rows, BATCH_ROWS):
            part = record_batch.slice(start, BATCH_ROWS)
            yield batch_of_record_batch(part, hasher, require_labels=require_labels, first_row=rows)
            rows += part.num_rows
            if total_rows:
                done = size * rows // total_rows
                on_read(done - reported)
                reported = done
