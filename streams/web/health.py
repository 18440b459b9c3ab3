"""The worker's HTTP endpoints: ``/metrics``, ``/healthz``, ``/ready`` and
the operators' ``/dashboard`` (:mod:`streams.web.dashboard`).

Served by a small aiohttp server (aiohttp is already a Faust dependency) run
as a ``mode.Service`` that the Faust ``Worker`` starts *before* the app, on
the worker's own event loop. Not Faust's web server: it starts only after
table recovery (so ``/ready`` could never answer 503 during recovery and
``/healthz`` would be down exactly while a long recovery runs), and it
serves Faust's own views too (table contents, router), which a metrics port
should not expose. The listening socket is bound before the worker starts,
so a port already in use stops the command with a clear error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from typing import Any, Callable, Iterable

import faust
from aiohttp import web
from mode import Service

from streams.web.api import ServingApi
from streams.web.auth import token_required
from streams.web.dashboard import Extras, UserView, add_routes
from streams.web.errors import JsonErrorRunner, json_errors
from streams.web.metrics import CONTENT_TYPE, WorkerMetrics
from streams.state.tables import count_partition_keys

log = logging.getLogger(__name__)

Readiness = Callable[[], "list[str]"]


class EndpointError(RuntimeError):
    """The metrics/health endpoint cannot listen where it was told to."""


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` > 0)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait out TIME_WAIT
        sock.bind(address)
        sock.listen(64)
        sock.setblocking(False)
    except OSError as exc:
        raise EndpointError(
            f"metrics endpoint cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "each worker on a host needs its own RECSTREAM_METRICS_PORT (0 = off)"
        ) from exc
    return sock


def readiness_problems(app: faust.App, encoder_loaded: Callable[[], bool]) -> list[str]:
    """Why the worker is not ready to process events yet (empty: ready)."""
    if app.should_stop:
        return ["worker stopping"]
    if not app.started:
        return ["worker starting"]
    problems = []
    recovery = app.tables.recovery
    if not recovery.completed.is_set():
        problems.append("table recovery not completed yet")
    elif app.in_recovery:
        problems.append("table recovery in progress (after a rebalance)")
    if app.rebalancing:
        problems.append("consumer group rebalancing")
    if not encoder_loaded():
        problems.append("encoder model loading")
    return problems


async def consumer_lag(app: faust.App, topics: set[str], timeout_s: float = 1.0) -> dict[tuple[str, int], int]:
    """Per assigned partition of ``topics``: highwater - fetch position.

    Both are the consumer's own (aiokafka ``highwater()`` from the last fetch
    response, ``position()`` the next offset to fetch), so this costs no
    broker request. Records fetched but still waiting in Faust's buffers or in
    the agent's current batch are not counted: they are bounded by the
    buffers. A partition not fetched yet (no highwater) is left out. The
    embedded broker (Tansu) may report a highwater one batch short; a
    negative difference reads 0.
    """
    if not app.started:
        return {}
    consumer = app.consumer
    lags: dict[tuple[str, int], int] = {}
    for tp in sorted(consumer.assignment()):
        if tp.topic not in topics:
            continue
        try:
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = await asyncio.wait_for(consumer.position(tp), timeout_s)
        except Exception as exc:  # noqa: BLE001 - revoked meanwhile (AssertionError), not positioned yet (timeout)
            log.debug("no lag for %s: %s", tp, type(exc).__name__)
            continue
        if position is None:
            continue
        lags[(tp.topic, tp.partition)] = max(0, int(highwater) - int(position))
    return lags


def lag_refresher(metrics: WorkerMetrics, app: faust.App, topics: set[str]) -> Callable[[], Any]:
    async def refresh_consumer_lag() -> None:
        metrics.set_consumer_lag(await consumer_lag(app, topics))

    return refresh_consumer_lag


def users_refresher(
    metrics: WorkerMetrics, table: faust.Table, partitions: Callable[[], "Iterable[int] | None"], every_s: float = 10.0
) -> Callable[[], Any]:
    """Count the keys of the table's owned partitions, at most every
    ``every_s`` (a count walks the keys: cheap for thousands, not for
    millions, so scrapes in between reuse the last count)."""
    counted_at = [float("-inf")]

    async def refresh_users_in_state() -> None:
        owned = partitions()
        if owned is None or time.monotonic() - counted_at[0] < every_s:
            return
        counts = {}
        for partition in sorted(owned):
            count = count_partition_keys(table, partition)
            if count is not None:
                counts[partition] = count
            await asyncio.sleep(0)  # one partition at a time between other work
        metrics.set_users_in_state(counts)
        counted_at[0] = time.monotonic()

    return refresh_users_in_state


class ObservabilityServer(Service):
    """``/metrics`` (Prometheus text), ``/healthz`` (alive) and ``/ready``
    (200 once table recovery is done and the worker processes, else 503 with
    the reasons), on a socket bound beforehand."""

    def __init__(
        self,
        sock: socket.socket,
        metrics: WorkerMetrics,
        readiness: Readiness,
        api: "ServingApi | None" = None,
        ssl_context: ssl.SSLContext | None = None,
        user_view: UserView | None = None,
        dashboard_extras: Extras | None = None,
        token: str = "",
        **kwargs: Any,
    ) -> None:
        self._sock = sock
        self._token = token
        self.api = api
        self._ssl_context = ssl_context
        self.metrics = metrics
        self.readiness = readiness
        self.user_view = user_view
        self.dashboard_extras = dashboard_extras
        self._runner: web.AppRunner | None = None
        self._started_at = time.monotonic()
        super().__init__(**kwargs)

    @property
    def address(self) -> tuple[str, int]:
        return self._sock.getsockname()[:2]

    def web_app(self) -> web.Application:
        # outermost first: every refusal as JSON, then the token on every
        # route but the open ones (streams.web.auth.OPEN_PATHS)
        routes = web.Application(middlewares=[json_errors, token_required(self._token)])
        routes.router.add_get("/metrics", self.handle_metrics)
        routes.router.add_get("/healthz", self.handle_healthz)
        routes.router.add_get("/ready", self.handle_ready)
        if self.api is not None:
            self.api.install(routes)  # /users/... (streams.web.api)
        add_routes(routes, self.metrics.registry, self.metrics.refresh, self.user_view, self.dashboard_extras)
        return routes

    async def on_start(self) -> None:
        # access_log=None: a scrape every few seconds would flood the worker log;
        # JsonErrorRunner: what aiohttp refuses before a handler runs is JSON too
        self._runner = JsonErrorRunner(self.web_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock, ssl_context=self._ssl_context).start()
        host, port = self.address
        scheme = "https" if self._ssl_context is not None else "http"
        routes = "/metrics, /healthz, /ready, /dashboard" + (", /users/..." if self.api is not None else "")
        log.info("metrics and health endpoints on %s://%s:%d (%s)", scheme, host, port, routes)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def handle_metrics(self, request: web.Request) -> web.Response:
        body = await self.metrics.scrape()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def handle_healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "pid": os.getpid(), "uptime_s": round(time.monotonic() - self._started_at, 1)})

    async def handle_ready(self, request: web.Request) -> web.Response:
        problems = self.readiness()
        if problems:
            return web.json_response({"ready": False, "reasons": problems}, status=503)
        return web.json_response({"ready": True})
