"""FastAPI dependencies: the app's registry, settings, metrics and model lookup."""

from __future__ import annotations

from fastapi import Request

from service.metrics import ServiceMetrics
from service.registry import ManagedModel, ModelRegistry
from service.settings import Settings


def registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def settings(request: Request) -> Settings:
    return request.app.state.settings


def metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


def model(name: str, request: Request) -> ManagedModel:
    """The model named in the path, or 404."""
    return registry(request).get(name)
