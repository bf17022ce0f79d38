"""Where the models are: the nodes and what each holds (one node when embedded)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from service import dependencies as deps
from service.auth import READ
from service.registry import ModelRegistry
from service.schemas import ERROR_RESPONSES, ClusterInfo
from service.websafety import MediaTypeRoute

router = APIRouter(
    prefix="/v1", tags=["cluster"], responses=ERROR_RESPONSES, route_class=MediaTypeRoute
)


@router.get(
    "/cluster",
    dependencies=[READ],
    response_model=ClusterInfo,
    summary="The nodes (id, address, CPUs, memory), the models each holds, each model's state",
)
async def cluster(registry: Annotated[ModelRegistry, Depends(deps.registry)]) -> dict[str, Any]:
    return registry.cluster()
