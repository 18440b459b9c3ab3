"""Topic setup that does not trip over producers (on the real broker).

A producer that writes before the worker has created its topics gets the
broker's auto-created layout. ``items`` works with any partition count, an
existing ``events`` decides the partition count (recommendations and state
follow it), and only topics that disagree with each other are refused.
The embedded broker has no CreatePartitions, so each layout is created up
front, as an auto-create would leave it.
"""

from __future__ import annotations

import logging

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.kafka import topics
from streams.kafka.admin import TopicError, ensure_topics, setup_topics
from streams.kafka.clients import client_kwargs, end_offsets
from tests.integration.harness import WorkerProcess, event, publish_catalog, publish_events, wait_for_catalog, wait_for_list
from tests.topic_catalog import catalog_items

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000


async def create_topic(settings, name: str, partitions: int) -> None:
    """What an auto-create (or another tool) leaves behind: ``name`` with ``partitions``."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def partition_count(settings, name: str) -> int:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        return len((await admin.describe_topics([name]))[0]["partitions"])
    finally:
        await admin.close()


async def test_an_existing_events_topic_is_adopted_and_the_rest_follows(settings, caplog):
    await create_topic(settings, settings.topic(topics.EVENTS), 3)
    with caplog.at_level(logging.WARNING, logger="streams.kafka.admin"):
        setup = await setup_topics(settings)  # RECSTREAM_PARTITIONS=2
    assert setup.settings.partitions == 3
    assert setup.adopted and "adopting 3" in setup.adopted and setup.adopted in caplog.text
    assert settings.topic(topics.EVENTS) not in setup.created
    for name in (topics.RECOMMENDATIONS, topics.DEAD_LETTERS):
        assert await partition_count(settings, settings.topic(name)) == 3
    # a second run (a producer, the CLI) agrees and creates nothing
    assert await ensure_topics(settings) == []


async def test_items_may_have_any_partition_count(settings):
    await create_topic(settings, settings.topic(topics.ITEMS), 5)
    setup = await setup_topics(settings)
    assert setup.adopted is None and setup.settings.partitions == settings.partitions
    assert await partition_count(settings, settings.topic(topics.ITEMS)) == 5


async def test_topics_that_disagree_are_refused_with_how_to_fix(settings):
    await create_topic(settings, settings.topic(topics.EVENTS), 3)
    await create_topic(settings, settings.topic(topics.RECOMMENDATIONS), 2)
    with pytest.raises(TopicError) as refused:
        await setup_topics(settings)
    message = str(refused.value)
    assert "disagree" in message and "has 3" in message and "has 2" in message
    assert "recreate the others with 3 partitions" in message


async def test_events_that_disagree_with_stored_state_are_refused(settings):
    # the app's user-state changelog holds state for 2 partitions; events now has 3
    await create_topic(settings, topics.changelog_topic(settings, topics.USER_STATE_TABLE), 2)
    await create_topic(settings, settings.topic(topics.EVENTS), 3)
    with pytest.raises(TopicError, match=r"\(stored state\) has 2.*`recstream rebuild`"):
        await setup_topics(settings)


@pytest.mark.slow
async def test_worker_runs_on_auto_created_items_and_events_layouts(settings, tmp_path):
    """The issue's report: items auto-created with several partitions before
    the worker, and an events topic whose count is not RECSTREAM_PARTITIONS."""
    await create_topic(settings, settings.topic(topics.ITEMS), 4)
    await create_topic(settings, settings.topic(topics.EVENTS), 3)
    items = catalog_items()
    await publish_catalog(settings, items)  # keyed: spread over the 4 partitions
    assert len(await end_offsets(settings, settings.topic(topics.ITEMS))) == 4
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        # every item of every items partition reaches the catalog (and its one changelog partition)
        await wait_for_catalog(settings, len(items))
        users = [f"setup-{n}" for n in range(6)]  # over the 3 events partitions
        await publish_events(settings, [event(user, f"space-{i}", T0 + i * 1000) for user in users for i in range(3)])
        for user in users:
            record = await wait_for_list(settings, user, lambda r: len(r.items) == settings.top_k, timeout_s=120)
            assert {i.item_id for i in record.items} <= {item["item_id"] for item in items}
        vectors = await end_offsets(settings, topics.changelog_topic(settings, topics.ITEM_VECTORS_TABLE))
        assert len(vectors) == 1
        assert await partition_count(settings, settings.topic(topics.RECOMMENDATIONS)) == 3
        assert await partition_count(settings, topics.changelog_topic(settings, topics.USER_STATE_TABLE)) == 3
        assert "adopting 3" in worker.log_text()
    finally:
        worker.stop()
