"""``POST /v1/models/{name}/stream``: learn a streamed text body while it arrives.

The body is parsed chunk by chunk by :class:`optim.parsers.StreamParser` (bounded memory: one
chunk plus one line) and learned in batches of ``stream_batch_rows`` rows; each batch takes the
model's writer lock like an update, so concurrent updates may land between two batches of a
stream. The response is NDJSON: a progress line every ``stream_progress_rows`` rows, the
pre-update probabilities of every batch when ``?return_predictions=true``, and a final summary.

Unit of atomicity: the line. A malformed line stops the stream; every valid row before it is
learned, and the final line says so: ``{"done": true, "rows": <learned>, "error": {"line": n,
"field": ..., "detail": ...}}``. The status is 200 then (the response has begun); read ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from optim import AdaserveError, Batch
from optim.parsers import ParseError, StreamParser
from service import dependencies as deps
from service.auth import WRITE
from service.errors import ApiError
from service.metrics import ServiceMetrics
from service.registry import ManagedModel
from service.schemas import ERROR_RESPONSES
from service.settings import Settings

router = APIRouter(prefix="/v1/models/{name}", tags=["learning"], responses=ERROR_RESPONSES)

FORMATS = {
    "application/x-ndjson": "ndjson",
    "text/x-libsvm": "libsvm",
    "text/x-vw": "vw",
    "text/x-criteo": "criteo",
}


class BodyStreamingResponse(StreamingResponse):
    """Streams while the request body is still being read by the endpoint's generator.

    Starlette's own response would also listen on ``receive`` for a disconnect, racing the
    generator for the body's chunks; a disconnect shows up as ``ClientDisconnect`` there instead.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stream_response(send)


def _line(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload) + b"\n"


STREAM_BODY: dict[str, Any] = {
    "responses": {
        200: {"content": {"application/x-ndjson": {}}, "description": "progress lines, summary"},
        415: {"description": "unsupported Content-Type"},
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {ct: {"schema": {"type": "string"}} for ct in FORMATS},
        }
    },
}


@router.post(
    "/stream",
    dependencies=[WRITE],
    summary="Learn a streamed body (NDJSON, libsvm, VW or Criteo text) while it arrives",
    response_class=BodyStreamingResponse,
    **STREAM_BODY,
)
async def stream(
    request: Request,
    managed: Annotated[ManagedModel, Depends(deps.model)],
    settings: Annotated[Settings, Depends(deps.settings)],
    metrics: Annotated[ServiceMetrics, Depends(deps.metrics)],
    return_predictions: Annotated[
        bool, Query(description="each row's pre-update probability")
    ] = False,
) -> BodyStreamingResponse:
    return learning_stream(request, [managed], settings, metrics, return_predictions)


def learning_stream(
    request: Request,
    targets: list[ManagedModel],
    settings: Settings,
    metrics: ServiceMetrics,
    return_predictions: bool = False,
    order: asyncio.Lock | None = None,
) -> BodyStreamingResponse:
    """Parse the body once and learn every batch into each target, in order.

    With one target the progress lines carry its ``step`` and ``log_loss``; with several (an
    experiment) a ``members`` object maps each to them. ``order`` (an experiment's lock) keeps
    concurrent writers from interleaving differently in different members.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in FORMATS:
        raise ApiError(
            415, "unsupported_media_type",
            f"Content-Type must be one of {sorted(FORMATS)}, got {content_type or 'none'!r}",
            {"field": "Content-Type"},
        )  # fmt: skip
    first = targets[0].model
    parser = StreamParser(
        FORMATS[content_type], dim=first.dim, hash_seed=first.hasher.seed,
        max_rows_per_batch=settings.stream_batch_rows,
        max_line_bytes=settings.max_stream_line_bytes,
    )  # fmt: skip
    rows = 0
    losses = {t.name: [0.0, 0.0] for t in targets}  # weighted loss sum, weight sum

    async def learn(batches: list[Batch]) -> AsyncIterator[bytes]:
        nonlocal rows
        for batch in batches:
            weight = float(batch.weights.sum()) if batch.weights is not None else batch.n_rows
            async with order or contextlib.nullcontext():
                results = [await target.learn(batch, metrics.learned) for target in targets]
            for target, result in zip(targets, results, strict=True):
                losses[target.name][0] += result.log_loss * weight if weight else 0.0
                losses[target.name][1] += weight
            before = rows // settings.stream_progress_rows
            rows += batch.n_rows
            if return_predictions:
                probabilities = {
                    t.name: r.probabilities.tolist() for t, r in zip(targets, results, strict=True)
                }
                single = len(targets) == 1
                yield _line({"probabilities": results[0].probabilities.tolist()} if single
                            else {"probabilities": probabilities})  # fmt: skip
            if rows // settings.stream_progress_rows > before:
                yield _line(progress())

    def progress() -> dict[str, Any]:
        members = {
            t.name: {"step": t.model.step, "log_loss": loss / weight if weight else None}
            for t in targets
            for loss, weight in [losses[t.name]]
        }
        if len(targets) == 1:
            return {"rows": rows, **members[targets[0].name]}
        return {"rows": rows, "members": members}

    async def parse(*chunk: bytes) -> tuple[list[Batch], ParseError | None]:
        """Batches of the complete lines so far (all of them with no chunk), off the event loop."""
        try:
            work = parser.feed if chunk else parser.finish
            return await anyio.to_thread.run_sync(work, *chunk), None
        except ParseError as exc:
            return exc.valid_before, exc

    async def body() -> AsyncIterator[bytes]:
        error: AdaserveError | None = None
        try:
            async for chunk in request.stream():
                batches, error = await parse(chunk)
                async for line in learn(batches):
                    yield line
                if error is not None:
                    break
            else:
                batches, error = await parse()
                async for line in learn(batches):
                    yield line
        except ClientDisconnect:
            return
        except AdaserveError as exc:  # a parsed batch a model refused (a float32 step limit)
            error = exc
        except ApiError as exc:  # the log could not be written (503): stop here
            error = AdaserveError(exc.detail)
        summary = {"done": True, **progress(), "error": None}
        if error is not None:
            summary["error"] = {**error.where, "detail": str(error)}
        yield _line(summary)

    return BodyStreamingResponse(body(), media_type="application/x-ndjson")
