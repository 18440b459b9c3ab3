"""The serving API on real workers and the embedded broker.

- two workers, 4 partitions: a lookup sent to either worker returns the
  same list as the ``recommendations`` topic, for users of every partition
  (the worker that does not own the user forwards to the one that does);
- ``rank`` orders a user's candidates with the user's interest first;
- after ``forget``: the cold-start list with the flag, never the old list;
- a hypothesis corpus of bad paths, bodies and headers sent to a worker:
  each gets a 4xx with a reason, none a 5xx, and the worker keeps
  processing events.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from urllib.parse import quote

import aiohttp
import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st

from streams.kafka import topics
from streams.kafka.broker import free_port
from streams.ops.demo import latest_lists
from tests.integration.harness import WorkerProcess, event, publish_catalog, publish_events, wait_for_catalog, wait_for_list, wait_until
from tests.integration.test_scale_out import wait_for_assignment
from tests.topic_catalog import catalog_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_700_000_000_000
PARTITIONS = 4


def users_per_partition(count: int) -> list[str]:
    """``count`` users in each of the 4 partitions."""
    by_partition: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    n = 0
    while min(len(v) for v in by_partition.values()) < count:
        user = f"api-user-{n}"
        partition = topics.key_partition(user.encode(), PARTITIONS)
        if len(by_partition[partition]) < count:
            by_partition[partition].append(user)
        n += 1
    return [u for users in by_partition.values() for u in users]


async def get_json(http: aiohttp.ClientSession, url: str, **kwargs) -> tuple[int, dict, dict]:
    async with http.request(kwargs.pop("method", "GET"), url, timeout=aiohttp.ClientTimeout(total=10), **kwargs) as answer:
        return answer.status, orjson.loads(await answer.read()), dict(answer.headers)


async def test_lookup_on_either_worker_equals_the_topic_and_rank_and_forget(settings, tmp_path):
    settings = settings.model_copy(update={"partitions": PARTITIONS})
    ports = [free_port(), free_port()]
    workers = [
        WorkerProcess(settings.model_copy(update={"data_dir": tmp_path / f"w{i}", "metrics_port": port}), tmp_path / f"worker-{i}.log")
        for i, port in enumerate(ports)
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    items = catalog_items()
    try:
        workers[0].start()
        await publish_catalog(settings, items)
        await wait_for_catalog(settings, len(items))
        workers[1].start()
        await wait_for_assignment((workers[0], True), (workers[1], True))
        users = users_per_partition(3)
        topics_of = ["space", "baking", "football"]
        events = []
        for n, user in enumerate(users):
            topic = topics_of[n % 3]
            events += [event(user, f"{topic}-{i}", T0 + n * 100 + i) for i in range(4)]
        await publish_events(settings, events)
        last_ts = {e["user_id"]: e["ts"] for e in events}
        for user in users:
            await wait_for_list(settings, user, lambda r, u=user: r.event_ts == last_ts[u], timeout_s=120)
        on_topic = await latest_lists(settings)
        served_by: Counter[str] = Counter()
        async with aiohttp.ClientSession() as http:
            for user in users:
                expected = msgspec.to_builtins(on_topic[user])
                for base in bases:
                    status, body, headers = await get_json(http, f"{base}/users/{user}/recommendations")
                    assert status == 200, body
                    assert body == expected, (user, base)
                    served_by[headers["X-Recstream-Worker"]] += 1
                status, body, _ = await get_json(http, f"{bases[1]}/users/{user}/recommendations?k=2")
                assert status == 200 and body["items"] == expected["items"][:2]
            assert set(served_by) == set(bases), served_by  # each worker owns some users

            # rank: the user's interest first, unknown items last
            space_user = users[0]
            candidates = ["baking-7", "football-8", "space-8", "no-such-item", "baking-9", "space-9"]
            for base in bases:
                status, body, _ = await get_json(http, f"{base}/users/{space_user}/rank", method="POST", json={"items": candidates})
                assert status == 200, body
                ranked = [i["item_id"] for i in body["items"]]
                assert set(ranked[:2]) == {"space-8", "space-9"}, body
                assert ranked[-1] == "no-such-item" and body["items"][-1]["unknown"] is True
                assert body["cold_start"] is False

            status, body, _ = await get_json(http, f"{bases[0]}/users/{space_user}/interests")
            assert status == 200 and body["interests"][0]["label"].startswith("space"), body

            # a user recstream never saw: the cold-start list, flagged
            status, body, _ = await get_json(http, f"{bases[1]}/users/never-seen/recommendations")
            assert status == 200 and body["cold_start"] is True
            status, body, _ = await get_json(http, f"{bases[1]}/users/never-seen/interests")
            assert status == 404 and body["error"] == "unknown_user"

            # forget: never the old list again
            gone = users[1]
            await publish_events(settings, [event(gone, None, T0 + 10**6, "forget")])

            async def forgotten() -> bool:
                answers = [await get_json(http, f"{base}/users/{gone}/recommendations") for base in bases]
                return all(s == 404 or b.get("cold_start") is True for s, b, _ in answers)

            await wait_until(forgotten, timeout_s=60)
            for base in bases:
                status, body, _ = await get_json(http, f"{base}/users/{gone}/recommendations")
                assert status == 404 or (body["cold_start"] is True and body["interests"] == [])
                assert body.get("trigger_event_id") != on_topic[gone].trigger_event_id
    finally:
        for worker in workers:
            worker.stop()


# -- bad input ------------------------------------------------------------------

segment = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=300)
bodies = st.one_of(
    st.binary(max_size=70_000),
    st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=40),
                 lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12).map(orjson.dumps),
    st.fixed_dictionaries({"items": st.lists(st.text(max_size=300), min_size=0, max_size=1_200)},
                          optional={"k": st.integers(-5, 5_000) | st.text(max_size=5)}).map(orjson.dumps),
)
headers = st.dictionaries(
    st.sampled_from(["Authorization", "Content-Type", "Content-Encoding", "X-Recstream-Forwarded", "Accept"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
    max_size=3,
)


async def test_bad_requests_get_4xx_and_the_worker_keeps_processing(settings, tmp_path):
    port = free_port()
    settings = settings.model_copy(update={"metrics_port": port})
    base = f"http://127.0.0.1:{port}"
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    items = catalog_items()
    statuses: Counter[int] = Counter()
    try:
        worker.start()
        await publish_catalog(settings, items)
        await wait_for_catalog(settings, len(items))
        await publish_events(settings, [event("steady", "space-0", T0)])
        await wait_for_list(settings, "steady", lambda r: r.event_ts == T0)
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as http:

            async def send(method: str, path: str, body: bytes, extra: dict) -> int:
                try:
                    async with http.request(method, base + path, data=body, headers=extra, timeout=aiohttp.ClientTimeout(total=10)) as answer:
                        text = await answer.read()
                        if answer.status >= 400:
                            payload = orjson.loads(text)
                            assert payload["error"] and payload["detail"], text
                        return answer.status
                except aiohttp.ClientResponseError as exc:  # a header aiohttp itself refuses to parse
                    return exc.status

            sent: list[tuple[str, str, bytes, dict]] = []

            @hsettings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            # found on a fresh clone (issue 26): a 400 whose body was not JSON
            @example(route="", user="élève", k="3", method="GET", body=b"", extra={"Content-Encoding": "br"})
            # found with raw sockets (issue 26): a 500
            @example(route="rank", user="alice", k=None, method="POST", body=b"not gzip", extra={"Content-Encoding": "gzip"})
            @given(
                route=st.sampled_from(["recommendations", "rank", "interests", "", "rank/more"]),
                user=segment,
                k=st.none() | st.text(max_size=12),
                method=st.sampled_from(["GET", "POST", "PATCH"]),
                body=bodies,
                extra=headers,
            )
            def corpus(route, user, k, method, body, extra):
                path = f"/users/{quote(user, safe='')}/{route}" + ("" if k is None else f"?k={quote(k, safe='')}")
                sent.append((method, path, body, extra))

            corpus()
            # the requests go out from this loop, interleaved with events
            for n, (method, path, body, extra) in enumerate(sent):
                status = await send(method, path, body, extra)
                statuses[status] += 1
                assert status < 500, (method, path, body[:200], extra, status)
                if n % 20 == 0:
                    await publish_events(settings, [event("steady", f"space-{1 + n // 20}", T0 + 1 + n)])
            assert loop.is_running()
            assert statuses, "no requests sent"
            status, body, _ = await get_json(http, f"{base}/users/steady/recommendations")
            assert status == 200
        last = T0 + 1 + 20 * ((len(sent) - 1) // 20)
        await wait_for_list(settings, "steady", lambda r: r.event_ts == last, timeout_s=60)
        assert worker.process is not None and worker.process.poll() is None
        assert "Error handling request" not in worker.log_text(), worker.log_text()[-3000:]
    finally:
        worker.stop()
