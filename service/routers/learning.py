"""Learn batches and predict."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Awaitable
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response

from optim import Batch, LearnResult
from optim.formats.json_csr import scores_of_json
from optim.metrics import probabilities
from service import dependencies as deps
from service.batches import SMALL_BODY_BYTES, batch_from_body, read_body
from service.columnar import ARROW_BODY, ARROW_STREAM, batch_from_arrow
from service.errors import ApiError
from service.metrics import ServiceMetrics
from service.registry import ManagedModel
from service.routers.feedback import predict_with_ids
from service.schemas import (
    ERROR_RESPONSES,
    CsrBatch,
    CsrPrediction,
    ErrorBody,
    NamedPrediction,
    NamedRows,
    Predictions,
    UpdateResult,
    json_response,
)
from service.settings import Settings
from service.storage import RecordBody, record_body
from service.warmup import JSON_READER, Warmup
from service.websafety import MediaTypeRoute, media_type

router = APIRouter(
    prefix="/v1/models/{name}",
    tags=["learning"],
    responses=ERROR_RESPONSES,
    route_class=MediaTypeRoute,
)
# Bodies up to this size are parsed on the event loop: ~0.1 ms as CSR, a few ms as named rows.
INLINE_BODY_BYTES = 1 << 16
# Where larger bodies are parsed (the compiled reader releases the GIL): a thread per core but
# the event loop's, so concurrent requests queue for them instead of all parsing at once, each
# slower. On 2 cores one thread: with two, 1,000-row batches were learned ~8% slower (threads
# of the server waited for a core about as long as they ran; measured per thread in
# /proc/<pid>/task/<tid>/schedstat).
_PARSERS = concurrent.futures.ThreadPoolExecutor(
    max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="adaserve-parse"
)


def _body_schema(*models: type) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [{"$ref": f"#/components/schemas/{m.__name__}"} for m in models]
                    }
                },
                # CSR columns (indices, values, label, weight) or one column per named feature
                **ARROW_BODY,
            },
        }
    }


# The ``name`` path parameter, as FastAPI documents a declared ``name: str`` (see predict).
_NAME_PARAMETER: dict[str, Any] = {
    "parameters": [
        {"name": "name", "in": "path", "required": True,
         "schema": {"type": "string", "title": "Name"}},
    ]
}  # fmt: skip


def _is_arrow(request: Request) -> bool:
    return media_type(request.headers.get("content-type")) == ARROW_STREAM


def _parse_inline(data: bytes, warmup: Warmup, arrow: bool) -> bool:
    """Whether to parse ``data`` on the event loop: when it is small, and when the compiled JSON
    reader it may use is warm (on a fresh install, compiling it takes 20-40 s: in a parser
    thread that is the request's wait, on the event loop every request's)."""
    return len(data) <= INLINE_BODY_BYTES and (
        arrow or len(data) < SMALL_BODY_BYTES or warmup.is_warm(JSON_READER)
    )


async def _batch_of(
    data: bytes,
    managed: ManagedModel,
    settings: Settings,
    warmup: Warmup,
    *,
    require_labels: bool,
    arrow: bool = False,
) -> Batch:
    """The body (JSON, or an Arrow IPC stream when ``arrow``) as a validated batch: a small one
    on the event loop (compiled: well under a millisecond, where a thread hop costs 0.1-0.2
    ms), a large one in a parser thread."""
    read = batch_from_arrow if arrow else batch_from_body
    if _parse_inline(data, warmup, arrow):
        return read(data, managed.model, settings, require_labels=require_labels)
    return await asyncio.get_running_loop().run_in_executor(
        _PARSERS, lambda: read(data, managed.model, settings, require_labels=require_labels)
    )


def _learn(
    data: bytes,
    managed: ManagedModel,
    settings: Settings,
    metrics: ServiceMetrics,
    warmup: Warmup,
    arrow: bool = False,
) -> Awaitable[LearnResult]:
    """Learn the body (JSON, or an Arrow IPC stream when ``arrow``): a small one parsed on the
    event loop, a large one in a parser thread, which also makes its log record's body (rather
    than the model's log writer, which writes one group at a time: there, its ~0.3 ms a
    1,000-row batch held up every batch behind it) and hands both to the model's writer."""
    read = batch_from_arrow if arrow else batch_from_body
    if _parse_inline(data, warmup, arrow):
        batch = read(data, managed.model, settings, require_labels=True)
        return managed.learn(batch, metrics.learned)

    def parse() -> tuple[Batch, RecordBody]:
        batch = read(data, managed.model, settings, require_labels=True)
        return batch, record_body(batch)

    return managed.learn_parsed(parse, _PARSERS, metrics.learned)


# The per-row routes below keep FastAPI dependencies to at most one (each costs ~15 µs a
# request): the token and the model in one, the settings and metrics read from the app state.


@router.post(
    "/updates",
    response_model=UpdateResult,
    summary="Learn a batch (CSR or named rows): all rows or none, in order",
    openapi_extra=_body_schema(CsrBatch, NamedRows),
)
async def update(
    request: Request,
    managed: Annotated[ManagedModel, Depends(deps.model_to_write)],  # the write role, then 404
    return_predictions: Annotated[
        bool, Query(description="include pre-update probabilities")
    ] = False,
) -> Response:
    settings: Settings = request.app.state.settings
    metrics: ServiceMetrics = request.app.state.metrics
    data = await read_body(request, settings.max_body_bytes)
    result = await _learn(
        data, managed, settings, metrics, request.app.state.warmup, _is_arrow(request)
    )
    return json_response(  # UpdateResult's fields, encoded by orjson (see json_response)
        {
            "rows": result.rows,
            "step": result.step,
            "log_loss": result.log_loss if result.learned_rows else None,
            "holdout_rows": result.holdout_rows,
            "holdout_log_loss": result.holdout_log_loss if result.holdout_rows else None,
            "probabilities": result.probabilities if return_predictions else None,
        }
    )


@router.post(
    "/predict",
    response_model=Predictions,
    summary="Probabilities and margins (labels not needed); with ids (a model with feedback), "
    "the rows wait for their labels",
    openapi_extra=_NAME_PARAMETER | _body_schema(CsrPrediction, NamedPrediction),
    responses={
        409: {"model": ErrorBody, "description": "with ids: an id pending already"},
        429: {"model": ErrorBody, "description": "with ids: the pending rows' memory is full"},
    },
)
async def predict(request: Request) -> Response:
    # The hot route: no FastAPI parameter at all. A declared ``name: str`` would cost ~10 µs a
    # request to validate (a path segment is always a str), so it is read from the matched path
    # and documented in openapi_extra. Then the read role and the model, as dependencies=[READ]
    # and Depends(deps.model) would check them, in that order.
    managed = deps.authorized_model(request, request.path_params["name"], "read")
    settings: Settings = request.app.state.settings
    warmup: Warmup = request.app.state.warmup
    data = await read_body(request, settings.max_body_bytes)
    if b'"ids"' in data:  # perhaps rows to keep pending (a feature may be named so too)
        remembered = await predict_with_ids(request, request.path_params["name"], data)
        if remembered is not None:
            return remembered
    scores = None
    arrow = _is_arrow(request)
    if (
        not arrow
        and len(data) < SMALL_BODY_BYTES
        and warmup.is_warm(f"predict/{managed.model.spec.name}")
    ):
        # A plain CSR body of a few rows is read, checked, scored and squashed in one compiled
        # call, on the event loop (microseconds); any other body takes the general path below.
        scores = await managed.for_predictions().read(
            lambda model: scores_of_json(
                model, data, max_rows=settings.max_rows_per_batch, max_nnz=settings.max_nnz_per_row
            ),
            inline=True,
        )
    if scores is None:
        scores = await _scores_of_batch(data, managed, settings, warmup, arrow)
    margins, probs = scores
    # Predictions' fields, encoded by orjson (see json_response).
    return json_response({"probabilities": probs, "margins": margins})


async def _scores_of_batch(
    data: bytes, managed: ManagedModel, settings: Settings, warmup: Warmup, arrow: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Margins and probabilities of any body (named rows, unsorted CSR, many rows, Arrow...)
    through a validated :class:`Batch`; 422 for a margin that is not finite."""
    batch = await _batch_of(data, managed, settings, warmup, require_labels=False, arrow=arrow)
    # A few rows are scored on the event loop (microseconds; a thread hop costs far more).
    margins = await managed.for_predictions().read(
        lambda model: model.decision_function(batch),
        inline=batch.n_rows + batch.nnz <= settings.inline_read_size
        and warmup.is_warm(f"reads/{managed.model.spec.name}"),  # compiling: not on the loop
    )
    if not np.isfinite(margins).all():  # JSON has no inf: say so rather than answer null
        row = int(np.flatnonzero(~np.isfinite(margins))[0])
        raise ApiError(
            422, "invalid_input", f"the margin of row {row} is not finite (values too large?)",
            {"row": row, "field": "values"},
        )  # fmt: skip
    return margins, probabilities(margins)
