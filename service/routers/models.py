"""Create, list, describe and delete models; list the optimizers."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response

from optim import REGISTRY
from optim.portfolio import PortfolioLogisticRegression
from service import dependencies as deps
from service.auth import ADMIN, READ
from service.metrics import ServiceMetrics
from service.registry import ManagedModel, ModelRegistry
from service.schemas import ERROR_RESPONSES, CreateModel, ErrorBody, ModelInfo, ModelList
from service.websafety import MediaTypeRoute

router = APIRouter(
    prefix="/v1", tags=["models"], responses=ERROR_RESPONSES, route_class=MediaTypeRoute
)


def describe(managed: ManagedModel) -> dict[str, Any]:
    """ModelInfo of a model (call with its state lock held)."""
    model = managed.model
    return {
        "name": managed.name,
        "status": "ready",
        "config": model.config,
        "step": model.step,
        "metrics": model.metrics.to_dict(),
        "holdout": model.holdout_metrics.to_dict(),
        "touched_coordinates": int(np.count_nonzero(model.times_touched[: model.dim])),
        "state_bytes": model.state_bytes,
        "portfolio": model.info() if isinstance(model, PortfolioLogisticRegression) else None,
        "feedback": model.feedback.summary() if model.feedback is not None else None,
    }


@router.get(
    "/optimizers", dependencies=[READ], summary="The optimizers, their hyperparameters and defaults"
)
async def optimizers() -> dict[str, Any]:
    return {
        name: {
            "slots": list(spec.slots),
            "hyperparameters": {h.name: h.default for h in spec.hyperparameters},
            "lazy_modes_coincide": spec.lazy_modes_coincide,
        }
        for name, spec in REGISTRY.items()
    }


@router.post(
    "/models",
    dependencies=[ADMIN],
    status_code=201,
    response_model=ModelInfo,
    summary="Create a model",
    responses={409: {"model": ErrorBody, "description": "a model with this name exists"}},
)
async def create_model(
    body: CreateModel, registry: Annotated[ModelRegistry, Depends(deps.registry)]
) -> dict[str, Any]:
    config = body.model_dump(exclude={"name", "read_replicas"}, exclude_none=True)
    if isinstance(body.optimizer, str):
        config["optimizer"] = {"name": body.optimizer}
    managed = await registry.create(body.name, config, read_replicas=body.read_replicas)
    return await managed.read(lambda _: describe(managed))


@router.get("/models", dependencies=[READ], response_model=ModelList, summary="List the models")
async def list_models(registry: Annotated[ModelRegistry, Depends(deps.registry)]) -> dict:
    ready = [await m.read(lambda _, m=m: describe(m)) for m in list(registry.models.values())]
    unavailable = [
        {"name": q.name, "status": "unavailable", "reason": q.reason}
        for q in registry.quarantined.values()
    ]
    return {"models": ready + unavailable}


@router.get(
    "/models/{name}", dependencies=[READ], response_model=ModelInfo, summary="Describe a model"
)
async def get_model(managed: Annotated[ManagedModel, Depends(deps.model)]) -> dict[str, Any]:
    return await managed.read(lambda _: describe(managed))


@router.delete(
    "/models/{name}",
    dependencies=[ADMIN],
    status_code=204,
    summary="Delete a model and its files",
    responses={409: {"model": ErrorBody, "description": "the model is an experiment's member"}},
)
async def delete_model(
    name: str,
    request: Request,
    registry: Annotated[ModelRegistry, Depends(deps.registry)],
    metrics: Annotated[ServiceMetrics, Depends(deps.metrics)],
) -> Response:
    request.app.state.experiments.refuse_member(name)
    await registry.delete(name)  # after the writes queued before it
    metrics.forget(name)
    return Response(status_code=204)
