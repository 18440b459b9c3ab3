"""Topic administration against the real broker (no worker needed)."""

from __future__ import annotations

import pytest

from streams.kafka.admin import describe_topics, ensure_topics
from streams.kafka.topics import topic_specs
from tests.integration.harness import event, publish_events

pytestmark = pytest.mark.integration


async def test_create_is_idempotent_and_describe_reports_layout_and_records(settings):
    created = await ensure_topics(settings)
    assert sorted(created) == sorted(s.name for s in topic_specs(settings))
    assert await ensure_topics(settings) == []
    await publish_events(settings, [event("u1", "i1", 1_700_000_000_000), event("u2", "i2", 1_700_000_000_001)])
    described = {t.name: t for t in await describe_topics(settings)}
    events = described[settings.topic("events")]
    assert events.exists and events.partitions == settings.partitions and events.end_offset == 2
    assert events.group_lag == 2  # no worker has consumed them
    assert described[settings.topic("recommendations")].config.get("cleanup.policy") == "compact"


async def test_another_partition_count_is_adopted_not_refused(settings):
    # tolerant setup (tests/integration/test_topic_setup.py): the topics' count wins
    await ensure_topics(settings)
    assert await ensure_topics(settings.model_copy(update={"partitions": settings.partitions + 1})) == []
