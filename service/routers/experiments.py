"""Experiments: create several models over one stream, feed them once, compare them."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response

from service import dependencies as deps
from service.auth import ADMIN, READ, WRITE
from service.batches import batch_from_body, read_body
from service.experiments import Experiment, ExperimentRegistry, leaderboard_entry
from service.metrics import ServiceMetrics
from service.routers.learning import _body_schema
from service.routers.streams import (
    STREAM_BODY,
    BodyStreamingResponse,
    learn_in_each,
    learning_stream,
)
from service.schemas import (
    ERROR_RESPONSES,
    CreateExperiment,
    CsrBatch,
    ExperimentInfo,
    ExperimentList,
    ExperimentUpdate,
    NamedRows,
)
from service.settings import Settings
from service.websafety import MediaTypeRoute

router = APIRouter(
    prefix="/v1/experiments",
    tags=["experiments"],
    responses=ERROR_RESPONSES,
    route_class=MediaTypeRoute,
)


async def experiments(request: Request) -> ExperimentRegistry:
    return request.app.state.experiments


async def experiment(name: str, request: Request) -> Experiment:
    return request.app.state.experiments.get(name)


async def describe(registry: ExperimentRegistry, exp: Experiment) -> dict[str, Any]:
    serving, unavailable = registry.standing(exp)
    members = [await m.read(lambda _, m=m: leaderboard_entry(m)) for m in serving]
    ranked = sorted(members, key=lambda m: (m["log_loss"] is None, m["log_loss"] or 0.0))
    leaderboard = [m["model"] for m in ranked]
    return {
        "name": exp.name,
        "members": members,
        "leaderboard": leaderboard,
        "unavailable": unavailable,
    }


@router.post(
    "",
    dependencies=[ADMIN],
    status_code=201,
    response_model=ExperimentInfo,
    summary="Create an experiment: one model per entry, same dim and hashing",
)
async def create_experiment(
    body: CreateExperiment, registry: Annotated[ExperimentRegistry, Depends(experiments)]
) -> dict[str, Any]:
    shared = body.model_dump(
        include={"dim", "hash_bits", "hash_seed", "dtype", "fit_intercept"}, exclude_none=True
    )
    entries = [m.model_dump(exclude_none=True) for m in body.models]
    for entry, model in zip(entries, body.models, strict=True):
        if isinstance(model.optimizer, str):
            entry["optimizer"] = {"name": model.optimizer}
    return await describe(registry, await registry.create(body.name, shared, entries))


@router.get("", dependencies=[READ], response_model=ExperimentList, summary="List experiments")
async def list_experiments(registry: Annotated[ExperimentRegistry, Depends(experiments)]) -> dict:
    return {"experiments": [await describe(registry, e) for e in registry.experiments.values()]}


@router.get(
    "/{name}",
    dependencies=[READ],
    response_model=ExperimentInfo,
    summary="Leaderboard: progressive log-loss, recent AUC, calibration, loss curves",
)
async def get_experiment(
    exp: Annotated[Experiment, Depends(experiment)],
    registry: Annotated[ExperimentRegistry, Depends(experiments)],
) -> dict[str, Any]:
    return await describe(registry, exp)


@router.delete(
    "/{name}", dependencies=[ADMIN], status_code=204, summary="Delete an experiment and its models"
)
async def delete_experiment(
    name: str, registry: Annotated[ExperimentRegistry, Depends(experiments)]
) -> Response:
    exp = registry.get(name)
    async with exp.order:
        await registry.delete(name)
    return Response(status_code=204)


@router.post(
    "/{name}/updates",
    dependencies=[WRITE],
    response_model=ExperimentUpdate,
    summary="Learn a batch in every member, in the same order",
    openapi_extra=_body_schema(CsrBatch, NamedRows),
)
async def update_experiment(
    request: Request,
    exp: Annotated[Experiment, Depends(experiment)],
    registry: Annotated[ExperimentRegistry, Depends(experiments)],
    settings: Annotated[Settings, Depends(deps.settings)],
    metrics: Annotated[ServiceMetrics, Depends(deps.metrics)],
) -> dict[str, Any]:
    members = registry.members(exp)
    data = await read_body(request, settings.max_body_bytes)
    batch = await anyio.to_thread.run_sync(
        lambda: batch_from_body(data, members[0].model, settings, require_labels=True)
    )
    async with exp.order:
        learned = await learn_in_each(members, batch, metrics, None)
    results = {m.name: result for m, result in zip(members, learned, strict=True)}
    return {
        "rows": batch.n_rows,
        "members": {
            n: {"step": r.step, "log_loss": r.log_loss if r.learned_rows else None}
            for n, r in results.items()
        },
    }


@router.post(
    "/{name}/stream",
    dependencies=[WRITE],
    response_class=BodyStreamingResponse,
    summary="Learn a streamed body in every member (parsed once)",
    **STREAM_BODY,
)
async def stream_experiment(
    request: Request,
    exp: Annotated[Experiment, Depends(experiment)],
    registry: Annotated[ExperimentRegistry, Depends(experiments)],
    settings: Annotated[Settings, Depends(deps.settings)],
    metrics: Annotated[ServiceMetrics, Depends(deps.metrics)],
    return_predictions: Annotated[bool, Query()] = False,
) -> BodyStreamingResponse:
    members = registry.members(exp)
    return learning_stream(request, members, settings, metrics, return_predictions, exp.order)
