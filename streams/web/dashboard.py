"""The operators' dashboard: ``/dashboard`` on the observability server.

One static HTML page (``static/dashboard.html``: plain JavaScript and SVG, no
build step, nothing fetched from the internet) that polls two JSON
endpoints of the same server:

- ``/dashboard/api/summary``: the worker's metrics, read from its Prometheus
  registry (the numbers ``/metrics`` serves), plus the suspected bots;
- ``/dashboard/api/user/{id}``: one user's latest list with reasons and
  their interest weights over event time (the ``recstream explain`` picture),
  from what this worker holds.

Both JSON endpoints hold user data (the summary lists suspected bots), so
with ``RECSTREAM_API_TOKEN`` set they need the token like ``/users/...``
(:mod:`streams.web.auth`); the page itself is open, asks for the token once
when an endpoint answers 401, keeps it in the tab's ``sessionStorage`` and
sends it as ``Authorization: Bearer``.

The page computes rates, latency quantiles and the rolling HR@10 from the
differences between successive polls.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry

from streams.web.errors import ApiError

UserView = Callable[[str], "dict[str, Any] | None"]
Extras = Callable[[], "dict[str, Any]"]


def page() -> bytes:
    """The dashboard's HTML (package data)."""
    return resources.files("streams.web").joinpath("static/dashboard.html").read_bytes()


def summary(registry: CollectorRegistry, extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """The numbers the page draws, from the registry's current samples."""
    totals: dict[str, float] = {}
    dead_letters: dict[str, float] = {}
    online_hits: dict[str, float] = {}
    lag: list[dict[str, Any]] = []
    latency: list[list[float]] = []
    for family in registry.collect():
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "recstream_dead_letters_total":
                dead_letters[labels["reason"]] = value
            elif name == "recstream_online_hits_total":
                online_hits[labels["k"]] = value
            elif name == "recstream_consumer_lag":
                lag.append({"topic": labels["topic"], "partition": int(labels["partition"]), "lag": value})
            elif name == "recstream_list_latency_seconds_bucket":
                latency.append([_bound(labels["le"]), value])
            elif not labels:
                totals[name] = value
    return {
        "events": totals.get("recstream_events_total", 0.0),
        "lists": totals.get("recstream_lists_total", 0.0),
        "catalog_items": totals.get("recstream_catalog_items"),
        "dead_letters": dead_letters,
        "lag": sorted(lag, key=lambda r: (r["topic"], r["partition"])),
        "latency_buckets": sorted(latency),
        "latency_count": totals.get("recstream_list_latency_seconds_count", 0.0),
        "online_events": totals.get("recstream_online_events_total", 0.0),
        "online_hits": online_hits,
        "bots_flagged": totals.get("recstream_bots_flagged_total", 0.0),
        "bot_discounted": totals.get("recstream_bot_discounted_events_total", 0.0),
        "bot_repeats": totals.get("recstream_bot_repeat_engagements_total", 0.0),
        **(extras or {}),
    }


def _bound(le: str) -> float:
    return float("inf") if le == "+Inf" else float(le)


def _json_safe(buckets: Iterable[list[float]]) -> list[list[Any]]:
    return [["+Inf" if b == float("inf") else b, n] for b, n in buckets]


def add_routes(
    routes: web.Application,
    registry: CollectorRegistry,
    refresh: Callable[[], Any],
    user_view: UserView | None = None,
    extras: Extras | None = None,
) -> None:
    """``/dashboard`` and its JSON endpoints on ``routes``."""
    html = page()

    async def handle_page(request: web.Request) -> web.Response:
        return web.Response(body=html, content_type="text/html", charset="utf-8")

    async def handle_summary(request: web.Request) -> web.Response:
        await refresh()
        data = summary(registry, extras() if extras else None)
        data["latency_buckets"] = _json_safe(data["latency_buckets"])
        return web.json_response(data)

    async def handle_user(request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        view = user_view(user_id) if user_view else None
        if view is None:
            raise ApiError(404, "unknown_user", "no state for this user on this worker")
        return web.json_response(view)

    routes.router.add_get("/dashboard", handle_page)
    routes.router.add_get("/dashboard/", handle_page)
    routes.router.add_get("/dashboard/api/summary", handle_summary)
    routes.router.add_get("/dashboard/api/user/{user_id}", handle_user)
