"""The driver every format shares: a stream of bytes in, validated batches out (see
:mod:`optim.formats`).

One buffer policy for every format: each batch's arrays are allocated once, sized by running
estimates of non-zeros per row and per byte; a kernel that fills ``indices`` or ``fixes`` says so
and they double (the row in progress was rolled back, so it is read again); the batch keeps them
trimmed when more than a quarter is unused.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from optim.batch import Batch
from optim.errors import BatchError, ConfigError
from optim.features import DEFAULT_MAX_NAMES, FeatureOptions
from optim.formats._scan import (
    DONE,
    E_VALUE_RANGE,
    FULL_FIXES,
    FULL_INDICES,
    FULL_NAMES,
    STATE,
    Reader,
    Rows,
    canon_all,
    grow_names,
)
from optim.formats.compressed import COMPRESSED_SUFFIXES, DecompressedReader
from optim.hashing import FeatureHasher

# Each format's reader class, in its module: imported when a parser of that format is made, so a
# process reading one format loads one format's compiled code (adaserve train's start-up).
READERS: dict[str, str] = {
    "libsvm": "optim.formats.libsvm:LibsvmReader",
    "vw": "optim.formats.vw:VwReader",
    "criteo": "optim.formats.criteo:CriteoReader",
    "ndjson": "optim.formats.ndjson:NdjsonReader",
}


def reader_class(fmt: str) -> type[Reader]:
    """The reader class of format ``fmt`` (one of :data:`READERS`), its module imported."""
    module, _, name = READERS[fmt].partition(":")
    return getattr(importlib.import_module(module), name)


class ParseError(BatchError):
    """A malformed line: ``line`` (1-based), ``row``, ``field``, ``reason``, ``valid_before``."""

    def __init__(
        self,
        reason: str,
        *,
        line: int,
        field: str | None = None,
        row: int | None = None,
        valid_before: list[Batch] | None = None,
    ) -> None:
        super().__init__(reason, field=field, row=row)
        self.line = line
        self.valid_before: list[Batch] = list(valid_before or [])
        where = f"line {line}" + (f", field '{field}'" if field is not None else "")
        self.args = (f"{where}: {reason}",)

    @property
    def where(self) -> dict[str, int | str]:
        return {"line": self.line, **super().where}


class StreamParser:
    """Parse a stream of text rows fed in chunks of bytes into validated batches.

    ``features``: namespaces left out and crosses added (:mod:`optim.features`). The batches
    carry the feature names first seen in them (``Batch.feature_names``: the first name seen at
    each coordinate, and once each other name seen at a coordinate that had one), at most
    ``max_names`` in all (0: none recorded, the parser's fastest).
    """

    def __init__(
        self,
        fmt: str,
        *,
        dim: int,
        hash_seed: int = 0,
        max_rows_per_batch: int = 10_000,
        max_line_bytes: int = 1 << 20,
        require_labels: bool = True,
        features: FeatureOptions | None = None,
        max_names: int = DEFAULT_MAX_NAMES,
    ) -> None:
        if fmt not in READERS:
            raise ConfigError(f"must be one of {', '.join(READERS)}, got {fmt!r}", field="format")
        self.hasher = FeatureHasher(dim, hash_seed)  # validates dim and seed
        if isinstance(max_names, bool) or not isinstance(max_names, int) or max_names < 0:
            raise ConfigError(f"must be an integer >= 0, got {max_names!r}", field="max_names")
        for name, value in (
            ("max_rows_per_batch", max_rows_per_batch),
            ("max_line_bytes", max_line_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"must be a positive integer, got {value!r}", field=name)
        self.fmt = fmt
        self.dim = self.hasher.dim
        self.hash_seed = self.hasher.seed
        self.max_rows_per_batch = int(max_rows_per_batch)
        self.max_line_bytes = int(max_line_bytes)
        self.require_labels = bool(require_labels)
        self.lines_read = 0
        self.rows_parsed = 0
        self._reader = reader_class(fmt)(
            self.hasher, self.require_labels, self.max_line_bytes, features, max_names
        )
        self._buf = bytearray()
        self._skipping = False  # dropping the rest of a too-long line
        self._finished = False
        self._nnz_per_row = 40.0  # running estimates, to size the arrays of the next batch
        self._nnz_per_byte = 0.25

    @property
    def buffered_bytes(self) -> int:
        """Bytes held between calls (the unterminated last line, or lines after a bad one)."""
        return len(self._buf)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Batch]:
        """Parse the complete lines of what was fed so far; keep the unterminated last line."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if isinstance(chunk, str):
            raise TypeError("feed() takes bytes, not str")
        view = memoryview(chunk).cast("B")
        if self._skipping:
            newline = bytes(view).find(b"\n") if len(view) else -1
            if newline < 0:
                return []
            view = view[newline + 1 :]
            self._skipping = False
        self._buf += view
        stop = self._buf.rfind(b"\n") + 1
        batches = self._run(stop, [])
        if len(self._buf) > self.max_line_bytes:
            self.lines_read += 1
            size = len(self._buf)
            self._buf.clear()
            self._skipping = True
            raise ParseError(
                f"line of more than {size} bytes is longer than "
                f"max_line_bytes={self.max_line_bytes}",
                line=self.lines_read,
                field="line",
                row=self.rows_parsed,
                valid_before=batches,
            )
        return batches

    def finish(self) -> list[Batch]:
        """Parse what remains (an unterminated last line); the parser is closed after."""
        if self._finished:
            return []
        if self._skipping:
            self._buf.clear()
            self._skipping = False
        if self._buf and self._buf[-1] != 10:
            self._buf += b"\n"  # the kernels rely on every line ending with '\n'
        batches = self._run(len(self._buf), [])
        self._finished = True
        return batches

    # -- internals --------------------------------------------------------------------------

    def _run(self, stop: int, batches: list[Batch]) -> list[Batch]:
        """Parse ``self._buf[:stop]`` (whole lines) and drop it from the buffer."""
        pos = 0
        error: ParseError | None = None
        arr = np.frombuffer(self._buf, dtype=np.uint8)
        try:
            while pos < stop:
                max_rows = min(self.max_rows_per_batch, (stop - pos) // 2 + 1)
                batch, pos, lines, failure = self._step(arr, pos, stop, max_rows)
                if batch is not None:
                    batches.append(batch)
                    self.rows_parsed += batch.n_rows
                self.lines_read += lines
                if failure is not None:
                    field, reason = failure
                    error = ParseError(
                        reason,
                        line=self.lines_read,
                        field=field,
                        row=self.rows_parsed,
                        valid_before=batches,
                    )
                    break
        finally:
            del arr
            del self._buf[:pos]
        if error is not None:
            raise error
        return batches

    def _step(
        self, arr: np.ndarray, pos: int, stop: int, max_rows: int
    ) -> tuple[Batch | None, int, int, tuple[str | None, str] | None]:
        """One batch of at most ``max_rows`` rows from ``pos``: (batch, where the next line
        starts, lines read, (field, reason) of a bad line that ended it)."""
        state = np.zeros(1, dtype=STATE)
        state[0]["pos"] = pos
        out = self._allocate(pos, stop, max_rows)
        while True:
            self._reader.read(arr, stop, out, state)
            status = state[0]["status"]
            if status == FULL_INDICES:
                out = out._replace(indices=_doubled(out.indices), values=_doubled(out.values))
            elif status == FULL_FIXES:
                out = out._replace(fixes=_doubled(out.fixes), fix_scale=_doubled(out.fix_scale))
            elif status == FULL_NAMES:
                self._reader.name_set = grow_names(self._reader.name_set)
            else:
                break
            state[0]["status"] = DONE
        batch = self._batch(arr, out, state, pos)
        failure = None
        if state[0]["status"] > 0:
            failure = self._reader.describe(arr, state)
        return batch, int(state[0]["pos"]), int(state[0]["lines"]), failure

    def _allocate(self, pos: int, stop: int, max_rows: int) -> Rows:
        indptr = np.empty(max_rows + 1, dtype=np.int64)
        indptr[0] = 0
        expected = min(max_rows * self._nnz_per_row, (stop - pos) * self._nnz_per_byte)
        cap = int(expected * 1.2) + 64
        return Rows(
            indptr,
            np.empty(cap, dtype=np.int64),
            np.empty(cap, dtype=np.float64),
            np.empty(max_rows, dtype=np.float64),
            np.empty(max_rows, dtype=np.float64),
            np.empty((16, 4), dtype=np.int64),
            np.empty(16, dtype=np.float64),
        )

    def _batch(self, arr: np.ndarray, out: Rows, state: np.ndarray, pos: int) -> Batch | None:
        """The batch of the rows a kernel wrote: approximate values re-read, named features
        hashed, rows canonicalized, arrays trimmed."""
        s = state[0]
        rows, nnz = int(s["rows"]), int(s["nnz"])
        names = self._reader.names(arr, out.indices)
        if not rows:
            return None
        self._nnz_per_row = max(1.0, nnz / rows)
        self._nnz_per_byte = max(0.01, nnz / max(1, int(s["pos"]) - pos))
        indptr, labels, weights = out.indptr[: rows + 1], out.labels[:rows], out.weights[:rows]
        if nnz < 0.75 * out.indices.shape[0]:  # else keep the arrays: at most a quarter unused
            indices, values = out.indices[:nnz].copy(), out.values[:nnz].copy()
        else:
            indices, values = out.indices[:nnz], out.values[:nnz]
        for k, (entry, start, end, line) in enumerate(out.fixes[: s["fixups"]].tolist()):
            # the exact re-read of a rare approximate value: a value's, or (entry < 0) a weight's
            exact = float(arr[start:end].tobytes()) * float(out.fix_scale[k])
            if entry < 0:
                weights[-1 - entry] = exact
                continue
            values[entry] = exact
            if not math.isfinite(exact):  # overflowed after all: the batch ends before its row
                rows = int(np.searchsorted(indptr, entry, side="right")) - 1
                indptr = indptr[: rows + 1]
                nnz = int(indptr[-1])
                indices, values = indices[:nnz], values[:nnz]
                labels, weights = labels[:rows], weights[:rows]
                s["labeled"] = np.count_nonzero(~np.isnan(labels))
                s["lines"] = line
                s["pos"] = self._buf.index(b"\n", end) + 1
                s["status"] = E_VALUE_RANGE
                s["token_start"], s["token_stop"] = start, end
                break
        if s["canon"]:
            nnz = canon_all(indptr, indices, values)
            indices, values = indices[:nnz], values[:nnz]
        if not rows:
            return None
        return Batch(
            indptr,
            indices,
            values,
            labels if s["labeled"] == rows else None,
            weights if s["weighted"] else None,
            self.dim,
            names,  # the model remembers them for inspection by name
        )


def _doubled(array: np.ndarray) -> np.ndarray:
    return np.concatenate([array, np.empty_like(array)])


def concat_batches(batches: list[Batch], dim: int) -> Batch:
    """One batch of the rows of ``batches`` in order (labels/weights kept only if all have them)."""
    if not batches:
        return Batch(
            np.zeros(1, dtype=np.int64),
            np.empty(0, dtype=np.int64),
            np.empty(0, dtype=np.float64),
            None,
            None,
            dim,
        )
    if len(batches) == 1:
        return batches[0]
    offsets = np.cumsum([0] + [b.nnz for b in batches[:-1]])
    indptr = np.concatenate(
        [np.zeros(1, dtype=np.int64)]
        + [b.indptr[1:] + o for b, o in zip(batches, offsets, strict=True)]
    )
    labels = None
    if all(b.labels is not None for b in batches):
        labels = np.concatenate([b.labels for b in batches])  # type: ignore[misc]
    weights = None
    if any(b.weights is not None for b in batches):
        weights = np.concatenate(
            [b.weights if b.weights is not None else np.ones(b.n_rows) for b in batches]
        )
    names: dict[str, int] = {}
    for b in batches:
        for name, index in (b.feature_names or {}).items():
            names.setdefault(name, index)
    return Batch(
        indptr,
        np.concatenate([b.indices for b in batches]),
        np.concatenate([b.values for b in batches]),
        labels,
        weights,
        dim,
        names or None,
    )


def parse_bytes(
    data: bytes | bytearray | memoryview,
    fmt: str,
    *,
    dim: int,
    hash_seed: int = 0,
    require_labels: bool = True,
    features: FeatureOptions | None = None,
) -> Batch:
    """Parse a whole buffer into one batch (raises :class:`ParseError` on the first bad line)."""
    size = len(memoryview(data).cast("B"))
    parser = StreamParser(
        fmt,
        dim=dim,
        hash_seed=hash_seed,
        max_rows_per_batch=1 << 16,
        max_line_bytes=max(1, size),
        require_labels=require_labels,
        features=features,
    )
    batches: list[Batch] = []
    try:
        batches += parser.feed(data)
        batches += parser.finish()
    except ParseError as exc:
        exc.valid_before = batches + exc.valid_before
        raise
    return concat_batches(batches, parser.dim)


def iter_file_batches(
    source: str | os.PathLike[str] | IO[bytes],
    fmt: str,
    *,
    dim: int,
    hash_seed: int = 0,
    chunk_bytes: int = 1 << 20,
    max_rows_per_batch: int = 10_000,
    max_line_bytes: int = 1 << 20,
    require_labels: bool = True,
    features: FeatureOptions | None = None,
) -> Iterator[Batch]:
    """Batches of a file (a path, ``.gz`` and ``.zst`` decompressed, or a binary file object),
    read in chunks.

    On a bad line the batches of the valid rows before it are yielded, then the
    :class:`ParseError` is raised (with an empty ``valid_before``).
    """
    parser = StreamParser(
        fmt,
        dim=dim,
        hash_seed=hash_seed,
        max_rows_per_batch=max_rows_per_batch,
        max_line_bytes=max_line_bytes,
        require_labels=require_labels,
        features=features,
    )
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        encoding = next((e for s, e in COMPRESSED_SUFFIXES.items() if path.endswith(s)), None)
        with open(path, "rb") as handle:
            reader = handle if encoding is None else DecompressedReader(handle, encoding)
            yield from _iter_handle(parser, reader, chunk_bytes)
    else:
        yield from _iter_handle(parser, source, chunk_bytes)


def _iter_handle(parser: StreamParser, handle: IO[Any], chunk_bytes: int) -> Iterator[Batch]:
    while True:
        chunk = handle.read(chunk_bytes)
        if isinstance(chunk, str):
            chunk = chunk.encode()
        try:
            batches = parser.finish() if not chunk else parser.feed(chunk)
        except ParseError as exc:
            valid, exc.valid_before = exc.valid_before, []
            yield from valid
            raise
        yield from batches
        if not chunk:
            return
