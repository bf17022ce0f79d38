"""Learn batches and predict."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import APIRouter, Depends, Query, Request

from optim.metrics import probabilities
from service import dependencies as deps
from service.auth import READ, WRITE
from service.batches import batch_from_json, read_json
from service.errors import ApiError
from service.metrics import ServiceMetrics
from service.registry import ManagedModel
from service.schemas import ERROR_RESPONSES, CsrBatch, NamedRows, Predictions, UpdateResult
from service.settings import Settings

router = APIRouter(prefix="/v1/models/{name}", tags=["learning"], responses=ERROR_RESPONSES)


def _body_schema(*models: type) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [{"$ref": f"#/components/schemas/{m.__name__}"} for m in models]
                    }
                }
            },
        }
    }


@router.post(
    "/updates",
    dependencies=[WRITE],
    response_model=UpdateResult,
    summary="Learn a batch (CSR or named rows): all rows or none, in order",
    openapi_extra=_body_schema(CsrBatch, NamedRows),
)
async def update(
    request: Request,
    managed: Annotated[ManagedModel, Depends(deps.model)],
    settings: Annotated[Settings, Depends(deps.settings)],
    metrics: Annotated[ServiceMetrics, Depends(deps.metrics)],
    return_predictions: Annotated[
        bool, Query(description="include pre-update probabilities")
    ] = False,
) -> dict[str, Any]:
    body = await read_json(request, settings.max_body_bytes)
    batch = await anyio.to_thread.run_sync(
        lambda: batch_from_json(body, managed.model, settings, require_labels=True)
    )

    result = await managed.learn(batch, metrics.learned)
    return {
        "rows": result.rows,
        "step": result.step,
        "log_loss": result.log_loss if result.rows else None,
        "probabilities": result.probabilities.tolist() if return_predictions else None,
    }


@router.post(
    "/predict",
    dependencies=[READ],
    response_model=Predictions,
    summary="Probabilities and margins (labels not needed); never changes the model",
    openapi_extra=_body_schema(CsrBatch, NamedRows),
)
async def predict(
    request: Request,
    managed: Annotated[ManagedModel, Depends(deps.model)],
    settings: Annotated[Settings, Depends(deps.settings)],
) -> dict[str, Any]:
    body = await read_json(request, settings.max_body_bytes)
    batch = batch_from_json(body, managed.model, settings, require_labels=False)
    margins = await managed.read(lambda model: model.decision_function(batch))
    overflowed = np.flatnonzero(~np.isfinite(margins))
    if overflowed.size:  # JSON has no inf: say so rather than answer null
        row = int(overflowed[0])
        raise ApiError(
            422, "invalid_input", f"the margin of row {row} is not finite (values too large?)",
            {"row": row, "field": "values"},
        )  # fmt: skip
    return {"probabilities": probabilities(margins).tolist(), "margins": margins.tolist()}
