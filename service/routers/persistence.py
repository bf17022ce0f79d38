"""Export, import and snapshot the model file."""

from __future__ import annotations

import contextlib
import io
import json
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request, Response

from optim import ConfigError
from optim.portfolio import load_model
from service import dependencies as deps
from service.auth import ADMIN
from service.batches import read_body
from service.engine.errors import ModelNotFound
from service.errors import ApiError
from service.registry import ManagedModel, ModelRegistry
from service.schemas import ERROR_RESPONSES, ImportResult, Snapshot
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


def config_differences(in_file: dict[str, Any], here: dict[str, Any]) -> list[tuple[str, str]]:
    """Each setting that differs, as its dotted name and a sentence naming both values, in the
    configuration's order: ``("optimizer.lr", "optimizer.lr: 0.1 in the file, 0.05 here")``."""

    def flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in config.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    def shown(config: dict[str, Any], key: str) -> str:
        return json.dumps(config[key]) if key in config else "absent"

    theirs, ours = flat(in_file), flat(here)
    differences = []
    for key in [*ours, *(k for k in theirs if k not in ours)]:
        if key not in theirs or key not in ours or theirs[key] != ours[key]:
            sentence = f"{key}: {shown(theirs, key)} in the file, {shown(ours, key)} here"
            differences.append((key, sentence))
    return differences


@router.post(
    "/import",
    dependencies=[ADMIN],
    response_model=ImportResult,
    summary="Replace the model's state from a model file with the same configuration, or "
    "create the model from the file when no model has this name",
    responses={201: {"model": ImportResult, "description": "created from the file"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {MODEL_FILE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def import_model(
    name: str,
    request: Request,
    response: Response,
    registry: Annotated[ModelRegistry, Depends(deps.registry)],
    settings: Annotated[Settings, Depends(deps.settings)],
) -> dict:
    try:
        managed: ManagedModel | None = registry.get(name)
    except ModelNotFound:
        managed = None
    with contextlib.ExitStack() as held:
        if managed is None:  # the name is checked and held before the body is read
            held.enter_context(registry.holding_new(name))
        data = await read_body(request, settings.max_body_bytes)
        # The file's claim is reserved in the budget before any of its arrays is read, and
        # stays reserved until the loaded model is the one served (and counts itself).
        claim = held.enter_context(
            registry.reservation(model=name, what="the imported model", field="file")
        )
        try:  # off the event loop: a large file takes a while to read
            loaded = await anyio.to_thread.run_sync(
                partial(load_model, io.BytesIO(data), reserve=claim)
            )
        except ConfigError as error:
            raise ApiError.from_adaserve(error) from None
        if managed is None:
            await registry.adopt(name, loaded)
            response.status_code = 201
            return {"model": name, "step": loaded.step, "bytes": len(data), "created": True}
        differences = config_differences(loaded.config, managed.model.config)
        if differences:
            raise ApiError(
                422, "config_mismatch",
                "the file's configuration differs from the model's: "
                + "; ".join(sentence for _, sentence in differences),
                {"field": differences[0][0].split(".")[0],
                 "settings": [key for key, _ in differences]},
            )  # fmt: skip
        await managed.replace(loaded)  # its files first: one refused changes nothing
        return {"model": name, "step": loaded.step, "bytes": len(data), "created": False}


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
