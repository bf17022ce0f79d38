"""API tokens with roles: ``read`` < ``write`` < ``admin``.

``read``: predict, inspect, list, metrics. ``write``: read + updates and streams. ``admin``:
write + create, delete, import, export, snapshot. Tokens come from ``ADASERVE_TOKENS``
(comma-separated ``role:token``) and/or ``--tokens-file`` (one ``role token`` per line, ``#``
comments); they are sent as ``Authorization: Bearer <token>``, compared in constant time, and
never logged. With no token configured the service is open (and binds only loopback addresses
unless ``--insecure``).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import Depends, Request

from service.errors import ApiError

ROLES = {"read": 0, "write": 1, "admin": 2}


def parse_tokens(inline: str, file: Path | None) -> dict[str, str]:
    """``{token: role}`` from the settings; a malformed entry is a ValueError naming it."""
    pairs: list[tuple[str, str, str]] = []
    for i, entry in enumerate(e.strip() for e in inline.split(",")):
        if entry:
            role, _, token = entry.partition(":")
            pairs.append((role.strip(), token.strip(), f"ADASERVE_TOKENS entry {i + 1}"))
    if file is not None:
        for number, line in enumerate(Path(file).read_text().splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                role, _, token = line.strip().partition(" ")
                pairs.append((role, token.strip(), f"{file} line {number}"))
    tokens: dict[str, str] = {}
    for role, token, where in pairs:
        if role not in ROLES or not token:
            raise ValueError(f"{where}: expected a role ({', '.join(ROLES)}) and a token")
        tokens[token] = role
    return tokens


def role_of(tokens: dict[str, str], given: str) -> str | None:
    """The role of ``given``, comparing against every token in constant time."""
    found = None
    for token, role in tokens.items():
        if hmac.compare_digest(token.encode(), given.encode()):
            found = role
    return found


def authorize(request: Request, role: str) -> None:
    """Admit a request whose token has at least ``role`` (any request when no token is set).

    Raises ApiError 401 (no valid token) or 403 (a token of a lesser role).
    """
    tokens: dict[str, str] = request.app.state.tokens
    if not tokens:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    granted = role_of(tokens, given.strip()) if scheme.lower() == "bearer" else None
    if granted is None:
        raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer <token>' is needed")
    if ROLES[granted] < ROLES[role]:
        raise ApiError(403, "forbidden", f"this needs the {role} role; the token has {granted}")


def require(role: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency admitting requests whose token has at least ``role`` (async: no thread hop)."""

    async def check(request: Request) -> None:
        authorize(request, role)

    check.__name__ = f"require_{role}"
    return check


READ, WRITE, ADMIN = (Depends(require(r)) for r in ROLES)
