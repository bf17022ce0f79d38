"""Export, import and snapshot the model file."""

from __future__ import annotations

import io
from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request, Response

from optim import ConfigError
from optim.portfolio import load_model
from service import dependencies as deps
from service.auth import ADMIN
from service.batches import read_body
from service.errors import ApiError
from service.registry import ManagedModel, ModelRegistry
from service.schemas import ERROR_RESPONSES, Snapshot
from service.settings import Settings
from service.websafety import MediaTypeRoute

router = APIRouter(
    prefix="/v1/models/{name}",
    tags=["persistence"],
    responses=ERROR_RESPONSES,
    route_class=MediaTypeRoute,
)
MODEL_FILE = "application/x-adaserve-model"


@router.get(
    "/export",
    dependencies=[ADMIN],
    summary="The model file (.npz: config, state, counters, metrics; no pickle)",
    response_class=Response,
    responses={200: {"content": {MODEL_FILE: {}}}},
)
async def export(managed: Annotated[ManagedModel, Depends(deps.model)]) -> Response:
    data = await managed.read(lambda model: model.to_bytes())
    return Response(
        data,
        media_type=MODEL_FILE,
        headers={"Content-Disposition": f'attachment; filename="{managed.name}.npz"'},
    )


@router.post(
    "/import",
    dependencies=[ADMIN],
    response_model=Snapshot,
    summary="Replace the model's state from a model file with the same configuration",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {MODEL_FILE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def import_model(
    request: Request,
    managed: Annotated[ManagedModel, Depends(deps.model)],
    registry: Annotated[ModelRegistry, Depends(deps.registry)],
    settings: Annotated[Settings, Depends(deps.settings)],
) -> dict:
    data = await read_body(request, settings.max_body_bytes)
    # The file's claim is reserved in the budget before any of its arrays is read, and stays
    # reserved until the loaded model replaces the current one (and counts itself).
    with registry.reservation(model=managed.name, what="the imported model", field="file") as claim:
        try:  # off the event loop: a large file takes a while to read
            loaded = await anyio.to_thread.run_sync(
                partial(load_model, io.BytesIO(data), reserve=claim)
            )
        except ConfigError as error:
            raise ApiError.from_adaserve(error) from None
        current = managed.model.config
        differing = sorted(k for k in current if loaded.config.get(k) != current[k])
        if differing:
            raise ApiError(
                422, "config_mismatch",
                f"the file's configuration differs from the model's in {differing}",
                {"field": differing[0]},
            )  # fmt: skip
        await managed.replace(loaded)  # its files first: one refused changes nothing
        return {"model": managed.name, "step": loaded.step, "bytes": len(data)}


@router.post(
    "/snapshot",
    dependencies=[ADMIN],
    response_model=Snapshot,
    summary="Write the model file to the data directory",
)
async def snapshot(
    managed: Annotated[ManagedModel, Depends(deps.model)],
    registry: Annotated[ModelRegistry, Depends(deps.registry)],
) -> dict:
    path, step = await managed.snapshot_in_background()
    return {"model": managed.name, "step": step, "bytes": path.stat().st_size}
