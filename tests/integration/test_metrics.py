"""A worker's /healthz, /ready and /metrics on the real broker: not ready
before table recovery, ready after; the counters, the dead letters by
reason, the latency histogram and the gauges match what was published."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.kafka import topics
from streams.kafka.broker import free_port
from streams.kafka.clients import publish
from tests.integration.harness import WorkerProcess, dead_letters, event, publish_catalog, publish_events, wait_for_catalog
from tests.topic_catalog import catalog_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_700_000_000_000
USERS = ("m-alice", "m-bob", "m-carol")
RECOVERY_DONE = ("Resuming flow", "Restore complete")  # Faust logs one of these before it resumes the streams


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str] | None:
    """``(status, body)``, or ``None`` while nothing listens."""
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            return response.status, await response.text()
    except (aiohttp.ClientConnectionError, asyncio.TimeoutError):
        return None


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name -> sorted labels -> value."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def test_worker_serves_readiness_health_and_metrics(settings, tmp_path):
    port = free_port()
    settings = settings.model_copy(update={"metrics_port": port})
    base = f"http://127.0.0.1:{port}"
    items = catalog_items()[:12]
    await publish_catalog(settings, items)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start(wait_ready=False)
    try:
        async with aiohttp.ClientSession() as http:
            # -- readiness: 503 (or nothing listening yet) until recovery is done
            before: list[tuple[int, str] | None] = []
            deadline = time.monotonic() + 180
            while True:
                answer = await get(http, f"{base}/ready")
                if answer is not None and answer[0] == 200:
                    break
                before.append(answer)
                assert worker.process is not None and worker.process.poll() is None, worker.log_text()[-4000:]
                assert time.monotonic() < deadline, f"never ready; last answer {answer}\n{worker.log_text()[-4000:]}"
                await asyncio.sleep(0.1)
            log_at_ready = worker.log_text()
            assert any(line in log_at_ready for line in RECOVERY_DONE), log_at_ready[-4000:]
            assert orjson.loads(answer[1]) == {"ready": True}
            not_ready = [a for a in before if a is not None]
            assert not_ready, "the endpoint never answered before it was ready"
            assert {status for status, _ in not_ready} == {503}
            for _, body in not_ready:
                assert orjson.loads(body)["ready"] is False and orjson.loads(body)["reasons"]
            status, body = await get(http, f"{base}/healthz")
            assert status == 200 and orjson.loads(body)["status"] == "alive"

            # -- traffic: valid events for three users and malformed records
            await wait_for_catalog(settings, len(items))
            valid = [
                event(user, items[(u * 4 + n) % len(items)]["item_id"], T0 + n * 1000)
                for u, user in enumerate(USERS) for n in range(4)
            ]
            valid.append(event(USERS[0], None, T0 + 9_000, kind="search", text="planets and stars"))
            await publish_events(settings, valid)
            bad = [
                (b"m-dave", b"not json at all"),
                (b"m-dave", b"{still not json"),
                (b"m-erin", orjson.dumps({"event_id": "e1", "user_id": "m-erin", "type": "click", "item_id": "x", "ts": T0 // 1000})),
                (b"m-erin", orjson.dumps({"event_id": "e2", "user_id": "m-erin", "type": "teleport", "item_id": "x", "ts": T0})),
            ]
            await publish(settings, settings.topic(topics.EVENTS), bad)
            published = len(valid) + len(bad)

            # -- metrics once everything is processed (the users count is refreshed every 10 s)
            deadline = time.monotonic() + 120
            while True:
                status, text = await get(http, f"{base}/metrics") or (0, "")
                assert status == 200
                m = parse(text)
                events_total = m["recstream_events_total"].get((), 0)
                users = sum(m["recstream_users_in_state"].values())
                lag = {labels: v for labels, v in m["recstream_consumer_lag"].items() if dict(labels)["topic"] == settings.topic(topics.EVENTS)}
                if events_total >= published and users == len(USERS) and len(lag) == settings.partitions and not any(lag.values()):
                    break
                assert time.monotonic() < deadline, f"metrics never settled:\n{text}"
                await asyncio.sleep(0.5)
    finally:
        worker.stop()

    assert events_total == published
    reasons = {dict(labels)["reason"]: v for labels, v in m["recstream_dead_letters_total"].items()}
    assert reasons == {"not_json": 2, "bad_timestamp": 1, "unknown_type": 1}
    assert reasons == Counter(letter.reason for letter in await dead_letters(settings))
    # one list per touched user and batch: at least one per user, each a latency sample
    assert m["recstream_list_latency_seconds_count"][()] >= len(USERS)
    assert m["recstream_lists_total"][()] == m["recstream_list_latency_seconds_count"][()]
    assert m["recstream_list_latency_seconds_bucket"][(("le", "+Inf"),)] == m["recstream_list_latency_seconds_count"][()]
    assert m["recstream_batch_size_sum"][(("agent", "events"),)] == published
    assert m["recstream_batch_size_sum"][(("agent", "items"),)] == len(items)
    assert m["recstream_items_encoded_total"][()] == len(items)
    assert m["recstream_catalog_items"][()] == len(items)
    # the catalog and the search query ran through the model
    assert m["recstream_encoder_texts_total"][()] == len(items) + 1
    assert m["recstream_encode_seconds_count"][()] >= 1
    assert m["recstream_encoder_cache_misses_total"][()] >= len(items) + 1
    assert sum(m["recstream_users_in_state"].values()) == len(USERS)
    assert {dict(labels)["topic"] for labels in m["recstream_consumer_lag"]} == {settings.topic(topics.EVENTS), settings.topic(topics.ITEMS)}
    assert m["recstream_metrics_refresh_failed"][()] == 0
