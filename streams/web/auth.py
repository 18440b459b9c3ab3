"""The bearer token (``RECSTREAM_API_TOKEN``) of the worker's HTTP server.

With a token set, every route needs it except an explicit list of open
ones (:data:`OPEN_PATHS`: probes, the Prometheus scrape, and the dashboard's
HTML page, which holds no data and asks the operator for the token). Deny
by default: a route added later is behind the token until someone decides
otherwise, and ``tests/test_web_surface.py`` tries every registered route.
"""

from __future__ import annotations

import hmac
from typing import Awaitable, Callable

from aiohttp import web

from streams.web.errors import ApiError

OPEN_PATHS = frozenset({"/metrics", "/healthz", "/ready", "/dashboard", "/dashboard/"})

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def check_token(request: web.Request, token: bytes) -> None:
    """Raise a 401 unless the request carries ``Authorization: Bearer
    <token>`` (nothing to check when ``token`` is empty)."""
    if not token:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest: no timing hint of how much of a guess was right
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(errors="replace"), token):
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token> (RECSTREAM_API_TOKEN)",
                       {"WWW-Authenticate": 'Bearer realm="recstream"'})


def token_required(token: str, open_paths: frozenset[str] = OPEN_PATHS) -> Callable[[web.Request, _Handler], Awaitable[web.StreamResponse]]:
    """A middleware that asks every request outside ``open_paths`` for the
    token (unknown paths too: a 401 tells a prober nothing a 404 would)."""
    secret = token.encode()

    @web.middleware
    async def require_token(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path not in open_paths:
            check_token(request, secret)
        return await handler(request)

    return require_token
