"""Related items (``GET /items/{item_id}/related``, ``recstream related``) on
a real worker and the embedded broker, one worker for the whole module:

- after a stream where users go from X to Y, Y is in X's ``often_after``
  with the co-engagement count behind it, and the answer names its epoch;
- a new item whose text is close to X's is in X's ``similar`` before
  anyone engages it;
- a deleted item (a null value on ``items``) disappears from every kind,
  and asking for it is a JSON 404 ``unknown_item``, as for an unknown item;
- the token is required; the command line prints the same answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import aiohttp
import orjson
import pytest

from streams.kafka import topics
from streams.kafka.broker import free_port
from streams.settings import Settings, load_settings, settings_env
from tests.integration.harness import WorkerProcess, event, publish_catalog, publish_events, publish_json, wait_for_catalog, wait_for_list, wait_until
from tests.topic_catalog import catalog_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_700_000_000_000
TOKEN = "related-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
X, Y = "space-0", "football-3"  # different topics: Y is never X's by text
TWIN = {"item_id": "space-twin", "title": "Telescope guide to observing the planets and their moons", "categories": ["space"]}


@pytest.fixture(scope="module")
def served(broker, tmp_path_factory):
    """One worker with the API on a loopback port, a token, and the topic
    catalog (the events come in the tests, in order)."""
    work = tmp_path_factory.mktemp("related")
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    settings = load_settings(
        broker=broker.url, topic_prefix=f"r{tag}.", app_id=f"test-related-{tag}", data_dir=work / "data", partitions=2,
        session_timeout_s=6.0, batch_window_ms=20, device="cpu", metrics_port=port, api_token=TOKEN,
    )
    worker = WorkerProcess(settings, work / "worker.log")
    worker.start()
    yield settings, f"http://127.0.0.1:{port}", worker
    worker.stop()


async def related(base: str, item: str, query: str = "", headers: dict | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/items/{item}/related{query}", headers=AUTH if headers is None else headers,
                            timeout=aiohttp.ClientTimeout(total=10)) as answer:
            return answer.status, orjson.loads(await answer.read())


def item_ids(body: dict) -> list[str]:
    return [i["item_id"] for i in body["items"]]


async def test_often_after_similar_and_deleted(served):
    settings, base, worker = served
    items = catalog_items()
    await publish_catalog(settings, items)
    await wait_for_catalog(settings, len(items))

    # an item the catalog holds, before any event: similar answers, the graph has nothing yet
    status, body = await related(base, X, "?kind=similar&k=5")
    assert status == 200, body
    assert len(body["items"]) == 5 and X not in item_ids(body)
    assert all(i["item_id"].startswith("space-") and i["reason"] == "similar_text" for i in body["items"]), body

    # users in both partitions go from X to Y (and on to an unrelated item)
    users = [f"hop-{n}" for n in range(8)]
    assert {topics.key_partition(u.encode(), settings.partitions) for u in users} == {0, 1}
    events = []
    for n, user in enumerate(users):
        ts = T0 + n * 10_000
        events += [event(user, X, ts), event(user, Y, ts + 1_000), event(user, f"baking-{n}", ts + 2_000)]
    await publish_events(settings, events)
    for user in users:
        await wait_for_list(settings, user, lambda r, u=user: r.trigger_event_id.startswith(f"{u}-click-baking"), timeout_s=120)

    async def often_after() -> dict | None:
        status, body = await related(base, X, "?kind=often_after&k=20")
        assert status == 200, body
        return body if Y in item_ids(body) else None

    body = await wait_until(often_after, timeout_s=60)
    first = body["items"][0]
    assert first["item_id"] == Y and first["reason"] == "often_after", body
    # one adjacent co-engagement adds 1: at least one user's hop, at most all of them
    assert 1.0 <= first["co_engagements"] <= len(users) + 0.01, body
    assert isinstance(body["graph_epoch"], int) and body["graph_epoch"] == body["graph"]["epoch"] >= 0
    assert X not in item_ids(body)
    status, blend = await related(base, X)
    assert status == 200 and len(blend["items"]) == settings.top_k and blend["kind"] == "blend"
    reasons = {i["item_id"]: i["reason"] for i in blend["items"]}
    assert reasons.get(Y) == "often_after" and "similar_text" in reasons.values(), blend

    # a new item close to X by text: similar at once, nobody engaged it
    await publish_catalog(settings, [TWIN])
    await wait_for_catalog(settings, len(items) + 1)

    async def twin_similar() -> dict | None:
        status, body = await related(base, X, "?kind=similar&k=3")
        return body if status == 200 and TWIN["item_id"] in item_ids(body) else None

    body = await wait_until(twin_similar, timeout_s=60)
    assert item_ids(body)[0] == TWIN["item_id"], body
    status, body = await related(base, TWIN["item_id"], "?kind=blend&k=3")  # and it answers itself (cold start by text)
    assert status == 200 and item_ids(body)[0] == X, body

    # Y deleted from the catalog: gone from every kind, and itself unknown
    await publish_json(settings, topics.ITEMS, [(Y, None)])

    async def y_gone() -> bool:
        answers = [await related(base, X, f"?kind={kind}&k=50") for kind in ("often_after", "blend", "similar")]
        return all(status == 200 and Y not in item_ids(body) for status, body in answers)

    await wait_until(y_gone, timeout_s=60)
    status, body = await related(base, Y)
    assert status == 404 and body["error"] == "unknown_item" and body["detail"], body

    # the command line asks the same worker and prints the same answer
    env = {**os.environ, **settings_env(settings)}
    printed = subprocess.run([sys.executable, "-m", "streams.cli", "related", X, "--kind", "often_after", "-k", "20", "--json"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    cli = orjson.loads(printed.stdout)
    status, direct = await related(base, X, "?kind=often_after&k=20")
    assert cli["item_id"] == X and item_ids(cli) == item_ids(direct) and Y not in item_ids(cli)
    table = subprocess.run([sys.executable, "-m", "streams.cli", "related", X], env=env, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and "related to space-0" in table.stdout, table.stdout + table.stderr
    assert worker.process is not None and worker.process.poll() is None


async def test_refusals_unknown_item_and_token(served):
    settings, base, _ = served
    status, body = await related(base, "no-such-item")
    assert status == 404 and body["error"] == "unknown_item"
    status, body = await related(base, X, headers={})
    assert status == 401 and body["error"] == "unauthorized"
    status, body = await related(base, X, headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, body = await related(base, X, "?kind=nearest")
    assert status == 400 and body["error"] == "invalid_kind"
    env = {**os.environ, **settings_env(settings.model_copy(update={"api_token": ""}))}
    refused = subprocess.run([sys.executable, "-m", "streams.cli", "related", X], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "401" in refused.stderr and "unauthorized" in refused.stderr, refused.stderr
