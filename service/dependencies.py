"""FastAPI dependencies: the app's registry, settings, metrics and model lookup.

They are ``async`` because they never block: FastAPI would run plain functions in a worker
thread, a hop per dependency per request. Each dependency still costs ~15 µs a request (FastAPI
resolves its parameters in a pass of its own), more than scoring a row: the per-row routes use
:func:`authorized_model` (a plain call) or one combined dependency instead of several.
"""

from __future__ import annotations

from fastapi import Request

from service.auth import authorize
from service.metrics import ServiceMetrics
from service.registry import ManagedModel, ModelRegistry
from service.settings import Settings


async def registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def settings(request: Request) -> Settings:
    return request.app.state.settings


async def metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


async def model(name: str, request: Request) -> ManagedModel:
    """The model named in the path, or 404."""
    return request.app.state.registry.get(name)


def authorized_model(request: Request, name: str, role: str) -> ManagedModel:
    """What ``dependencies=[require(role)]`` and ``Depends(model)`` give, as one plain call.

    The same checks in the same order: 401/403 for the token, then 404 for the model.
    """
    authorize(request, role)
    return request.app.state.registry.get(name)


async def model_to_write(name: str, request: Request) -> ManagedModel:
    """The model named in the path for a token with the write role (401/403, then 404)."""
    return authorized_model(request, name, "write")
