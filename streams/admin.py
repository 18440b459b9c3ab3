"""Topic administration through the Kafka admin API (portable to Apache Kafka)."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.clients import client_kwargs
from streams.settings import Settings
from streams.topics import TopicSpec, topic_specs

log = logging.getLogger(__name__)


class TopicError(RuntimeError):
    """A topic exists with a layout recstream cannot work with."""


async def ensure_topics(settings: Settings, specs: list[TopicSpec] | None = None) -> list[str]:
    """Create recstream's topics that do not exist yet; return the created names.

    Creating them up front matters: a producer that writes first would get
    the broker's auto-created default layout (wrong partitions, no compaction).
    """
    specs = specs if specs is not None else topic_specs(settings)
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        await _check_layout(admin, [s for s in specs if s.name in existing])
        missing = [s for s in specs if s.name not in existing]
        created = []
        for spec in missing:
            try:
                await admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, settings.replication_factor, topic_configs=spec.config)]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another process won the race; fine
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    finally:
        await admin.close()


async def _check_layout(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    """Refuse to run on topics whose partition counts break co-partitioning."""
    if not specs:
        return
    described = await admin.describe_topics([s.name for s in specs])
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    wrong = [f"{s.name} has {counts.get(s.name)} partitions, expected {s.partitions}" for s in specs if counts.get(s.name) != s.partitions]
    if wrong:
        raise TopicError(
            "; ".join(wrong)
            + ". Set RECSTREAM_PARTITIONS to match, or recreate the topics (`recstream topics create` on an empty cluster)."
        )
