"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Response
from fastapi.openapi.docs import get_redoc_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from optim.portfolio import optimizers_in
from service.auth import READ, parse_tokens
from service.errors import install_error_handlers
from service.experiments import ExperimentRegistry
from service.metrics import MetricsMiddleware, ServiceMetrics
from service.registry import ModelRegistry
from service.routers import (
    cluster,
    experiments,
    feedback,
    health,
    inspection,
    learning,
    models,
    persistence,
    streams,
    ui,
    watches,
)  # fmt: skip
from service.schemas import (
    CsrBatch,
    CsrPrediction,
    FeedbackLabels,
    FeedbackLine,
    NamedPrediction,
    NamedRows,
)
from service.settings import Settings
from service.warmup import Warmup, plan
from service.websafety import OriginGuard, is_loopback, parse_origins

log = logging.getLogger("adaserve")
# The routers in the order the API documents them (/docs, /openapi.json).
ROUTERS = (
    health, models, learning, feedback, streams, inspection, watches, persistence, experiments,
    cluster, ui,
)  # fmt: skip
DOCS_FILES = "/static-offline-docs"  # Swagger UI's and ReDoc's files (fastapi-offline's)
# ReDoc's side menu shows an image from its maker's CDN: the page's policy keeps it from loading
# (ReDoc hides it then). It styles itself inline and searches in a worker made from a blob.
REDOC_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


def warm_kernels(optimizers_in_use: Iterable[str] = ()) -> Warmup:
    """Compile (or load from numba's cache) every optimizer's kernels, the compiled JSON reader
    and the text parsers, those of ``optimizers_in_use`` first (:mod:`service.warmup`), logging
    what each piece took."""
    warmup = Warmup(plan(optimizers_in_use))
    warmup.run()
    return warmup


def warm(warmup: Warmup) -> None:
    """``warmup.run()``, then the objects alive from then on for the life of a server (numba's,
    FastAPI's, pydantic's) are moved out of the cyclic GC's reach (``gc.freeze``): its full
    collections under load took 47 ms instead of 88 ms, all that time holding the GIL."""
    warmup.run()
    gc.collect()  # what is garbage already is not frozen
    gc.freeze()


def declare_bearer_auth(schema: dict) -> None:
    """Every operation takes an API token (``Authorization: Bearer``), unless it declares
    ``security: []`` itself (/healthz, /readyz): "Authorize" in /docs sends it. The others
    document the answers to a missing or insufficient token."""
    schema["components"]["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token with the role the operation needs (read < write < "
            "admin); ignored by a server without tokens (one bound to loopback only).",
        }
    }
    schema["security"] = [{"bearer": []}]
    error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for operations in schema["paths"].values():
        for operation in operations.values():
            if operation.get("security") != []:
                responses = operation.setdefault("responses", {})
                responses.setdefault(
                    "401", {"description": "no valid API token", "content": error_body}
                )
                responses.setdefault(
                    "403", {"description": "the token's role is not enough", "content": error_body}
                )


def make_registry(settings: Settings) -> ModelRegistry:
    """The models in this process, or on a Ray cluster when ``ray_address`` is set (Ray is
    imported only then)."""
    if settings.ray_address is None:
        return ModelRegistry(settings)
    from service.cluster.registry import RayRegistry

    return RayRegistry(settings)


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
        warming: threading.Thread | None = None
        if settings.warm_kernels:
            in_use = [name for m in registry.models.values() for name in optimizers_in(m.model)]
            app.state.warmup = Warmup(plan(in_use))
            warming = threading.Thread(
                target=warm, args=(app.state.warmup,), name="adaserve-warm-up", daemon=True
            )
            warming.start()
        housekeeping = asyncio.create_task(registry.keep_house())
        yield
        housekeeping.cancel()
        app.state.warmup.stopping.set()
        if warming is not None and warming.is_alive():  # the piece compiling now ends first
            await anyio.to_thread.run_sync(warming.join)
        await registry.shut_down()
        registry.close()  # and the engine's thread pools
        log.info("snapshots written to %s", settings.data_dir.resolve())

    # /docs and /redoc load Swagger UI's and ReDoc's files from this server (the package
    # fastapi-offline ships them), not from a CDN: the docs work without the internet.
    app = FastAPIOffline(
        redoc_url=None,  # redoc() below
        static_url=DOCS_FILES,
        title="adaserve",
        version="0.1.0",
        summary="Online logistic regression with lazy per-coordinate optimizers, over HTTP",
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
    )
    app.state.settings = settings
    app.state.registry = make_registry(settings)
    app.state.experiments = ExperimentRegistry(app.state.registry)
    app.state.metrics = ServiceMetrics(lambda: app.state.registry.models.values())
    app.state.warmup = Warmup([])  # nothing to wait for unless the lifespan plans a warm-up
    app.state.warmup.ready.set()
    app.state.tokens = parse_tokens(settings.tokens, settings.tokens_file)
    install_error_handlers(app)
    # Inside the metrics middleware, so that refused requests are counted too.
    app.add_middleware(
        OriginGuard,
        allowed=parse_origins(settings.allowed_origins),
        loopback_only=not app.state.tokens and is_loopback(settings.host),
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_FILES}/redoc.standalone.js", with_google_fonts=False,
            redoc_favicon_url=f"{DOCS_FILES}/favicon.png",
        )  # fmt: skip
        page.headers["Content-Security-Policy"] = REDOC_POLICY
        return page

    framework_routes = list(app.routes)  # /openapi.json, /docs, /redoc, their files: undocumented
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
            for model in (
                CsrBatch, NamedRows, CsrPrediction, NamedPrediction, FeedbackLabels, FeedbackLine
            ):  # fmt: skip
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(definition.pop("$defs", {}))
                components[model.__name__] = definition
            declare_bearer_auth(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get(
        "/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response,
        dependencies=[READ],
    )  # fmt: skip
    async def prometheus_metrics() -> Response:
        await app.state.registry.refresh_views()
        return Response(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
