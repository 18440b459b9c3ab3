"""The serving API's HTTP layer (streams.web.api) against a fake backend:
routes, validation, auth, caps, forwarding; and a hypothesis corpus of bad
paths, bodies and headers that must each get a 4xx with a reason."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from streams.settings import SettingsError, load_settings
from streams.web.api import ApiLimits, Local, Remote, ServingApi, ServingBackend, Unavailable, advertised_url


class FakeBackend:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.where: dict[str, Any] = {}

    def locate(self, user_id: str):
        return self.where.get(user_id, Local(0))

    def lookup(self, user_id: str, partition: int, k: int | None) -> bytes:
        self.calls.append(("lookup", user_id, partition, k))
        if user_id.startswith("new"):
            return orjson.dumps({"user_id": user_id, "items": [], "cold_start": True})
        return orjson.dumps({"user_id": user_id, "items": [{"item_id": f"i{n}"} for n in range(k or 3)]})

    def rank(self, user_id: str, partition: int, items: list[str], k: int | None) -> dict[str, Any]:
        self.calls.append(("rank", user_id, len(items), k))
        return {"user_id": user_id, "items": [{"item_id": i} for i in items[:k]]}

    def interests(self, user_id: str, partition: int):
        return None if user_id.startswith("new") else {"user_id": user_id, "interests": []}

    def serving(self) -> ServingBackend:
        return ServingBackend(self.locate, self.lookup, self.rank, self.interests)


def make_app(backend: FakeBackend, token: str = "", own_url: str = "http://me", limits: ApiLimits | None = None) -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", lambda request: web.json_response({"status": "alive"}))
    ServingApi(backend.serving(), limits or ApiLimits(max_body_bytes=2048, max_items=50, max_k=100, timeout_s=1.0), token=token, own_url=own_url).install(app)
    return app


@contextlib.asynccontextmanager
async def serve(backend: FakeBackend | None = None, **kwargs: Any):
    async with TestClient(TestServer(make_app(backend or FakeBackend(), **kwargs))) as http:
        yield http


@pytest.fixture(scope="module")
def running():
    """One server on its own loop for the sync tests (hypothesis drives them)."""
    loop = asyncio.new_event_loop()
    http = TestClient(TestServer(make_app(FakeBackend())), loop=loop)
    loop.run_until_complete(http.start_server())

    def request(method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        async def go() -> tuple[int, bytes]:
            async with http.request(method, path, **kwargs) as answer:
                return answer.status, await answer.read()

        return loop.run_until_complete(go())

    yield request
    loop.run_until_complete(http.close())
    loop.close()


async def test_lookup_rank_interests():
    async with serve() as client:
        answer = await client.get("/users/alice/recommendations?k=2")
        assert answer.status == 200 and answer.content_type == "application/json"
        assert [i["item_id"] for i in (await answer.json())["items"]] == ["i0", "i1"]
        assert answer.headers["X-Recstream-Worker"] == "http://me"
        answer = await client.get("/users/new-bob/recommendations")
        assert (await answer.json())["cold_start"] is True
        answer = await client.post("/users/alice/rank", json={"items": ["a", "b", "c"], "k": 2})
        assert answer.status == 200 and [i["item_id"] for i in (await answer.json())["items"]] == ["a", "b"]
        assert (await client.get("/users/alice/interests")).status == 200
        answer = await client.get("/users/new-bob/interests")
        assert answer.status == 404 and (await answer.json())["error"] == "unknown_user"


@pytest.mark.parametrize(
    "method,path,body,status,code",
    [
        ("GET", "/users/alice/recommendations?k=0", None, 400, "invalid_k"),
        ("GET", "/users/alice/recommendations?k=101", None, 400, "invalid_k"),
        ("GET", "/users/alice/recommendations?k=abc", None, 400, "invalid_k"),
        ("GET", "/users/alice/recommendations?k=-1", None, 400, "invalid_k"),
        ("GET", "/users/alice/recommendations?top=3", None, 400, "unknown_parameter"),
        ("GET", "/users/" + "x" * 257 + "/recommendations", None, 400, "invalid_user_id"),
        ("POST", "/users/alice/rank", b"not json", 400, "not_json"),
        ("POST", "/users/alice/rank", b"", 400, "not_json"),
        ("POST", "/users/alice/rank", b'{"items": "a"}', 400, "invalid_body"),
        ("POST", "/users/alice/rank", b'{"items": ["a"], "extra": 1}', 400, "invalid_body"),
        ("POST", "/users/alice/rank", b'{"items": []}', 400, "no_items"),
        ("POST", "/users/alice/rank", orjson.dumps({"items": [f"i{n}" for n in range(51)]}), 400, "too_many_items"),
        ("POST", "/users/alice/rank", orjson.dumps({"items": [""]}), 400, "invalid_item_id"),
        ("POST", "/users/alice/rank", orjson.dumps({"items": ["a"], "k": 0}), 400, "invalid_k"),
        ("POST", "/users/alice/rank", orjson.dumps({"items": ["a"], "k": True}), 400, "invalid_body"),
        ("POST", "/users/alice/rank", b"[" * 3000, 413, "body_too_large"),
        ("GET", "/users/alice/rank", None, 405, "method_not_allowed"),
        ("GET", "/users/alice", None, 404, "not_found"),
        ("DELETE", "/users/alice/recommendations", None, 405, "method_not_allowed"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_reason(running, method, path, body, status, code):
    got, text = running(method, path, data=body)
    assert got == status, text
    payload = orjson.loads(text)
    assert payload["error"] == code and payload["detail"]


async def test_token_required_when_set():
    async with serve(token="s3cret") as http:
        assert (await http.get("/users/alice/recommendations")).status == 401
        assert (await http.get("/users/alice/recommendations", headers={"Authorization": "Bearer nope"})).status == 401
        assert (await http.get("/users/alice/recommendations", headers={"Authorization": "Bearer s3cret"})).status == 200
        assert (await http.get("/healthz")).status == 200  # health stays open for probes


def test_token_required_off_loopback(tmp_path):
    with pytest.raises(SettingsError, match="api_token"):
        load_settings(metrics_port=9464, metrics_host="0.0.0.0")
    load_settings(metrics_port=9464, metrics_host="0.0.0.0", api_token="t")
    with pytest.raises(SettingsError, match="api_token"):  # the dashboard's JSON holds user data too
        load_settings(metrics_port=9464, metrics_host="0.0.0.0", api_enabled=False)
    load_settings(metrics_port=9464, metrics_host="::1")
    assert advertised_url(load_settings(metrics_port=9464)) == "http://127.0.0.1:9464"
    assert advertised_url(load_settings(metrics_port=9464, api_advertised_url="http://w1:80/")) == "http://w1:80"


async def test_forwarded_to_the_owner_and_never_twice():
    owner_backend, front_backend = FakeBackend(), FakeBackend()
    async with TestClient(TestServer(make_app(owner_backend, own_url="http://owner"))) as owner:
        owner_url = str(owner.make_url("")).rstrip("/")
        front_backend.where["bob"] = Remote(owner_url)
        front_backend.where["carol"] = Unavailable("rebalancing")
        async with TestClient(TestServer(make_app(front_backend, own_url="http://front"))) as front:
            answer = await front.get("/users/bob/recommendations?k=1")
            assert answer.status == 200 and answer.headers["X-Recstream-Worker"] == "http://owner"
            assert owner_backend.calls == [("lookup", "bob", 0, 1)] and not front_backend.calls
            answer = await front.post("/users/bob/rank", json={"items": ["x", "y"]})
            assert answer.status == 200 and owner_backend.calls[-1] == ("rank", "bob", 2, None)
            answer = await front.get("/users/carol/recommendations")
            assert answer.status == 503 and answer.headers["Retry-After"] == "1"
            # a forwarded request is answered where it lands: no loops
            answer = await front.get("/users/bob/recommendations", headers={"X-Recstream-Forwarded": "x"})
            assert answer.status == 503


async def test_slow_backend_hits_the_time_limit():
    backend = FakeBackend()
    app = make_app(backend, limits=ApiLimits(timeout_s=0.05))

    async def stall(request):
        await asyncio.sleep(1)

    app.router.add_get("/users/{user_id}/slow", stall)
    async with TestClient(TestServer(app)) as http:
        answer = await http.get("/users/alice/slow")
        assert answer.status == 503 and (await answer.json())["error"] == "timeout"


# -- hypothesis corpus ---------------------------------------------------------

segment = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=300)
junk_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=3000),
    junk_json.map(orjson.dumps),
    st.fixed_dictionaries({"items": st.lists(st.text(max_size=300), max_size=60)}, optional={"k": junk_json}).map(orjson.dumps),
)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=100)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(["recommendations", "rank", "interests", "", "rank/x", "recommendations/"]),
    user=segment,
    query=st.dictionaries(st.sampled_from(["k", "K", "top", ""]), st.text(max_size=20), max_size=2),
    method=st.sampled_from(["GET", "POST", "PUT"]),
    body=bodies,
    headers=st.dictionaries(st.sampled_from(["Authorization", "Content-Type", "X-Recstream-Forwarded", "Accept"]), header_values, max_size=3),
)
def test_fuzzed_requests_never_get_a_5xx(running, route, user, query, method, body, headers):
    from urllib.parse import quote, urlencode

    path = f"/users/{quote(user, safe='')}/{route}"
    if query:
        path += "?" + urlencode(query)
    status, text = running(method, path, data=body, headers=headers)
    assert status < 500, (path, status, text)
    if status >= 400:
        payload = orjson.loads(text)
        assert payload["error"] and payload["detail"]
