"""Watched coordinates: their list, and their weight, effective rate and state over rows
(recorded as the model learns, see :mod:`service.engine.watches`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from optim import BatchError, OnlineLogisticRegression
from service import dependencies as deps
from service.auth import READ, WRITE
from service.registry import ManagedModel
from service.schemas import ERROR_RESPONSES, AddWatch, WatchCurves, WatchList, WatchSettings
from service.websafety import MediaTypeRoute

router = APIRouter(
    prefix="/v1/models/{name}/watches",
    tags=["inspection"],
    responses=ERROR_RESPONSES,
    route_class=MediaTypeRoute,
)


@router.get("", dependencies=[READ], response_model=WatchList, summary="The watched coordinates")
async def list_watches(managed: Annotated[ManagedModel, Depends(deps.model)]) -> dict[str, Any]:
    return managed.watches.listing()


@router.post(
    "",
    dependencies=[WRITE],
    status_code=201,
    response_model=WatchList,
    summary="Watch a coordinate (by feature name or index): its curves start now",
)
async def add_watch(
    body: AddWatch, managed: Annotated[ManagedModel, Depends(deps.model)]
) -> dict[str, Any]:
    if (body.feature is None) == (body.index is None):
        raise BatchError("give exactly one of feature and index", field="feature")

    def add(model: OnlineLogisticRegression) -> dict[str, Any]:
        managed.watches.add(model, body.index, body.feature)
        if body.every is not None:
            managed.watches.set_every(body.every)
        return managed.watches.listing()

    return await managed.write(add)  # in order with the batches learned


@router.put(
    "",
    dependencies=[WRITE],
    response_model=WatchList,
    summary="Set the rows between samples of the model's watched coordinates",
)
async def set_watch_settings(
    body: WatchSettings, managed: Annotated[ManagedModel, Depends(deps.model)]
) -> dict[str, Any]:
    def change(_: OnlineLogisticRegression) -> dict[str, Any]:
        managed.watches.set_every(body.every)
        return managed.watches.listing()

    return await managed.write(change)


@router.delete(
    "/{index}", dependencies=[WRITE], status_code=204, summary="Stop watching a coordinate"
)
async def remove_watch(
    index: int, managed: Annotated[ManagedModel, Depends(deps.model)]
) -> Response:
    await managed.write(lambda _: managed.watches.remove(index))
    return Response(status_code=204)


@router.get(
    "/samples",
    dependencies=[READ],
    response_model=WatchCurves,
    summary="Each watched coordinate's weight, effective rate, touches and state over rows",
)
async def watch_samples(
    managed: Annotated[ManagedModel, Depends(deps.model)],
    since_step: Annotated[
        int, Query(ge=-1, description="only the samples of later steps (to follow a model)")
    ] = -1,
) -> dict[str, Any]:
    return managed.watches.curves(managed.model.spec.slots, since_step)
