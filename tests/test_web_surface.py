"""The worker's whole HTTP surface (streams.web.health's server: metrics,
health, serving API, dashboard), started alone on loopback with a token set:

- a fixed corpus of raw-socket requests that aiohttp refuses before any
  handler runs, or that break while a handler reads the body (encodings it
  cannot decode, a gzip body that is not gzip, broken chunking, bytes that
  are not UTF-8 in the path, control characters in headers, bad request
  lines): each gets a 4xx whose body is JSON ``{"error", "detail"}``;
- every registered route without the token: a JSON 401, except the open
  ones listed here (a route added later without a decision fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import re
from typing import Any, AsyncIterator

import orjson
import pytest
from aiohttp import web

from streams.web.api import ApiLimits, ServingApi
from streams.web.health import ObservabilityServer, bind_listener
from streams.web.metrics import Readers, WorkerMetrics
from tests.test_api import FakeBackend

TOKEN = "s3cret"
AUTH = b"Authorization: Bearer s3cret\r\n"


@contextlib.asynccontextmanager
async def surface(token: str = TOKEN) -> AsyncIterator[tuple[ObservabilityServer, int]]:
    """The observability server as the worker builds it, with a fake
    serving backend, a user the dashboard knows and a suspected bot."""
    api = ServingApi(FakeBackend().serving(), ApiLimits(max_body_bytes=2048), token=token, own_url="http://me")
    server = ObservabilityServer(
        bind_listener("127.0.0.1", 0),
        WorkerMetrics(Readers(counters=lambda: {"events": 1})),
        lambda: [],
        api=api,
        user_view=lambda user_id: {"user_id": user_id, "list": None, "interests": []} if user_id == "alice" else None,
        dashboard_extras=lambda: {"suspected_bots": ["bot-1"]},
        token=token,
    )
    await server.start()
    try:
        yield server, server.address[1]
    finally:
        await server.stop()


async def exchange(port: int, request: bytes | tuple[bytes, ...]) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` (parts with a pause between them: the server reads
    the first before the rest arrives) and read one response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for n, part in enumerate(request if isinstance(request, tuple) else (request,)):
            if n:
                await asyncio.sleep(0.05)
            writer.write(part)
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
        head_only = (request if isinstance(request, bytes) else request[0]).startswith(b"HEAD ")
        length = 0 if head_only else int(headers.get("content-length", "0"))  # a HEAD answer names a length it never sends
        body = await asyncio.wait_for(reader.readexactly(length), 5)
        return int(status_line.split()[1]), headers, body
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def post(path: str, body: bytes, *headers: bytes, auth: bool = True) -> bytes:
    head = b"".join(h + b"\r\n" for h in headers)
    return (f"POST {path} HTTP/1.1\r\nHost: w\r\n".encode() + (AUTH if auth else b"") + head
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def chunked(path: str, *chunks: bytes, extra: bytes = b"") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: w\r\n".encode() + AUTH + extra + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(chunks)


RANK = "/users/alice/rank"
GOOD_JSON = b'{"items": ["a", "b"]}'

# name -> raw request; (status, error code) where the answer is fixed, else None (any 4xx)
CORPUS: dict[str, tuple[bytes | tuple[bytes, ...], tuple[int, str] | None]] = {
    # the case hypothesis found on a fresh clone (issue 26): a non-ASCII user, br on a GET
    "get-br-non-ascii-user": (b"GET /users/%C3%A9l%C3%A8ve/?k=3 HTTP/1.1\r\nHost: w\r\nContent-Encoding: br\r\n\r\n", (415, "unsupported_content_encoding")),
    "get-br": (b"GET /users/alice/recommendations HTTP/1.1\r\nHost: w\r\n" + AUTH + b"Content-Encoding: br\r\n\r\n", (415, "unsupported_content_encoding")),
    "get-br-dashboard": (b"GET /dashboard HTTP/1.1\r\nHost: w\r\nContent-Encoding: br\r\n\r\n", (415, "unsupported_content_encoding")),
    "get-br-metrics": (b"GET /metrics HTTP/1.1\r\nHost: w\r\nContent-Encoding: br\r\n\r\n", (415, "unsupported_content_encoding")),
    "post-br": (post(RANK, b"\x1b\x00\x00", b"Content-Encoding: br"), (415, "unsupported_content_encoding")),
    "post-br-no-token": (post(RANK, b"\x1b\x00\x00", b"Content-Encoding: br", auth=False), (415, "unsupported_content_encoding")),
    "post-zstd": (post(RANK, b"abcd", b"Content-Encoding: zstd"), None),  # 415 without a zstd decoder, else 400
    "post-unknown-encoding": (post(RANK, b"abcd", b"Content-Encoding: x-nonsense"), (400, "not_json")),  # aiohttp passes it as is
    "post-gzip-not-gzip": (post(RANK, b"not gzip at all", b"Content-Encoding: gzip"), (400, "bad_content_encoding")),
    "post-gzip-truncated": (post(RANK, gzip.compress(GOOD_JSON)[:12], b"Content-Encoding: gzip"), None),
    "post-deflate-not-deflate": (post(RANK, b"not deflate!", b"Content-Encoding: deflate"), (400, "bad_content_encoding")),
    "post-gzip-not-gzip-chunked": (chunked(RANK, b"5\r\nnot g\r\n4\r\nzip!\r\n0\r\n\r\n", extra=b"Content-Encoding: gzip\r\n"), (400, "bad_content_encoding")),
    "chunk-size-not-hex": (chunked(RANK, b"zz\r\nabc\r\n0\r\n\r\n"), (400, "bad_request")),
    "chunk-longer-than-its-size": (chunked(RANK, b"3\r\nabcdef\r\n0\r\n\r\n"), (400, "bad_request")),
    "chunk-broken-after-the-first": ((chunked(RANK, b"5\r\n{\"ite\r\n"), b"zz\r\nq\r\n0\r\n\r\n"), None),
    "chunk-size-huge": (chunked(RANK, b"ffffffffffffffffffff\r\nab\r\n0\r\n\r\n"), None),
    "chunked-and-content-length": (chunked(RANK, b"2\r\n{}\r\n0\r\n\r\n", extra=b"Content-Length: 4\r\n"), None),
    "transfer-encoding-unknown": (chunked(RANK, b"2\r\n{}\r\n0\r\n\r\n", extra=b"Transfer-Encoding: gzip\r\n"), None),
    "content-length-not-a-number": (b"POST /users/alice/rank HTTP/1.1\r\nHost: w\r\n" + AUTH + b"Content-Length: 1x\r\n\r\n{}", None),
    "content-length-negative": (b"POST /users/alice/rank HTTP/1.1\r\nHost: w\r\n" + AUTH + b"Content-Length: -2\r\n\r\n{}", None),
    "content-length-too-large": (b"POST /users/alice/rank HTTP/1.1\r\nHost: w\r\n" + AUTH + b"Content-Length: 99999999\r\n\r\n{}", (413, "body_too_large")),
    "path-not-utf8": (b"GET /users/\xff\xfe/recommendations HTTP/1.1\r\nHost: w\r\n" + AUTH + b"\r\n", (400, "bad_url")),
    "path-not-utf8-dashboard": (b"GET /dashboard/api/user/\xc3\x28 HTTP/1.1\r\nHost: w\r\n" + AUTH + b"\r\n", (400, "bad_url")),
    "path-with-space": (b"GET /users/a b/recommendations HTTP/1.1\r\nHost: w\r\n\r\n", None),
    "target-broken-absolute-url": (b"GET http://[::1/users/alice/recommendations HTTP/1.1\r\nHost: w\r\n\r\n", None),
    "header-control-character": (b"GET /users/alice/recommendations HTTP/1.1\r\nHost: w\r\nX-Note: a\x01b\r\n\r\n", (400, "bad_request")),
    "header-nul": (b"GET /metrics HTTP/1.1\r\nHost: w\r\nX-Note: a\x00b\r\n\r\n", (400, "bad_request")),
    "header-name-with-space": (b"GET /healthz HTTP/1.1\r\nHost: w\r\nBad Name: x\r\n\r\n", None),
    "header-without-colon": (b"GET /healthz HTTP/1.1\r\nHost: w\r\nnocolon\r\n\r\n", None),
    "header-line-too-long": (b"GET /healthz HTTP/1.1\r\nHost: w\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n", None),
    "header-folded": (b"GET /healthz HTTP/1.1\r\nHost: w\r\nX-A: a\r\n folded\r\n\r\n", None),
    "request-line-garbage": (b"GARBAGE\r\n\r\n", (400, "bad_request_line")),
    "request-line-bad-method": (b"G(T /healthz HTTP/1.1\r\nHost: w\r\n\r\n", (400, "bad_request_line")),
    "request-line-bad-version": (b"GET /healthz HTTP/9.9\r\nHost: w\r\n\r\n", (400, "bad_request_line")),
    "request-line-too-long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: w\r\n\r\n", None),
    "tls-on-the-http-port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n", None),
}


@pytest.mark.parametrize("name", list(CORPUS))
async def test_raw_bad_requests_get_a_json_4xx(name: str) -> None:
    request, expected = CORPUS[name]
    async with surface() as (_, port):
        status, headers, body = await exchange(port, request)
        assert 400 <= status < 500, (name, status, body[:300])
        assert headers.get("content-type", "").startswith("application/json"), (name, headers, body[:300])
        payload = orjson.loads(body)
        assert isinstance(payload["error"], str) and payload["error"], payload
        assert isinstance(payload["detail"], str) and payload["detail"], payload
        if expected is not None:
            assert (status, payload["error"]) == expected, (name, status, payload)
        # the server still answers (the refusal closed one connection, not the listener)
        status, _, body = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n")
        assert status == 200 and orjson.loads(body)["status"] == "alive"


async def test_the_good_requests_of_the_corpus_pass() -> None:
    """The corpus' refusals come from what is broken, not from the framing
    around it: the same requests, well formed, get a 200."""
    async with surface() as (_, port):
        for request in (
            post(RANK, GOOD_JSON),
            post(RANK, gzip.compress(GOOD_JSON), b"Content-Encoding: gzip"),
            chunked(RANK, b"%x\r\n" % len(GOOD_JSON) + GOOD_JSON + b"\r\n0\r\n\r\n"),
            b"GET /users/%C3%A9l%C3%A8ve/recommendations?k=3 HTTP/1.1\r\nHost: w\r\n" + AUTH + b"\r\n",
        ):
            status, _, body = await exchange(port, request)
            assert status == 200, (request[:80], body[:300])


# -- the token on every route ----------------------------------------------------

# (method, route as registered) that answer without the token; nothing in them is about a user
OPEN_ROUTES = {
    ("GET", "/metrics"), ("HEAD", "/metrics"),
    ("GET", "/healthz"), ("HEAD", "/healthz"),
    ("GET", "/ready"), ("HEAD", "/ready"),
    ("GET", "/dashboard"), ("HEAD", "/dashboard"),
    ("GET", "/dashboard/"), ("HEAD", "/dashboard/"),
}


def registered_routes(server: ObservabilityServer) -> list[tuple[str, str]]:
    app = server.web_app()
    routes = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        routes.append((route.method, info.get("path") or info["formatter"]))
    return routes


def concrete(path: str) -> str:
    """A route's path with its variables filled: a real user that exists."""
    return re.sub(r"\{[^}]+\}", "alice", path)


async def test_every_route_but_the_open_ones_needs_the_token() -> None:
    async with surface() as (server, port):
        routes = registered_routes(server)
        assert {p for _, p in routes} >= {"/users/{user_id}/recommendations", "/dashboard/api/user/{user_id}", "/dashboard/api/summary"}
        assert OPEN_ROUTES <= set(routes), "an open route is gone: update OPEN_ROUTES"
        checked = 0
        for method, path in routes:
            body = GOOD_JSON if method == "POST" else b""
            head = f"{method} {concrete(path)} HTTP/1.1\r\nHost: w\r\nContent-Length: {len(body)}\r\n".encode()
            status, headers, answer = await exchange(port, head + b"\r\n" + body)
            if (method, path) in OPEN_ROUTES:
                assert status == 200, (method, path, status)
                continue
            assert status == 401, f"{method} {path} answers {status} without the token: add auth, or list it in OPEN_ROUTES"
            assert headers["www-authenticate"].startswith("Bearer")
            if method != "HEAD":
                assert orjson.loads(answer)["error"] == "unauthorized"
            # and with the token it answers (the 401 was the token's, not the route's)
            status, _, answer = await exchange(port, head + AUTH + b"\r\n" + body)
            assert status != 401 and status < 500, (method, path, status, answer[:200])
            checked += 1
        assert checked >= 5


async def test_the_dashboard_json_holds_user_data_behind_the_token() -> None:
    async with surface() as (_, port):
        for path in ("/dashboard/api/user/alice", "/dashboard/api/summary", "/dashboard/api/user/nobody", "/no/such/route"):
            status, _, body = await exchange(port, f"GET {path} HTTP/1.1\r\nHost: w\r\n\r\n".encode())
            assert status == 401 and b"alice" not in body and b"bot-1" not in body, (path, body)
        status, _, body = await exchange(port, b"GET /dashboard/api/summary HTTP/1.1\r\nHost: w\r\n" + AUTH + b"\r\n")
        assert status == 200 and orjson.loads(body)["suspected_bots"] == ["bot-1"]
        status, _, body = await exchange(port, b"GET /dashboard/api/user/nobody HTTP/1.1\r\nHost: w\r\n" + AUTH + b"\r\n")
        assert status == 404 and orjson.loads(body)["error"] == "unknown_user"
        status, _, body = await exchange(port, b"GET /dashboard HTTP/1.1\r\nHost: w\r\n\r\n")
        assert status == 200 and b"Authorization" in body  # the page asks for the token and sends it


async def test_without_a_token_everything_is_open_and_refusals_stay_json() -> None:
    async with surface(token="") as (_, port):
        status, _, body = await exchange(port, b"GET /dashboard/api/user/alice HTTP/1.1\r\nHost: w\r\n\r\n")
        assert status == 200 and orjson.loads(body)["user_id"] == "alice"
        for request, code in (
            (b"GET /no/such/route HTTP/1.1\r\nHost: w\r\n\r\n", (404, "not_found")),
            (b"POST /metrics HTTP/1.1\r\nHost: w\r\nContent-Length: 0\r\n\r\n", (405, "method_not_allowed")),
            (b"POST /dashboard/api/summary HTTP/1.1\r\nHost: w\r\nContent-Length: 0\r\n\r\n", (405, "method_not_allowed")),
        ):
            status, _, body = await exchange(port, request)
            assert (status, orjson.loads(body)["error"]) == code, body


async def test_a_bug_is_still_a_500_in_json_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A client error is not a 500, but a bug is not hidden as a 4xx either."""
    server = ObservabilityServer(bind_listener("127.0.0.1", 0), WorkerMetrics(Readers()), lambda: [])

    def broken_app(self: Any = server) -> web.Application:
        app = ObservabilityServer.web_app(server)

        async def boom(request: web.Request) -> web.Response:
            raise ZeroDivisionError("a bug")

        app.router.add_get("/boom", boom)
        return app

    server.web_app = broken_app  # type: ignore[method-assign]
    await server.start()
    try:
        status, headers, body = await exchange(server.address[1], b"GET /boom HTTP/1.1\r\nHost: w\r\n\r\n")
        assert status == 500 and orjson.loads(body)["error"] == "internal_error"
        assert "ZeroDivisionError" in caplog.text
    finally:
        await server.stop()
