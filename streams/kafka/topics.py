"""Names and configurations of recstream's topics."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.settings import Settings

EVENTS = "events"
ITEMS = "items"
RECOMMENDATIONS = "recommendations"
DEAD_LETTERS = "events-dlq"
# each events partition's graph ops and progress, read by every worker of
# the app (models.global_graph); partition p carries events partition p's
# records. Named per app (graph_deltas_topic), like the changelogs: the ops
# are the app's state, and a rebuild beside a running app must not read or
# write the old app's
GRAPH_DELTAS = "graph-deltas"

DAY_MS = 24 * 3600 * 1000

# Tables (Faust names them; their changelogs are `<app_id>-<table>-changelog`).
USER_STATE_TABLE = "user-state"
ITEM_VECTORS_TABLE = "item-vectors"
ITEM_GRAPH_TABLE = "item-graph"

# Partitions recstream creates `items` with, and the item table's changelog
# has: every worker keeps the whole item table (a GlobalTable), and
# faust-streaming's GlobalTable is only reliable with a single changelog
# partition. An `items` created otherwise (a producer's auto-created topic)
# works too: its every partition's writes go to that changelog partition
# (streams.state.tables.acting_for).
ITEMS_PARTITIONS = 1


@dataclass(frozen=True)
class TopicSpec:
    """One topic as recstream creates it."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The input, output and dead-letter topics with their configs (and the
    held-lists topic of a rebuild, when one is set)."""
    specs = [
        TopicSpec(settings.topic(EVENTS), settings.partitions, {"retention.ms": str(30 * DAY_MS)}),
        TopicSpec(settings.topic(ITEMS), ITEMS_PARTITIONS, {"cleanup.policy": "compact"}),
        TopicSpec(settings.topic(RECOMMENDATIONS), settings.partitions, {"cleanup.policy": "compact"}),
        TopicSpec(settings.topic(DEAD_LETTERS), settings.partitions, {"retention.ms": str(30 * DAY_MS)}),
    ]
    # always created: RECSTREAM_GLOBAL_GRAPH can be switched on later
    specs.append(TopicSpec(graph_deltas_topic(settings), settings.partitions, {"retention.ms": str(30 * DAY_MS)}))
    if settings.held_lists_topic:
        specs.append(TopicSpec(settings.held_lists_topic, settings.partitions, {"cleanup.policy": "compact"}))
    return specs


TABLES = (USER_STATE_TABLE, ITEM_GRAPH_TABLE, ITEM_VECTORS_TABLE)


def changelog_topics(settings: Settings, app_id: str | None = None) -> list[str]:
    """The changelog topics of an app's tables (``app_id``: another app's)."""
    app = app_id if app_id is not None else settings.app_id
    return [f"{app}-{table}-changelog" for table in TABLES]


def graph_deltas_topic(settings: Settings, app_id: str | None = None) -> str:
    """The app's graph-deltas topic, ``<app_id>-graph-deltas`` (``app_id``: another app's)."""
    return f"{app_id if app_id is not None else settings.app_id}-{GRAPH_DELTAS}"


def changelog_topic(settings: Settings, table: str) -> str:
    """Name Faust gives a table's changelog topic."""
    return f"{settings.app_id}-{table}-changelog"


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as aiokafka and
    the Java client use) puts ``key`` in: where a user's events, state and
    list live when producers key events by user id."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions
