"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.warmup import Warmup

router = APIRouter(tags=["health"])
OPEN = {"security": []}  # no token needed, whatever the server's tokens


@router.get("/healthz", summary="Liveness: the process answers", openapi_extra=OPEN)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: 200 once the compiled code the first requests need is loaded",
    description="The body says which pieces of compiled code are warm, which one is compiling, "
    "which wait and which failed; `all_warm` is true once everything is (see `adaserve warm`). "
    "A request needing a piece still compiling waits for it.",
    responses={503: {"description": "still compiling what the first requests need"}},
    openapi_extra=OPEN,
)
async def readyz(request: Request) -> JSONResponse:
    warmup: Warmup = request.app.state.warmup
    body = warmup.status()
    if not request.app.state.settings.warm_kernels:
        body["all_warm"] = None  # no warm-up: each piece compiles on first use
    return JSONResponse(body, status_code=200 if warmup.ready.is_set() else 503)
