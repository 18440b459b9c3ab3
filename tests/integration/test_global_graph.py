"""The global graph through the broker: a co-engagement seen in one
partition reaches the lists of another's users, and an idle partition is
moved on by ticks instead of stalling the others."""

from __future__ import annotations

import pytest

from schemas import TICK_KEY, EventType, decode_event
from streams.kafka import topics
from streams.kafka.clients import read_records_to_end
from tests.integration.harness import WorkerProcess, event, publish_catalog, publish_events, wait_for_catalog, wait_for_list
from tests.integration.test_recovery import offline_run
from tests.topic_catalog import catalog_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_700_000_000_000
SECOND = 1000


def users_in(partition: int, partitions: int, count: int, prefix: str) -> list[str]:
    found, n = [], 0
    while len(found) < count:
        name = f"{prefix}{n}"
        if topics.key_partition(name.encode(), partitions) == partition:
            found.append(name)
        n += 1
    return found


async def test_a_co_engagement_in_one_partition_reaches_another_partitions_users(settings, tmp_path):
    settings = settings.model_copy(update={"global_graph": True})
    assert settings.partitions == 2
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        await _cross_partition(settings)
    finally:
        worker.stop()


async def _cross_partition(settings) -> None:
    await publish_catalog(settings, catalog_items())
    await wait_for_catalog(settings, len(catalog_items()))
    x, y = "space-1", "baking-2"  # far apart in meaning: only the graph links them
    a_users = users_in(0, 2, 4, "a")
    (b_user,) = users_in(1, 2, 1, "b")
    stream = []
    for n, user in enumerate(a_users):
        stream += [event(user, x, T0 + n * 10 * SECOND, "purchase"), event(user, y, T0 + n * 10 * SECOND + SECOND, "purchase")]
    # well past the delay (2 epochs of 1 s) after partition 0's last event;
    # partition 0 is idle from then on: a tick has to move it on
    b_ts = T0 + 120 * SECOND
    await publish_events(settings, stream)
    await publish_events(settings, [event(b_user, x, b_ts, "purchase")])
    listed = await wait_for_list(settings, b_user, lambda r: r.event_ts == b_ts, timeout_s=90)
    by_item = {i.item_id: i for i in listed.items}
    assert y in by_item, [i.item_id for i in listed.items]
    assert (by_item[y].reason, by_item[y].because) == ("often_after", x)

    # partition 0 got a tick (the worker wrote it) and the offline replay of
    # the topic, ticks included, gives the very same list
    ticks = [r for r in [rec async for rec in read_records_to_end(settings, settings.topic(topics.EVENTS))]
             if r.key == TICK_KEY.encode() and r.partition == 0]
    assert ticks and decode_event(ticks[0].value).type is EventType.TICK
    run = await offline_run(settings)
    assert run.lists[b_user] == [(i.item_id, i.score) for i in listed.items]


async def test_an_idle_partition_releases_an_hour_of_held_events_in_one_tick(settings, tmp_path):
    """Partition 1 has one early event and goes idle; partition 0's users
    have events a minute of event time apart for an hour. Each is more than
    the delay past the one before, so a tick only as far as partition 0's
    first held event released one event per tick interval (60 ticks, a
    minute); a tick to the newest time partition 0 has received releases
    them all."""
    settings = settings.model_copy(update={"global_graph": True})
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        await publish_catalog(settings, catalog_items())
        await wait_for_catalog(settings, len(catalog_items()))
        items = [item["item_id"] for item in catalog_items()]
        (idle_user,) = users_in(1, 2, 1, "idle")
        busy = users_in(0, 2, 3, "busy")
        await publish_events(settings, [event(idle_user, items[0], T0, "purchase")])
        stream = [event(busy[n % 3], items[n % len(items)], T0 + n * 60 * SECOND, "click") for n in range(60)]
        await publish_events(settings, stream)
        last = stream[-1]
        listed = await wait_for_list(settings, last["user_id"], lambda r: r.event_ts == last["ts"], timeout_s=45)
        assert listed.items
        ticks = [r for r in [rec async for rec in read_records_to_end(settings, settings.topic(topics.EVENTS))]
                 if r.key == TICK_KEY.encode() and r.partition == 1]
        assert 1 <= len(ticks) <= 3, len(ticks)  # the old ticker needed one per event
        # every list of partition 0 is the replay's (ticks included)
        run = await offline_run(settings)
        assert run.lists[last["user_id"]] == [(i.item_id, i.score) for i in listed.items]
    finally:
        worker.stop()


async def test_the_feed_reads_every_record_already_on_the_topic(settings):
    """A worker (re)started on a graph-deltas topic that already holds
    records takes all of them, from every partition, then follows new ones."""
    import asyncio

    settings = settings.model_copy(update={"global_graph": True})
    from models.global_graph import DeltaBoard, DeltaRecord, EpochParams, GraphOp, encode_delta
    from streams.kafka.admin import ensure_topics
    from streams.kafka.clients import publish
    from streams.state.graph_deltas import DeltaFeed

    await ensure_topics(settings)
    topic = topics.graph_deltas_topic(settings)

    def record(partition: int, offset: int) -> tuple[bytes, bytes]:
        op = GraphOp(offset, offset, f"i{offset}", offset * 1000, [], [])
        return str(partition).encode(), encode_delta(DeltaRecord(partition, offset + 1, offset * 1000, offset, [op]))

    # records in one partition only, several batches: the feed must not
    # start at the end, nor drop the partitions that are still empty
    await publish(settings, topic, [record(0, n) for n in range(30)])
    board = DeltaBoard(settings.partitions, EpochParams())
    woken = []

    async def on_records() -> None:
        woken.append(1)

    feed = DeltaFeed(settings, board, on_records)
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.caught_up.wait(), 60)
        assert board.held_ops() == 30 and board.progress(0) == 30
        await publish(settings, topic, [record(1, 0)])  # the empty partition is followed too

        async def followed() -> bool:
            return board.progress(1) == 1

        from tests.integration.harness import wait_until

        await wait_until(followed, timeout_s=30)
        assert woken and feed.bad_records == 0
    finally:
        task.cancel()
