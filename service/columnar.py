"""Arrow IPC stream bodies (``application/vnd.apache.arrow.stream``) on ``/updates``,
``/predict`` and ``/stream``: :mod:`optim.formats.arrow` reads them (through pyarrow, an optional
extra: without it such a body is refused with 415 saying how to install it)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from optim import Batch, OnlineLogisticRegression
from optim.formats import arrow
from service.batches import check_limits
from service.errors import ApiError
from service.settings import Settings

ARROW_STREAM = arrow.MEDIA_TYPE
# What the OpenAPI document declares for an Arrow body (MediaTypeRoute accepts what it declares).
ARROW_BODY = {ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}}


def require_pyarrow() -> None:
    """415 when pyarrow is not installed."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ApiError(
            415, "unsupported_media_type",
            f"{ARROW_STREAM} bodies need pyarrow on the server: pip install 'adaserve[arrow]'",
        ) from None  # fmt: skip


def batch_from_arrow(
    data: bytes, model: OnlineLogisticRegression, settings: Settings, *, require_labels: bool
) -> Batch:
    """A validated batch of every row of an Arrow IPC stream body, within the limits (its one
    record batch read in place: the batch's arrays are views of ``data``)."""
    require_pyarrow()
    batch = arrow.batch_of_ipc(data, model.hasher, require_labels=require_labels)
    check_limits(batch, settings)
    return batch


def stream_parser(
    model: OnlineLogisticRegression, settings: Settings
) -> Callable[[], arrow.ArrowStreamParser]:
    """New parsers of an Arrow IPC stream for ``/stream`` (record batches cut to
    ``stream_batch_rows`` rows; a message of more than ``max_body_bytes`` is refused)."""
    require_pyarrow()
    return functools.partial(
        arrow.ArrowStreamParser, dim=model.dim, hash_seed=model.hasher.seed,
        max_rows_per_batch=settings.stream_batch_rows, max_message_bytes=settings.max_body_bytes,
    )  # fmt: skip
