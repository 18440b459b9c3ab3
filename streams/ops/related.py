"""``recstream related ITEM``: what a running worker answers on
``GET /items/{item_id}/related`` (README, "Serving API"), as a table or JSON.

The catalog and the graph live in the workers' memory, so the command asks
one over HTTP, as ``recstream status --metrics-url`` reads a worker's
metrics; any worker answers for any item.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from rich.table import Table


class RelatedError(RuntimeError):
    """The worker did not answer, or refused the request."""


async def fetch_related(
    base_url: str,
    item_id: str,
    k: int | None = None,
    kind: str = "blend",
    token: str = "",
    ssl_context: ssl.SSLContext | None = None,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """The worker's JSON answer. Raises :class:`RelatedError` with the
    worker's own reason for a refusal (``unknown_item``, ``unauthorized``...)."""
    import aiohttp

    query = {"kind": kind, **({"k": str(k)} if k is not None else {})}
    url = f"{base_url.rstrip('/')}/items/{quote(item_id, safe='')}/related?{urlencode(query)}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
            async with http.get(url, headers=headers, ssl=ssl_context if ssl_context is not None else True) as response:
                body = await response.read()
                status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise RelatedError(f"no answer from the worker at {base_url} ({type(exc).__name__}: {exc}); is it running with RECSTREAM_METRICS_PORT set?") from exc
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RelatedError(f"{base_url} answered HTTP {status} with a body that is not JSON") from None
    if status != 200:
        reason = answer.get("error", "?") if isinstance(answer, dict) else "?"
        detail = answer.get("detail", "") if isinstance(answer, dict) else ""
        raise RelatedError(f"{base_url} answered HTTP {status} {reason}: {detail}")
    return answer


def related_table(answer: dict[str, Any]) -> Table:
    """The answer as a table: rank, item, title, score, reason, and the
    numbers behind the reason."""
    graph = answer.get("graph")
    where = f"graph epoch {answer.get('graph_epoch')} (partition {graph['partition']}'s view)" if graph else "no graph yet"
    table = Table(title=f"related to {answer['item_id']} ({answer['kind']}; {where})")
    for name in ("#", "item", "title", "score", "reason", "similarity", "co-engagements"):
        table.add_column(name, justify="right" if name in ("#", "score", "similarity", "co-engagements") else "left")
    for rank, item in enumerate(answer["items"], 1):
        table.add_row(
            str(rank),
            item["item_id"],
            item.get("title") or "",
            f"{item['score']:.4f}",
            item["reason"],
            "" if item.get("similarity") is None else f"{item['similarity']:.3f}",
            "" if item.get("co_engagements") is None else f"{item['co_engagements']:.2f}",
        )
    if not answer["items"]:
        table.add_row("", "(none)", "", "", "", "", "")
    return table
