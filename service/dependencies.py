"""FastAPI dependencies: the app's registry, settings, metrics and model lookup.

They are ``async`` because they never block: FastAPI would run plain functions in a worker
thread, a hop per dependency per request.
"""

from __future__ import annotations

from fastapi import Request

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
