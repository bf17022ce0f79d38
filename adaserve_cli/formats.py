"""The input formats by name, their HTTP media types: one place,
importing nothing heavy (no numba, no NumPy), for the command line (``adaserve --help`` is
instant), the service's routes and the Python client.

The parsers themselves are :mod:`optim.formats`, whose ``FORMATS`` is the same tuple (a test
checks they agree).
"""

from __future__ import annotations

FORMATS: tuple[str, ...] = ("libsvm", "vw", "criteo", "ndjson")
"""Text formats, each a parser of :mod:`optim.formats`."""

MEDIA_TYPES: dict[str, str] = {
    "libsvm": "text/x-libsvm",
    "vw": "text/x-vw",
    "criteo": "text/x-criteo",
    "ndjson": "application/x-ndjson",
}
"""The ``Content-Type`` of each format's body on ``/stream``."""

FORMAT_OF_MEDIA_TYPE: dict[str, str] = {media: fmt for fmt, media in MEDIA_TYPES.items()}

__all__ = ["FORMATS", "FORMAT_OF_MEDIA_TYPE", "MEDIA_TYPES"]
