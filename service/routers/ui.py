"""The dashboard at ``/ui``: static HTML, CSS and JavaScript shipped in the package.

No CDN, no build step: ``service/static/`` holds every file the page loads, and the page draws its
charts itself (SVG). The page and its files need no token; the API calls it makes carry the one
entered in the page (``Authorization: Bearer``). ``/ui/config.json`` tells the page whether a
token is needed and which optional APIs exist, so it never has to probe with a failing request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse

from service.errors import ApiError

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# Everything from this origin only: nothing from a CDN could load even if the page asked for it.
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
    ),
}

router = APIRouter(tags=["ui"], include_in_schema=False)


def _asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise ApiError(404, "not_found", f"the dashboard has no file {name!r}")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=HEADERS)


@router.api_route("/ui", methods=["GET", "HEAD"])
async def ui_redirect() -> RedirectResponse:
    # Relative, so the page's relative URLs also work behind a path prefix.
    return RedirectResponse("ui/", status_code=307)


@router.api_route("/ui/", methods=["GET", "HEAD"])
async def ui_index() -> FileResponse:
    return _asset("index.html")


@router.get("/ui/config.json")
async def ui_config(request: Request) -> dict[str, Any]:
    # The OpenAPI document lists every API route (app.routes nests included routers).
    paths = request.app.openapi().get("paths", {})
    return {
        "auth_required": bool(request.app.state.tokens),
        "experiments": "/v1/experiments" in paths,
        "version": request.app.version,
    }


@router.api_route("/ui/{name}", methods=["GET", "HEAD"])
async def ui_asset(name: str) -> FileResponse:
    return _asset(name)
