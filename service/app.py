"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import numpy as np
from fastapi import FastAPI, Response
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from optim import REGISTRY, OnlineLogisticRegression
from service.auth import READ, parse_tokens
from service.errors import ApiError, install_error_handlers
from service.experiments import ExperimentRegistry
from service.metrics import MetricsMiddleware, ServiceMetrics
from service.registry import ModelRegistry
from service.routers import (
    experiments,
    health,
    inspection,
    learning,
    models,
    persistence,
    streams,
    ui,
)  # fmt: skip
from service.schemas import CsrBatch, NamedRows
from service.settings import Settings
from service.websafety import OriginGuard, is_loopback, parse_origins

log = logging.getLogger("adaserve")
# The routers in the order the API documents them (/docs, /openapi.json).
# One valid Criteo line: label, 13 integer and 26 categorical columns.
CRITEO_LINE = b"\t".join([b"1", *[b"1"] * 13, *[b"a"] * 26]) + b"\n"
ROUTERS = (health, models, learning, streams, inspection, persistence, experiments, ui)


def warm_kernels() -> None:
    """Compile (or load from numba's cache) every optimizer's learn/predict/inspect kernels, the
    compiled JSON readers and the text parsers, so no request pays for it."""
    indptr, indices, values = np.array([0, 1]), np.array([0]), np.array([1.0])
    from optim import Batch, _json
    from optim.parsers import parse_bytes

    _json.warm()
    for fmt, line in (("libsvm", b"1 0:1\n"), ("vw", b"1 | a\n"), ("criteo", CRITEO_LINE)):
        parse_bytes(line, fmt, dim=2)
    batch = Batch.from_arrays(indptr, indices, values, [1], dim=2)
    for name in REGISTRY:
        model = OnlineLogisticRegression(name, dim=2)
        model.learn_batch(batch)
        model.decision_function(batch)
        model.inspect_coordinates([0])


def warm() -> None:
    """:func:`warm_kernels`, then the objects alive from then on for the life of a server (numba's,
    FastAPI's, pydantic's) are moved out of the cyclic GC's reach (``gc.freeze``): its full
    collections under load took 47 ms instead of 88 ms, all that time holding the GIL."""
    warm_kernels()
    gc.collect()  # what is garbage already is not frozen
    gc.freeze()


async def keep_house(registry: ModelRegistry, settings: Settings) -> None:
    """Interval fsyncs of the logs, and snapshots every N rows or T seconds."""
    while True:
        await asyncio.sleep(min(settings.fsync_interval_ms / 1000, 1.0))
        for managed in list(registry.models.values()):
            try:
                if settings.fsync == "interval":
                    await anyio.to_thread.run_sync(managed.storage.sync_if_due)
                due = managed.rows_since_snapshot >= settings.snapshot_every_rows or (
                    managed.rows_since_snapshot
                    and time.monotonic() - managed.last_snapshot >= settings.snapshot_every_seconds
                )
                if due:
                    await managed.snapshot_in_background()
            except Exception:  # keep housekeeping alive; the failure is logged
                log.exception("housekeeping of model %s failed", managed.name)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry: ModelRegistry = app.state.registry
        registry.load_all()
        app.state.experiments.load_all()
        log.info(
            "data directory %s: %d model(s)", settings.data_dir.resolve(), len(registry.models)
        )
        if settings.warm_kernels:
            threading.Thread(target=lambda: (warm(), app.state.ready.set()), daemon=True).start()
        else:
            app.state.ready.set()
        housekeeping = asyncio.create_task(keep_house(registry, settings))
        yield
        housekeeping.cancel()
        for managed in list(registry.models.values()):
            try:
                await managed.write(lambda _, m=managed: m.snapshot())
            except ApiError as error:  # e.g. a model whose log failed: its files stay as they are
                log.error("model %s: no snapshot at shutdown: %s", managed.name, error.detail)
        registry.close()
        log.info("snapshots written to %s", settings.data_dir.resolve())

    app = FastAPI(
        title="adaserve",
        version="0.1.0",
        summary="Online logistic regression with lazy per-coordinate optimizers, over HTTP",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = ModelRegistry(settings)
    app.state.experiments = ExperimentRegistry(app.state.registry)
    app.state.metrics = ServiceMetrics(lambda: app.state.registry.models.values())
    app.state.ready = threading.Event()
    app.state.tokens = parse_tokens(settings.tokens, settings.tokens_file)
    install_error_handlers(app)
    # Inside the metrics middleware, so that refused requests are counted too.
    app.add_middleware(
        OriginGuard,
        allowed=parse_origins(settings.allowed_origins),
        loopback_only=not app.state.tokens and is_loopback(settings.host),
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    framework_routes = list(app.routes)  # /openapi.json, /docs, /redoc: not documented
    # The per-row learning routes (predict, updates) are the app's first own routes rather than
    # an included router's: FastAPI matches a request against each included router in turn,
    # with ~8 µs of bookkeeping a router (twice for the one that answers), ~20 µs of a ~150 µs
    # single-row prediction. No other route answers their methods and paths, so nothing else
    # changes; the OpenAPI document keeps the order of ROUTERS (openapi() below). (These two
    # routes are shared APIRoute objects: app.dependency_overrides do not reach them.)
    app.router.routes[:0] = learning.router.routes
    for module in ROUTERS:
        if module is not learning:
            app.include_router(module.router)
    matched_routes = {id(route) for route in app.routes}

    def openapi() -> dict:
        if app.openapi_schema is None:
            own_routes = [route for route in app.routes if id(route) not in matched_routes]
            documented = [
                *framework_routes,
                *(route for module in ROUTERS for route in module.router.routes),
                *own_routes,  # /metrics
            ]
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=documented
            )
            # Bodies decoded by orjson (learning.py) reference these models; register them.
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (CsrBatch, NamedRows):
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(definition.pop("$defs", {}))
                components[model.__name__] = definition
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get(
        "/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response,
        dependencies=[READ],
    )  # fmt: skip
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
