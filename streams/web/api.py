"""The serving API: a user's latest list, a re-rank of the caller's
candidates, and the user's interests, over HTTP on the worker.

Routes (README, "Serving API"):

- ``GET  /users/{user_id}/recommendations?k=N``
- ``POST /users/{user_id}/rank`` with ``{"items": [...], "k": N}``
- ``GET  /users/{user_id}/interests``

Served on the observability server's port (:mod:`streams.web.health`), on
the worker's event loop. A user lives in one ``events`` partition, and only
the worker that owns it holds the user's state: a request for a user of
another worker's partition is forwarded to that worker's advertised URL,
as Faust's ``app.router.route_req`` does (each worker learns the others'
URLs from the consumer group's assignment), so any worker can take any
request behind a load balancer.

This module knows nothing of the models: the app (``streams.app``) hands it
a :class:`ServingBackend` of plain callables. Every answer that is not a
list is JSON; every refusal is a 4xx with ``{"error": code, "detail":
sentence}``; a request that cannot be answered in time, or whose user's
partition has no owner right now (a rebalance), gets a 503 with
``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Union

import aiohttp
import msgspec
import orjson
from aiohttp import web

from streams.settings import Settings
from streams.web.auth import check_token
from streams.web.errors import ApiError, json_errors

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Recstream-Forwarded"
WORKER_HEADER = "X-Recstream-Worker"
MAX_ID_CHARS = 256  # the event rules (schemas.decode): ids of 1 to 256 characters
JSON = "application/json"


@dataclass(frozen=True)
class Local:
    """The user's partition is this worker's."""

    partition: int


@dataclass(frozen=True)
class Remote:
    """Another worker owns the user's partition; its API is at ``url``."""

    url: str


@dataclass(frozen=True)
class Unavailable:
    """Nobody can answer for the user right now (starting, rebalancing)."""

    reason: str


Location = Union[Local, Remote, Unavailable]


@dataclass(frozen=True)
class ServingBackend:
    """What the API asks of the worker, wired by the app.

    - ``locate(user_id)``: where the user's state lives;
    - ``lookup(user_id, partition, k)``: the JSON body of the user's latest
      list (the cold-start list, flagged, for a user without state);
    - ``rank(user_id, partition, items, k)``: the re-ranked candidates;
    - ``interests(user_id, partition)``: the user's interests, ``None`` for
      a user without state.
    """

    locate: Callable[[str], Location]
    lookup: Callable[[str, int, "int | None"], bytes]
    rank: Callable[[str, int, "list[str]", "int | None"], dict[str, Any]]
    interests: Callable[[str, int], "dict[str, Any] | None"]


@dataclass(frozen=True)
class ApiLimits:
    """Caps on what one request may ask (from the settings)."""

    max_body_bytes: int = 65_536
    max_items: int = 1_000
    max_k: int = 1_000
    timeout_s: float = 1.0


class RankBody(msgspec.Struct, forbid_unknown_fields=True):
    items: list[str]
    k: int | None = None


_rank_decoder = msgspec.json.Decoder(RankBody)


def check_id(field: str, value: str) -> str:
    """An id by the event rules (1 to 256 characters, valid text)."""
    if not value or len(value) > MAX_ID_CHARS:
        raise ApiError(400, f"invalid_{field}", f"{field} must have 1 to {MAX_ID_CHARS} characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ApiError(400, f"invalid_{field}", f"{field} is not valid UTF-8 text") from None
    return value


def parse_k(raw: Any, max_k: int, where: str) -> int | None:
    """``k``: absent (``None``) or a whole number in 1..``max_k``."""
    if raw is None:
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if not text.isdigit() or not text.isascii() or len(text) > 9:
            raise ApiError(400, "invalid_k", f"k must be a whole number from 1 to {max_k} ({where})")
        raw = int(text)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= max_k:
        raise ApiError(400, "invalid_k", f"k must be a whole number from 1 to {max_k} ({where})")
    return raw


class ServingApi:
    """The ``/users/...`` routes on an aiohttp application."""

    def __init__(
        self,
        backend: ServingBackend,
        limits: ApiLimits = ApiLimits(),
        token: str = "",
        own_url: str = "",
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.backend = backend
        self.limits = limits
        self._token = token.encode()
        self.own_url = own_url.rstrip("/")
        self._client_ssl = client_ssl
        self._http: aiohttp.ClientSession | None = None

    # -- wiring ----------------------------------------------------------------
    def install(self, app: web.Application) -> None:
        if json_errors not in app.middlewares:  # refusals as JSON (the observability server installs it first)
            app.middlewares.append(json_errors)
        app.middlewares.append(self._middleware)
        app.router.add_get("/users/{user_id}/recommendations", self.handle_recommendations)
        app.router.add_post("/users/{user_id}/rank", self.handle_rank)
        app.router.add_get("/users/{user_id}/interests", self.handle_interests)
        app.on_cleanup.append(self._close)

    async def _close(self, app: web.Application) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        # the token and the time limit for /users/...; refusals (ApiError,
        # 404, 405, bodies that do not decode) become JSON in json_errors
        if not request.path.startswith("/users/"):
            return await handler(request)
        check_token(request, self._token)
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                response = await handler(request)
        except TimeoutError:
            raise ApiError(503, "timeout", f"no answer within {self.limits.timeout_s:g} s", {"Retry-After": "1"}) from None
        response.headers.setdefault(WORKER_HEADER, self.own_url)
        return response

    # -- handlers ----------------------------------------------------------------
    async def handle_recommendations(self, request: web.Request) -> web.StreamResponse:
        user_id = check_id("user_id", request.match_info["user_id"])
        k = parse_k(request.query.get("k"), self.limits.max_k, "query parameter")
        self._check_query(request, {"k"})
        where = await self._where(request, user_id)
        if isinstance(where, web.StreamResponse):
            return where
        return web.Response(body=self.backend.lookup(user_id, where.partition, k), content_type=JSON)

    async def handle_rank(self, request: web.Request) -> web.StreamResponse:
        user_id = check_id("user_id", request.match_info["user_id"])
        self._check_query(request, set())
        body = await self._read_body(request)
        try:
            parsed = _rank_decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise ApiError(400, "invalid_body", f'body must be {{"items": [item ids], "k": N}}: {exc}') from None
        except msgspec.DecodeError as exc:
            raise ApiError(400, "not_json", f"body is not JSON: {exc}") from None
        if not parsed.items:
            raise ApiError(400, "no_items", "items must list at least one item id")
        if len(parsed.items) > self.limits.max_items:
            raise ApiError(400, "too_many_items", f"{len(parsed.items)} items; at most {self.limits.max_items} per request")
        for item_id in parsed.items:
            check_id("item_id", item_id)
        k = parse_k(parsed.k, self.limits.max_k, "body")
        where = await self._where(request, user_id, body)
        if isinstance(where, web.StreamResponse):
            return where
        return web.Response(body=orjson.dumps(self.backend.rank(user_id, where.partition, parsed.items, k)), content_type=JSON)

    async def handle_interests(self, request: web.Request) -> web.StreamResponse:
        user_id = check_id("user_id", request.match_info["user_id"])
        self._check_query(request, set())
        where = await self._where(request, user_id)
        if isinstance(where, web.StreamResponse):
            return where
        found = self.backend.interests(user_id, where.partition)
        if found is None:
            raise ApiError(404, "unknown_user", f"recstream holds no state for user {user_id!r}")
        return web.Response(body=orjson.dumps(found), content_type=JSON)

    # -- helpers -----------------------------------------------------------------
    @staticmethod
    def _check_query(request: web.Request, allowed: set[str]) -> None:
        unknown = sorted(set(request.query) - allowed)
        if unknown:
            raise ApiError(400, "unknown_parameter", f"unknown query parameter(s): {', '.join(unknown)[:200]}")

    async def _read_body(self, request: web.Request) -> bytes:
        cap = self.limits.max_body_bytes
        if request.content_length is not None and request.content_length > cap:
            raise ApiError(413, "body_too_large", f"body is {request.content_length} bytes; at most {cap}")
        body = await request.content.read(cap + 1)
        if len(body) > cap:
            raise ApiError(413, "body_too_large", f"body is over {cap} bytes")
        if not body:
            raise ApiError(400, "not_json", "body is empty; send JSON")
        return body

    async def _where(self, request: web.Request, user_id: str, body: bytes | None = None) -> Local | web.StreamResponse:
        """This worker's partition of the user, or the owner's answer."""
        where = self.backend.locate(user_id)
        if isinstance(where, Local):
            return where
        if isinstance(where, Remote) and request.headers.get(FORWARDED_HEADER) is None and where.url.rstrip("/") != self.own_url:
            return await self._forward(request, where.url, body)
        reason = where.reason if isinstance(where, Unavailable) else "the user's partition is moving between workers"
        raise ApiError(503, "unavailable", reason, {"Retry-After": "1"})

    async def _forward(self, request: web.Request, url: str, body: bytes | None) -> web.Response:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, ssl=self._client_ssl if self._client_ssl is not None else True),
                timeout=aiohttp.ClientTimeout(total=self.limits.timeout_s),
            )
        headers = {FORWARDED_HEADER: self.own_url or "1"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        if body is not None:
            headers["Content-Type"] = JSON
        target = url.rstrip("/") + str(request.rel_url)  # path and query, still encoded
        try:
            async with self._http.request(request.method, target, data=body, headers=headers) as answer:
                payload = await answer.read()
                out = web.Response(body=payload, status=answer.status, content_type=answer.content_type)
                for name in ("Retry-After", WORKER_HEADER):
                    if name in answer.headers:
                        out.headers[name] = answer.headers[name]
                return out
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("cannot forward %s to %s: %s", request.method, url, type(exc).__name__)
            raise ApiError(503, "owner_unreachable", "the worker that owns this user does not answer", {"Retry-After": "1"}) from None


def advertised_url(settings: "Settings") -> str:
    """Where other workers reach this worker's API: ``api_advertised_url``,
    else the metrics host and port (the host name when it listens on every
    interface)."""
    if settings.api_advertised_url:
        return settings.api_advertised_url.rstrip("/")
    import socket

    host = settings.metrics_host
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = socket.gethostname()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    scheme = "https" if settings.api_ssl_certfile is not None else "http"
    return f"{scheme}://{host}:{settings.metrics_port}"
