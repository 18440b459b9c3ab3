"""Related items over HTTP: ``GET /items/{item_id}/related?k=N&kind=K``.

``kind`` is ``similar`` (nearest catalog items by text), ``often_after``
(the item's strongest co-engagement edges in the worker's graph) or
``blend`` (both, the default); README, "Serving API". Served beside the
``/users/...`` routes (:mod:`streams.web.api`) on the observability
server's port, with the same token, TLS, limits and JSON refusals.

Every worker holds the whole catalog and a view of the global graph, so any
worker answers for any item: nothing is forwarded. Like the user routes this
module knows nothing of the models: the app (``streams.app``) hands it a
plain callable that returns the JSON-ready answer, or ``None`` for an item
the catalog does not hold (a 404 ``unknown_item``).
"""

from __future__ import annotations

import hmac
from typing import Any, Callable, Iterable, Protocol

import orjson
from aiohttp import web

from streams.web.api import JSON, WORKER_HEADER, ApiError, ApiLimits, check_id, parse_k

# the kinds models.related computes (streams must not import models: the
# app checks at wiring that the two lists agree)
KINDS = ("similar", "often_after", "blend")
DEFAULT_KIND = "blend"
QUERY = frozenset({"k", "kind"})

# (item_id, k, kind) -> the answer's JSON body, or None for an unknown item
Related = Callable[[str, int, str], "dict[str, Any] | None"]


class RelatedItemsApi:
    """The ``/items/{item_id}/related`` route on an aiohttp application."""

    def __init__(self, related: Related, limits: ApiLimits = ApiLimits(), token: str = "", own_url: str = "", default_k: int = 10) -> None:
        self.related = related
        self.limits = limits
        self._token = token.encode()
        self.own_url = own_url.rstrip("/")
        self.default_k = default_k

    def install(self, app: web.Application) -> None:
        app.router.add_get("/items/{item_id}/related", self.handle_related)

    async def handle_related(self, request: web.Request) -> web.StreamResponse:
        # Refusals are answered here, not left to the server's middlewares:
        # the route keeps its token check and JSON 4xx whatever else the
        # server installs (a server-wide token check asks the same token).
        try:
            self._authorise(request)
            item_id = check_id("item_id", request.match_info["item_id"])
            unknown = sorted(set(request.query) - QUERY)
            if unknown:
                raise ApiError(400, "unknown_parameter", f"unknown query parameter(s): {', '.join(unknown)[:200]}")
            k = parse_k(request.query.get("k"), self.limits.max_k, "query parameter") or self.default_k
            kind = request.query.get("kind", DEFAULT_KIND)
            if kind not in KINDS:
                raise ApiError(400, "invalid_kind", f"kind must be one of {', '.join(KINDS)}")
            # synchronous and short (one catalog product, one graph row):
            # nothing to await, so no time limit could cut it short either
            body = self.related(item_id, k, kind)
            if body is None:
                raise ApiError(404, "unknown_item", f"the catalog holds no item {item_id!r} (never published, or deleted)")
            response = web.Response(body=orjson.dumps(body), content_type=JSON)
        except ApiError as error:
            response = error.response()
        response.headers.setdefault(WORKER_HEADER, self.own_url)
        return response

    def _authorise(self, request: web.Request) -> None:
        if not self._token:
            return
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # compare_digest: no timing hint of how much of a guess was right
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(errors="replace"), self._token):
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <token> (RECSTREAM_API_TOKEN)", {"WWW-Authenticate": 'Bearer realm="recstream"'})


class Installable(Protocol):
    def install(self, app: web.Application) -> None: ...


class ApiRoutes:
    """Several route sets installed as one serving API (what
    ``ObservabilityServer(api=...)`` installs): the user routes and the
    item routes share the port, the token and the limits."""

    def __init__(self, parts: Iterable[Installable]) -> None:
        self.parts = list(parts)

    def install(self, app: web.Application) -> None:
        for part in self.parts:
            part.install(app)
