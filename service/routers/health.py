"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: 200 once every optimizer's compiled kernels are loaded",
    responses={503: {"description": "still compiling kernels"}},
)
async def readyz(request: Request) -> JSONResponse:
    if request.app.state.ready.is_set():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "compiling kernels"}, status_code=503)
