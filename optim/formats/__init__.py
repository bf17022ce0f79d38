"""Input formats: a byte stream of text rows in, validated ``Batch`` objects out.

A :class:`StreamParser` turns a stream fed chunk by chunk (split anywhere: inside a number, between
``\\r`` and ``\\n``) into :class:`optim.batch.Batch` objects of at most ``max_rows_per_batch``
rows. ``feed`` parses the complete lines it has and keeps only the unterminated last one (parsed
rows are not held back, so a batch may be smaller); ``finish`` parses that last line. A line may
not exceed ``max_line_bytes``, so a parser holds at most one chunk plus one line whatever the
stream's size. :func:`parse_bytes` parses a whole buffer into one batch, :func:`iter_file_batches`
streams a file (``.gz``, ``.zst`` decompressed) or a binary file object, and :func:`concat_batches`
joins batches. Each format is a numba kernel over the raw bytes, hashing included, compiled
``nogil`` (a server may run it in a worker thread), with its table of errors, in a module of its
own: :mod:`~optim.formats.libsvm`, :mod:`~optim.formats.vw`, :mod:`~optim.formats.criteo` and
:mod:`~optim.formats.ndjson` (whose compiled reader leaves any line it does not handle to
``orjson``), all built on the shared readers of :mod:`~optim.formats._scan` and driven by one
:class:`StreamParser` (:mod:`~optim.formats.stream`). A JSON CSR request body has its own compiled
reader, :mod:`~optim.formats.json_csr`.

Lines end with ``\\n`` or ``\\r\\n``. In every format a blank line and a line starting with
``#`` are skipped but counted in line numbers. Labels may be ``-1``/``+1`` or ``0``/``1`` (or any
number equal to those: ``1.0``, ``-1e0``) and are stored 0/1. They are required unless
``require_labels=False``: a batch then has ``labels`` only when every one of its rows had one. A
batch has ``weights`` only when one of its rows gave one (the others weigh 1). Rows come out as
``Batch.from_arrays`` makes them: indices sorted, duplicates summed (in the order of the line),
explicit zeros kept. Numbers are read exactly as Python's ``float`` reads them (exponents too; no
``inf``, ``nan`` or ``_``) and must be finite.

Formats
-------
``libsvm`` (svmlight) ``label idx:val idx:val ... [# comment]``, ``vw`` (Vowpal Wabbit text)
``label [importance] [tag]|ns feat[:value] ...``, ``criteo`` (the Criteo Display Advertising
Challenge's TSV) and ``ndjson`` (a JSON object a line, named features or indices): each module's
docstring gives its rules.

Errors and atomicity
--------------------
A malformed line raises :class:`ParseError` (a :class:`optim.errors.BatchError`) with ``line``
(1-based, in the whole stream), ``row`` (the index its row would have had in the stream),
``field`` and a reason; the message reads ``line 12, field 'index': 99 is outside [0, 64)``.
Fields: ``label``, ``importance``, ``header``, ``features``, ``feature``, ``index``, ``value``,
``namespace``, ``fields``, ``I1``..``I13``, ``line`` (too long) and, for ndjson, ``json``,
``features``, ``features.<name>``, ``indices``, ``values``, ``weight`` or the unknown key.

The unit of atomicity is the line. The call that meets a bad line raises, and the exception's
``valid_before`` holds the batches of every valid row before the bad line in that call (they are
complete, validated and counted in ``rows_parsed``: the caller may learn them before reporting
the error). No row of a bad line is ever returned. The parser stays usable: the bad line is
consumed, the lines after it are kept, and the next ``feed`` (``feed(b"")`` to add nothing) or
``finish`` resumes right after it, so a caller may stop at the first error or skip bad lines. An
unterminated line is refused as soon as it grows past ``max_line_bytes``, and the rest of it is
dropped as it arrives. :func:`parse_bytes` puts every row before the bad line in ``valid_before``;
:func:`iter_file_batches` yields them, then raises.
"""

from __future__ import annotations

from optim.formats.stream import (
    READERS,
    ParseError,
    StreamParser,
    concat_batches,
    iter_file_batches,
    parse_bytes,
)

FORMATS = tuple(READERS)

__all__ = [
    "FORMATS",
    "ParseError",
    "StreamParser",
    "concat_batches",
    "iter_file_batches",
    "parse_bytes",
]
