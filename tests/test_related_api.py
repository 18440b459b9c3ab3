"""The related-items route's HTTP layer (streams.web.related) against a fake
lookup: parameters, defaults, the token and JSON refusals."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from models.related import KINDS as MODEL_KINDS
from streams.web.api import ApiLimits
from streams.web.related import KINDS, ApiRoutes, RelatedItemsApi


class FakeRelated:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    def __call__(self, item_id: str, k: int, kind: str) -> dict[str, Any] | None:
        self.calls.append((item_id, k, kind))
        if item_id.startswith("gone"):
            return None
        return {"item_id": item_id, "kind": kind, "items": [{"item_id": f"r{n}"} for n in range(k)], "graph_epoch": 7}


@contextlib.asynccontextmanager
async def serve(related: FakeRelated, token: str = ""):
    app = web.Application()
    ApiRoutes([RelatedItemsApi(related, ApiLimits(max_k=100), token=token, own_url="http://me", default_k=4)]).install(app)
    async with TestClient(TestServer(app)) as http:
        yield http


async def get(http: TestClient, path: str, **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
    async with http.get(path, **kwargs) as answer:
        return answer.status, orjson.loads(await answer.read()), answer.headers


def test_the_route_lists_the_kinds_the_model_computes():
    assert KINDS == MODEL_KINDS


async def test_defaults_and_parameters():
    related = FakeRelated()
    async with serve(related) as http:
        status, body, headers = await get(http, "/items/sku%2F1/related")
        assert status == 200 and body["kind"] == "blend" and len(body["items"]) == 4
        assert headers["X-Recstream-Worker"] == "http://me"
        status, body, _ = await get(http, "/items/sku-2/related?k=2&kind=often_after")
        assert status == 200 and len(body["items"]) == 2
        assert related.calls == [("sku/1", 4, "blend"), ("sku-2", 2, "often_after")]


async def test_refusals_are_json_4xx():
    related = FakeRelated()
    async with serve(related) as http:
        for path, status, code in [
            ("/items/gone-1/related", 404, "unknown_item"),
            ("/items/sku/related?kind=nearest", 400, "invalid_kind"),
            ("/items/sku/related?k=0", 400, "invalid_k"),
            ("/items/sku/related?k=101", 400, "invalid_k"),
            ("/items/sku/related?k=ten", 400, "invalid_k"),
            ("/items/sku/related?user=u", 400, "unknown_parameter"),
            (f"/items/{quote('x' * 300)}/related", 400, "invalid_item_id"),
        ]:
            got, body, _ = await get(http, path)
            assert (got, body["error"]) == (status, code), path
            assert body["detail"]
        assert [c[0] for c in related.calls] == ["gone-1"]  # nothing invalid reached the lookup


async def test_token_required_when_set():
    related = FakeRelated()
    async with serve(related, token="s3cret") as http:
        status, body, headers = await get(http, "/items/sku/related")
        assert status == 401 and body["error"] == "unauthorized" and "Bearer" in headers["WWW-Authenticate"]
        status, _, _ = await get(http, "/items/sku/related", headers={"Authorization": "Bearer wrong"})
        assert status == 401
        status, body, _ = await get(http, "/items/sku/related", headers={"Authorization": "Bearer s3cret"})
        assert status == 200 and body["item_id"] == "sku"
        assert related.calls == [("sku", 4, "blend")]
