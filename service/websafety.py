"""What a web page in the user's browser cannot make the service do.

A page may send requests to any address, the loopback one an open (token-less) adaserve listens
on included. It cannot read the answers (the service sends no CORS headers), but a "simple"
request is sent without asking the server first (no CORS preflight): GET, HEAD or POST with a body
of ``text/plain``, ``application/x-www-form-urlencoded`` or ``multipart/form-data``. Such a POST
must change nothing, hence two checks:

* :class:`MediaTypeRoute`, the routers' route class: a route that takes a body accepts only the
  media types its OpenAPI document declares, else 415 ``unsupported_media_type``. JSON routes take
  ``application/json`` (a ``+json`` suffix and parameters such as ``charset`` too), ``/import``
  the model file's ``application/x-adaserve-model``, ``/stream`` its text formats: none of them
  is a type a page may send without a preflight, which the service never grants.
* :class:`OriginGuard`, a pure ASGI middleware: a request whose ``Origin`` header is not the
  service's own origin (the scheme and the ``Host`` it was asked for) nor one of
  ``ADASERVE_ALLOWED_ORIGINS`` is refused with 403 ``forbidden_origin``, whatever its method.
  Browsers send ``Origin`` with every request a page makes but a ``no-cors`` GET (an image, a
  script, ``fetch`` in that mode), and (Fetch Metadata) ``Sec-Fetch-Site`` with every request:
  a GET without ``Origin`` that a page of another site made is refused too, unless it is a
  navigation (a link to the service followed). Refusing GETs is not needed (a page cannot read
  their answers) but keeps the rule simple: no foreign page gets an answer. Other clients (curl,
  the Python client) send neither header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ApiError, error_body
from service.schemas import ErrorBody

JSON = "application/json"
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def media_type(content_type: str | None) -> str:
    """``type/subtype`` of a Content-Type header, lower-cased, without parameters ('' if none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def accepts(accepted: frozenset[str], given: str) -> bool:
    """Whether media type ``given`` is one of ``accepted``; a JSON route also takes ``+json``."""
    if given in accepted:
        return True
    return JSON in accepted and given.startswith("application/") and given.endswith("+json")


def body_media_types(route: APIRoute) -> frozenset[str]:
    """The media types a route's request body is documented with (none: it takes no body)."""
    declared = (route.openapi_extra or {}).get("requestBody", {}).get("content", {})
    if declared:
        return frozenset(declared)
    return frozenset({JSON}) if route.body_field is not None else frozenset()


class MediaTypeRoute(APIRoute):
    """A route that refuses (415) a body of a media type its OpenAPI document does not declare,
    before the body is read (and documents that answer). A route without a body is left as it
    is."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if body_media_types(self) and 415 not in self.responses:
            self.responses = {
                **self.responses,
                415: {"model": ErrorBody, "description": "a body of another media type"},
            }

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        accepted = body_media_types(self)
        if not accepted:
            return handler
        if len(accepted) > 1:
            expected = f"one of {', '.join(sorted(accepted))}"
        else:
            expected = f"{JSON} (or a +json type)" if JSON in accepted else next(iter(accepted))

        async def checked(request: Request) -> Response:
            given = media_type(request.headers.get("content-type"))
            if not accepts(accepted, given):
                raise ApiError(
                    415, "unsupported_media_type",
                    f"Content-Type must be {expected}, got {given or 'none'!r}",
                    {"field": "Content-Type"},
                )  # fmt: skip
            return await handler(request)

        return checked


def normalized_origin(origin: str) -> str:
    """``scheme://host[:port]`` lower-cased, without a trailing slash or the scheme's default
    port, so that equal origins compare equal."""
    scheme, _, rest = origin.strip().rstrip("/").lower().partition("://")
    host, _, port = rest.rpartition(":") if rest.rfind(":") > rest.rfind("]") else (rest, "", "")
    if port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{rest}"


def parse_origins(setting: str) -> frozenset[str]:
    """The origins of ``ADASERVE_ALLOWED_ORIGINS`` (comma-separated), normalized; a malformed
    entry is a ValueError naming it."""
    origins = set()
    for i, entry in enumerate(e.strip() for e in setting.split(",")):
        if not entry:
            continue
        scheme, separator, host = entry.partition("://")
        if not separator or not scheme or not host or "/" in host.rstrip("/"):
            raise ValueError(
                f"ADASERVE_ALLOWED_ORIGINS entry {i + 1} ({entry!r}) is not scheme://host[:port]"
            )
        origins.add(normalized_origin(entry))
    return frozenset(origins)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


class OriginGuard:
    """Refuses (403 ``forbidden_origin``) a request from a foreign web page: one whose ``Origin``
    is neither the service's own origin (``scheme://Host``) nor allowed, or, without ``Origin``
    (a ``no-cors`` GET: browsers send none), one the browser marks as made by a page of another
    site (``Sec-Fetch-Site``) other than a navigation (a link followed to the service).

    ``loopback_only`` (open mode on a loopback address): a request from a browser (one with
    ``Origin`` or ``Sec-Fetch-Site``) must also have asked for a loopback ``Host`` (or an allowed
    origin's): a page whose own name an attacker re-points at 127.0.0.1 (DNS rebinding) is
    same-origin with the service as far as the browser knows. Pure ASGI: a request without either
    header (curl, the Python client) costs a dict of its headers and two lookups."""

    def __init__(
        self, app: ASGIApp, allowed: Iterable[str] = (), *, loopback_only: bool = False
    ) -> None:
        self.app = app
        self.allowed = frozenset(allowed)
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])  # one C-level pass: cheaper than a loop over them
            origin, site = headers.get(b"origin"), headers.get(b"sec-fetch-site")
            if origin is not None or site is not None:  # a browser's request
                refused = self._refusal(scope, headers, origin, site)
                if refused is not None:
                    await _refuse(send, refused)
                    return
        await self.app(scope, receive, send)

    def _refusal(
        self, scope: Scope, headers: dict[bytes, bytes], origin: bytes | None, site: bytes | None
    ) -> str | None:
        """Why a browser's request is refused (whose it is), or None."""
        host = headers.get(b"host")
        own = f"{scope.get('scheme', 'http')}://{(host or b'').decode('latin-1')}"
        if origin is not None:
            claimed = normalized_origin(origin.decode("latin-1"))
            if claimed not in self.allowed and (host is None or claimed != normalized_origin(own)):
                return f"web pages of origin {origin.decode('latin-1')!r}"
        elif site in _OTHER_SITES and headers.get(b"sec-fetch-mode") != b"navigate":
            return f"web pages of another site (Sec-Fetch-Site: {site.decode('latin-1')})"
        if self.loopback_only and not self._loopback_or_allowed(own):
            return f"web pages at {own!r}, not a loopback address (DNS rebinding?)"
        return None

    def _loopback_or_allowed(self, own: str) -> bool:
        origin = normalized_origin(own)
        netloc = origin.partition("://")[2]
        hostname = netloc.rpartition(":")[0] if netloc.rfind(":") > netloc.rfind("]") else netloc
        return is_loopback(hostname) or origin in self.allowed


# Sec-Fetch-Site of a request a page of another origin made (same-site: another port, say).
_OTHER_SITES = (b"cross-site", b"same-site")


async def _refuse(send: Send, whom: str) -> None:
    body = orjson.dumps(
        error_body(
            "forbidden_origin",
            f"requests from {whom} are refused; allow the origin in ADASERVE_ALLOWED_ORIGINS "
            "to admit them",
            {"field": "Origin"},
        )
    )
    await send({
        "type": "http.response.start", "status": 403,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
