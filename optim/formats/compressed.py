"""Compressed input, undone piece by piece: gzip (``zlib``) and zstd (the ``zstandard``
package, optional: the ``zstd`` extra).

:class:`Decompressor` takes the compressed bytes in pieces of any size and gives back the
decompressed bytes in pieces of at most about :data:`PIECE_BYTES`, refusing more than ``limit``
of them in all (:class:`TooLarge`: a "bomb", 1 MB of gzip that inflates to 1 GiB, costs at most
the bound and one piece). Concatenated gzip members (zstd frames) form one stream, as
``cat a.gz b.gz`` does. A stream that stops inside a member is :class:`Truncated`, one that is
not of its encoding :class:`NotDecodable`. :class:`DecompressedReader` is the same as a binary
file object (``adaserve train`` reads ``.gz`` and ``.zst`` files through it).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from typing import IO, Any

try:
    import zstandard
except ImportError:  # pragma: no cover - depends on the installation
    zstandard = None

PIECE_BYTES = 1 << 20
# zstd's decompressor has no bound on what one call makes, but a zstd block makes at most
# 128 KiB from 4 bytes: input given in slices of this size makes at most about a piece.
ZSTD_SLICE = PIECE_BYTES >> 15
ENCODINGS: tuple[str, ...] = ("gzip",) + (("zstd",) if zstandard is not None else ())
# File name endings decompressed by the readers of files (``adaserve train``).
COMPRESSED_SUFFIXES = {".gz": "gzip", ".zst": "zstd"}
_ZSTD_ERRORS: tuple[type[Exception], ...] = (zstandard.ZstdError,) if zstandard else ()


class CompressedInputError(ValueError):
    """Compressed input that cannot be (fully) decompressed."""


class Truncated(CompressedInputError):
    """The input stops in the middle of a gzip member (zstd frame): what came before is whole."""


class TooLarge(CompressedInputError):
    """The input decompresses to more than its bound."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class NotDecodable(CompressedInputError):
    """The input is not a stream of its encoding."""


def require(encoding: str) -> None:
    """Raise :class:`CompressedInputError` unless ``encoding`` can be read here."""
    if encoding == "zstd" and zstandard is None:
        raise CompressedInputError("zstd input needs the zstandard package (adaserve[zstd])")
    if encoding not in ENCODINGS and encoding != "zstd":
        raise CompressedInputError(f"unknown encoding {encoding!r}; known: gzip, zstd")


class Decompressor:
    """Undoes ``encoding`` (``gzip`` or ``zstd``) a piece at a time, at most ``limit`` bytes out."""

    def __init__(self, encoding: str, limit: float = math.inf) -> None:
        require(encoding)
        self.encoding = encoding
        self.limit = limit
        self.produced = 0  # decompressed bytes so far
        self._member: Any = None
        self._in_member = False  # input received since the last member ended

    def _new_member(self) -> Any:
        if self.encoding == "gzip":
            return zlib.decompressobj(wbits=31)
        return zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decompressed bytes of ``data`` (the next piece of the input), in pieces."""
        ready: list[bytes] = []  # zstd's small outputs, joined into pieces
        size = 0
        more = bool(data)  # a full piece may leave output inside zlib with no input left
        while more:
            if self._member is None or self._member.eof:
                self._member = self._new_member()
            self._in_member = True
            try:
                if self.encoding == "gzip":
                    out = self._member.decompress(data, PIECE_BYTES)
                    rest = self._member.unconsumed_tail
                else:
                    out = self._member.decompress(data[:ZSTD_SLICE])
                    rest = data[ZSTD_SLICE:]
            except (zlib.error, *_ZSTD_ERRORS) as error:
                raise NotDecodable(f"not a valid {self.encoding} stream: {error}") from None
            if self._member.eof:
                self._in_member = False
                rest = self._member.unused_data + rest
            data = rest
            more = bool(data) or (len(out) == PIECE_BYTES and not self._member.eof)
            if out:
                self.produced += len(out)
                if self.produced > self.limit:
                    raise TooLarge(
                        f"more than {self.limit:,} bytes once decompressed", int(self.limit)
                    )
                ready.append(out)
                size += len(out)
                if size >= PIECE_BYTES:
                    yield b"".join(ready)
                    ready, size = [], 0
        if ready:
            yield b"".join(ready)

    def end(self) -> None:
        """The input is over: :class:`Truncated` if it stops inside a member (frame)."""
        if self._in_member:
            raise Truncated(f"the {self.encoding} stream ends in the middle (cut short)")


class DecompressedReader:
    """A binary file object reading ``raw`` decompressed (``read`` and ``name``). It holds at
    most about two pieces of decompressed bytes, whatever the ratio (a piece is made when read)."""

    def __init__(self, raw: IO[bytes], encoding: str, chunk_bytes: int = 1 << 18) -> None:
        self._raw = raw
        self._decompressor = Decompressor(encoding)
        self._chunk_bytes = chunk_bytes
        self._pieces: Iterator[bytes] = iter(())  # of the compressed chunk read last
        self._piece = b""  # what is left of the current piece
        self._done = False
        self.name = getattr(raw, "name", "")

    def read(self, size: int = -1) -> bytes:
        """At least one byte until the end (b''), at most ``size`` (-1: all that is left)."""
        if size < 0:
            parts = []
            while part := self.read(PIECE_BYTES):
                parts.append(part)
            return b"".join(parts)
        while not self._piece:
            piece = next(self._pieces, None)
            if piece is not None:
                self._piece = piece
            elif self._done:
                return b""
            elif compressed := self._raw.read(self._chunk_bytes):
                self._pieces = self._decompressor.feed(compressed)
            else:
                self._decompressor.end()
                self._done = True
        out, self._piece = self._piece[:size], self._piece[size:]
        return out
