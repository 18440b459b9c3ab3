"""Partitions chosen by the producer, on the real broker.

A librdkafka producer left on its default partitioner (consistent_random:
CRC32 of the key) puts some users' events in another partition than Kafka's
default partitioner (murmur2), which is where recstream keeps their state and
where ``forget`` and the API look. Such events must reach ``events-dlq`` with
reason ``wrong_partition`` and never be folded; an offline replay of the topic
folds what the live worker folded; and a producer-sent ``tick`` gets a reason
that says tick is internal.

(``forget`` of users produced with murmur2 alone: tests/integration/test_forget.py.)
"""

from __future__ import annotations

import base64
import zlib
from collections import defaultdict

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from models.interest import decode_state
from schemas import InvalidRecord, Limits, decode_event
from streams.kafka import topics
from streams.kafka.clients import client_kwargs, group_lag, read_records_to_end
from streams.kafka.partitioning import decode_event_in_partition
from streams.ops.demo import latest_lists
from streams.ops.forget import forget_users
from tests.integration.harness import dead_letters, event, publish_catalog, publish_events, wait_for_catalog, wait_for_list, wait_until
from tests.integration.test_forget import last_values
from tests.integration.test_recovery import offline_run
from tests.topic_catalog import catalog_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_700_000_000_000


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka's default for a keyed record (consistent_random)."""
    return zlib.crc32(key) % partitions


async def send_to(settings, records: list[tuple[bytes, bytes, int]]) -> None:
    """``(key, value, partition)`` with the partition chosen here, as a
    librdkafka producer chooses it."""
    producer = AIOKafkaProducer(acks="all", **client_kwargs(settings))
    await producer.start()
    try:
        for key, value, partition in records:
            await producer.send_and_wait(settings.topic(topics.EVENTS), key=key, value=value, partition=partition)
    finally:
        await producer.stop()


async def test_crc32_partitioned_events_are_dead_lettered_and_never_folded(settings, worker):
    partitions = settings.partitions
    murmur2 = topics.key_partition
    # users CRC32 puts elsewhere, one into each partition; `grace` also has an
    # event from a correct producer (a service with two kinds of producer)
    crc_only, mixed = ["carol", "heidi"], "grace"
    for user in [*crc_only, mixed]:
        assert crc32_partition(user.encode(), partitions) != murmur2(user.encode(), partitions), user
    assert {crc32_partition(u.encode(), partitions) for u in crc_only} == set(range(partitions))

    worker.start()
    await publish_catalog(settings, catalog_items())
    await wait_for_catalog(settings, len(catalog_items()))
    wrong = [
        event(user, item, T0 + n)
        for n, (user, item) in enumerate([("carol", "space-0"), ("carol", "space-1"), ("heidi", "baking-0"), ("grace", "football-0"),
                                          ("grace", "football-1"), ("heidi", "baking-1")])
    ]
    await send_to(settings, [(e["user_id"].encode(), orjson.dumps(e), crc32_partition(e["user_id"].encode(), partitions)) for e in wrong])
    # a tick from a producer, in its key's partition: only the type is wrong
    fake_tick = {"event_id": "fake-tick", "user_id": "mallory", "type": "tick", "ts": T0 + 20}
    right = [event("alice", "space-2", T0 + 10), event("bob", "baking-2", T0 + 11), event("grace", "baking-3", T0 + 12), fake_tick]
    await publish_events(settings, right)  # aiokafka: murmur2

    async def done() -> bool:
        lag = await group_lag(settings, settings.app_id, settings.topic(topics.EVENTS))
        return lag.end >= len(wrong) + len(right) and lag.lag == 0 and len(await dead_letters(settings)) >= len(wrong) + 1

    await wait_until(done, timeout_s=120, interval_s=1.0)
    for user, ts in [("alice", T0 + 10), ("bob", T0 + 11), ("grace", T0 + 12)]:
        await wait_for_list(settings, user, lambda r, ts=ts: r.event_ts == ts)

    letters = await dead_letters(settings)
    assert len(letters) == len(wrong) + 1, [(letter.reason, letter.detail) for letter in letters]
    by_event = {orjson.loads(base64.b64decode(letter.value_b64))["event_id"]: letter for letter in letters}
    for sent in wrong:
        letter = by_event[sent["event_id"]]
        key = sent["user_id"].encode()
        crc, owner = crc32_partition(key, partitions), murmur2(key, partitions)
        assert letter.reason == "wrong_partition"
        assert letter.source.partition == crc
        assert f"partition {crc} of {partitions}" in letter.detail and f"belongs in partition {owner}" in letter.detail
        assert "partitioner=murmur2_random" in letter.detail
    tick_letter = by_event["fake-tick"]
    assert tick_letter.reason == "unknown_type" and "internal" in tick_letter.detail

    # nothing of the wrong-partition events was folded: no state and no list
    # for the CRC32-only users, and grace's state holds her one right event
    lists = await latest_lists(settings)
    assert set(lists) == {"alice", "bob", "grace"}
    changelog = topics.changelog_topic(settings, topics.USER_STATE_TABLE)
    states = await last_values(settings, changelog)
    assert not set(crc_only) & set(states) and "mallory" not in states
    grace = decode_state(states["grace"])
    assert grace.event_count == 1 and [h.item_id for h in grace.history] == ["baking-3"]

    # an offline replay of the topic, with the worker's decoding, folds what
    # the live worker folded; without the partition check it would not
    limits = Limits(max_record_bytes=settings.max_record_bytes, max_text_chars=settings.max_text_chars)
    checked: dict[int, list] = defaultdict(list)
    unchecked: dict[int, list] = defaultdict(list)
    async for record in read_records_to_end(settings, settings.topic(topics.EVENTS)):
        try:
            unchecked[record.partition].append((record.offset, decode_event(record.value, key=record.key or b"")))
            checked[record.partition].append((record.offset, decode_event_in_partition(record.value, record.key or b"", record.partition,
                                                                                       partitions, limits)))
        except InvalidRecord:
            continue
    replayed = await offline_run(settings, checked)
    assert {u: [(i.item_id, i.score) for i in r.items] for u, r in lists.items()} == replayed.lists
    assert set(crc_only) <= set((await offline_run(settings, unchecked)).lists), "the wrong-partition events would make lists"

    # forget of the mixed user: their only state and list go (the CRC32
    # events left nothing behind in the other partition to come back)
    await forget_users(settings, [mixed])

    async def forgotten() -> bool:
        values = await last_values(settings, settings.topic(topics.RECOMMENDATIONS))
        return mixed in values and values[mixed] is None

    await wait_until(forgotten, timeout_s=60)
    assert (await last_values(settings, changelog))[mixed] is None
    assert mixed not in await latest_lists(settings)
