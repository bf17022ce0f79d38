"""Delayed labels over HTTP: predict with ids (see ``/predict``), then send their labels here.

The routes translate; the pending rows live in the model (:mod:`optim.feedback`) and change only
in its writer (:meth:`service.engine.model.ManagedModel.remember` and ``label``).
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Depends, Request, Response

from optim import BatchError
from optim.feedback import check_ids
from optim.metrics import probabilities
from service import dependencies as deps
from service.batches import batch_from_json, read_body
from service.engine.mailbox import Labels
from service.errors import ApiError
from service.metrics import ServiceMetrics
from service.registry import ManagedModel, ModelRegistry
from service.schemas import ERROR_RESPONSES, UpdateResult, json_response
from service.settings import Settings
from service.websafety import MediaTypeRoute, media_type

router = APIRouter(
    prefix="/v1/models/{name}",
    tags=["learning"],
    responses=ERROR_RESPONSES,
    route_class=MediaTypeRoute,
)
NDJSON = "application/x-ndjson"
# Bodies larger than this are parsed in a worker thread (named rows take a few ms per 1,000).
_INLINE_BYTES = 1 << 16
_LABELS_KEYS = {"ids", "labels", "weights"}
_LINE_KEYS = {"id", "label", "weight"}


def _decoded(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ApiError(422, "invalid_json", f"the body is not valid JSON: {error}", {}) from None


async def predict_with_ids(request: Request, name: str, data: bytes) -> Response | None:
    """``/predict`` of a body with ``ids``: the rows are scored and kept pending by the model's
    writer, answered once logged (the write role: it changes the model's files). None when the
    body has no top-level ``ids`` (a feature may be named so): the route's usual path then."""
    body = _decoded(data)
    if not isinstance(body, dict) or "ids" not in body:
        return None
    managed = deps.authorized_model(request, name, "write")
    settings: Settings = request.app.state.settings
    registry: ModelRegistry = request.app.state.registry
    ids = body.pop("ids")

    def parse() -> Any:
        batch = batch_from_json(body, managed.model, settings, require_labels=False)
        return batch, check_ids(ids, batch.n_rows)

    if len(data) <= _INLINE_BYTES:
        batch, ids = parse()
    else:
        batch, ids = await anyio.to_thread.run_sync(parse)

    def reserve(needed: int) -> None:
        registry.check_budget(needed, model=name, what="the pending rows", field="ids")

    margins = await managed.remember(batch, ids, reserve)
    return json_response({"probabilities": probabilities(margins), "margins": margins})


def _labels_of_json(body: Any) -> Labels:
    if not isinstance(body, dict):
        raise BatchError("the body must be a JSON object", field="body")
    unknown = sorted(set(body) - _LABELS_KEYS)
    if unknown:
        raise BatchError(f"unknown key(s) {unknown}", field="body")
    if "labels" not in body:
        raise BatchError("is required", field="labels")
    ids = check_ids(body.get("ids"))
    for key in ("labels", "weights"):
        value = body.get(key)
        if value is not None and (not isinstance(value, list) or len(value) != len(ids)):
            raise BatchError(f"must be a list of one entry per id ({len(ids)})", field=key)
    return Labels(ids, body["labels"], body.get("weights"))


def _labels_of_ndjson(data: bytes) -> Labels:
    """One ``{"id", "label", "weight"?}`` object per line (blank lines skipped); an error names
    the line (``row``, counted from 0)."""
    ids: list[str] = []
    labels: list[Any] = []
    weights: list[Any] = []
    for number, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise ApiError(
                422, "invalid_json", f"line {number} is not valid JSON: {error}", {"row": number}
            ) from None
        if not isinstance(item, dict) or not {"id", "label"} <= set(item) <= _LINE_KEYS:
            raise BatchError(
                'must be an object {"id": ..., "label": ..., "weight"?: ...}', row=number
            )
        check_ids([item["id"]], field="id")
        ids.append(item["id"])
        labels.append(item["label"])
        weights.append(item.get("weight", 1.0))
    has_weights = any(w != 1.0 for w in weights)
    return Labels(ids, labels, weights if has_weights else None)


@router.post(
    "/feedback",
    response_model=UpdateResult,
    summary="Learn pending rows (predicted with ids) with their labels: all or none, in order",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/FeedbackLabels"}},
                NDJSON: {"schema": {"$ref": "#/components/schemas/FeedbackLine"}},
            },
        }
    },
)
async def feedback(
    request: Request,
    managed: Annotated[ManagedModel, Depends(deps.model_to_write)],
) -> Response:
    settings: Settings = request.app.state.settings
    metrics: ServiceMetrics = request.app.state.metrics
    data = await read_body(request, settings.max_body_bytes)
    if media_type(request.headers.get("content-type")) == NDJSON:
        labels = _labels_of_ndjson(data)
    else:
        labels = _labels_of_json(_decoded(data))
    if len(labels.ids) > settings.max_rows_per_batch:
        raise ApiError(
            413, "batch_too_large",
            f"{len(labels.ids):,} labels; at most {settings.max_rows_per_batch:,} per request",
            {"field": "ids"},
        )  # fmt: skip
    result = await managed.label(labels, metrics.learned)
    return json_response(
        {
            "rows": result.rows,
            "step": result.step,
            "log_loss": result.log_loss,
            "probabilities": None,
        }
    )
