"""Compressed request bodies: ``Content-Encoding: gzip`` (and ``zstd`` with the ``zstandard``
package), undone piece by piece as the body arrives (:mod:`optim.formats.compressed`).

A small compressed body can hold a huge one (a "bomb": 1 MB of gzip inflates to 1 GiB), so the
decompressed bytes of one request are bounded by ``max_body_bytes`` (``ADASERVE_MAX_BODY_BYTES``),
the bound on a plain body: past it the request is refused (413, the limit named), having inflated
at most one more piece. An encoding other than these (or a list of several) is refused before
the body is read (415); a body that is not a valid stream of its encoding is 400
``invalid_encoding``, and one that ends in the middle of its stream 400 ``truncated_body``.
"""

from __future__ import annotations

from collections.abc import Iterator

from starlette.datastructures import Headers

from optim.formats.compressed import (
    ENCODINGS,
    Decompressor,
    NotDecodable,
    TooLarge,
    Truncated,
)
from service.errors import ApiError

IDENTITY = "identity"
_WHERE = {"field": "Content-Encoding"}


def content_encoding(headers: Headers) -> str:
    """The body's encoding, lower-cased (``identity`` when none); 415 for one not supported."""
    given = headers.get("content-encoding", "").strip().lower() or IDENTITY
    if given != IDENTITY and given not in ENCODINGS:
        hint = " (the server lacks the zstandard package)" if given == "zstd" else ""
        raise ApiError(
            415, "unsupported_encoding",
            f"Content-Encoding must be {' or '.join(ENCODINGS)} or none, got {given!r}{hint}",
            dict(_WHERE),
        )  # fmt: skip
    return given


class Decoder:
    """Undoes one request body's ``encoding`` a piece at a time, at most ``limit`` bytes out;
    failures are :class:`ApiError`. ``identity`` passes the pieces through unbounded: a plain
    body's limit, if any, is its route's."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        self.limit = limit
        self._decompressor = None if encoding == IDENTITY else Decompressor(encoding, limit)

    @property
    def compressed(self) -> bool:
        return self._decompressor is not None

    @property
    def produced(self) -> int:
        """Decompressed bytes so far."""
        return 0 if self._decompressor is None else self._decompressor.produced

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decompressed bytes of ``data`` (the next piece of the body), in pieces."""
        if self._decompressor is None:
            if data:
                yield data
            return
        try:
            yield from self._decompressor.feed(data)
        except TooLarge:
            raise ApiError(
                413, "payload_too_large",
                f"the body is over {self.limit:,} bytes once decompressed (max_body_bytes; the "
                "server's ADASERVE_MAX_BODY_BYTES)", dict(_WHERE),
            ) from None  # fmt: skip
        except NotDecodable as error:
            raise ApiError(400, "invalid_encoding", f"the body is {error}", dict(_WHERE)) from None

    def end(self) -> None:
        """The body is over: 400 ``truncated_body`` if it ends inside its compressed stream."""
        if self._decompressor is None:
            return
        try:
            self._decompressor.end()
        except Truncated:
            raise ApiError(
                400, "truncated_body",
                f"the {self.encoding} stream of the body ends in the middle (it was cut short)",
                dict(_WHERE),
            ) from None  # fmt: skip
