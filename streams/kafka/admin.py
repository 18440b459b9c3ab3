"""Topic administration through the Kafka admin API (portable to Apache Kafka)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError, for_code

from streams.kafka.clients import client_kwargs, end_offsets, group_lag
from streams.settings import Settings
from streams.kafka.topics import EVENTS, ITEM_GRAPH_TABLE, ITEMS, RECOMMENDATIONS, USER_STATE_TABLE, TopicSpec, changelog_topic, graph_deltas_topic, topic_specs

log = logging.getLogger(__name__)


class TopicError(RuntimeError):
    """A topic exists with a layout recstream cannot work with."""


@dataclass(frozen=True)
class TopicSetup:
    """What :func:`setup_topics` found and did."""

    settings: Settings  # ``partitions`` as adopted from the existing topics
    created: list[str]
    adopted: str | None = None  # the warning logged when the partition count was adopted


async def ensure_topics(settings: Settings, specs: list[TopicSpec] | None = None) -> list[str]:
    """Create recstream's topics that do not exist yet; return the created names
    (see :func:`setup_topics`, which also says which partition count holds)."""
    return (await setup_topics(settings, specs)).created


async def setup_topics(settings: Settings, specs: list[TopicSpec] | None = None) -> TopicSetup:
    """Check the existing topics, adopt their partition count, create the rest.

    Creating topics up front matters: a producer that writes first gets the
    broker's auto-created default layout. That is tolerated where it can be:

    - ``items`` may have any partition count (the catalog is global: every
      worker's catalog agent reads its partitions, and the item table's
      changelog has one partition whatever ``items`` has);
    - an existing ``events`` (or ``recommendations``, or stored state: the
      changelogs of the partitioned tables) whose partition count differs from
      ``RECSTREAM_PARTITIONS`` is adopted with a warning, and what is created
      follows it;
    - only topics that disagree with each other are refused, with how to fix it.
    """
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        settings, adopted = await _adopt_layout(admin, settings, existing)
        specs = specs if specs is not None else topic_specs(settings)
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
        return TopicSetup(settings, created, adopted)
    finally:
        await admin.close()


async def adopted_settings(settings: Settings) -> Settings:
    """``settings`` with the partition count the existing topics have (no topic is created)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        return (await _adopt_layout(admin, settings, set(await admin.list_topics())))[0]
    finally:
        await admin.close()


def copartitioned_topics(settings: Settings) -> dict[str, str]:
    """Topics that must share the partition count of ``events`` -> what they hold:
    ``recommendations`` (and a rebuild's held lists) and the changelogs of the
    tables partitioned like ``events`` (the stored state)."""
    names = {settings.topic(EVENTS): "input", settings.topic(RECOMMENDATIONS): "output"}
    if settings.held_lists_topic:
        names[settings.held_lists_topic] = "held lists"
    if settings.global_graph:
        names[graph_deltas_topic(settings)] = "graph deltas"
    for table in (USER_STATE_TABLE, ITEM_GRAPH_TABLE):
        names[changelog_topic(settings, table)] = "stored state"
    return names


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    if not names:
        return {}
    return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(names)}


async def _adopt_layout(admin: AIOKafkaAdminClient, settings: Settings, existing: set[str]) -> tuple[Settings, str | None]:
    """The settings with the partition count the existing co-partitioned
    topics agree on; :class:`TopicError` when they disagree."""
    roles = copartitioned_topics(settings)
    counts = await _partition_counts(admin, sorted(n for n in roles if n in existing))
    if len(set(counts.values())) > 1:
        found = ", ".join(f"{name} ({roles[name]}) has {n}" for name, n in sorted(counts.items()))
        events = counts.get(settings.topic(EVENTS))
        fix = (
            f"Keep `{settings.topic(EVENTS)}` ({events} partitions) and recreate the others with {events} partitions: "
            "delete them and start the worker, which creates them to match (a deleted changelog drops the stored state; "
            "`recstream rebuild` restores it from the events)"
            if events is not None
            else "Delete the topics with the odd partition count and start the worker, which creates them to match"
        )
        raise TopicError(
            f"existing topics disagree on their partition count: {found}. They must all have the same count. "
            f"{fix}; or use fresh topics and state with another RECSTREAM_TOPIC_PREFIX and RECSTREAM_APP_ID."
        )
    if not counts:
        return settings, None
    partitions = next(iter(counts.values()))
    if partitions == settings.partitions:
        return settings, None
    source = settings.topic(EVENTS) if settings.topic(EVENTS) in counts else min(counts)
    message = (
        f"{source} exists with {partitions} partitions, RECSTREAM_PARTITIONS is {settings.partitions}: "
        f"adopting {partitions} (recommendations and state follow it; set RECSTREAM_PARTITIONS={partitions} to silence this)"
    )
    log.warning(message)
    return settings.model_copy(update={"partitions": partitions}), message


@dataclass(frozen=True)
class TopicDescription:
    """What exists on the broker for one of recstream's topics."""

    name: str
    exists: bool
    partitions: int
    config: dict[str, str]
    end_offset: int  # records written (summed over partitions)
    group_lag: int | None  # lag of the worker's group (input topics only)


async def describe_topics(settings: Settings) -> list[TopicDescription]:
    """Partitions, relevant configs, end offsets and the worker group's lag."""
    specs = topic_specs(settings)
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [s.name for s in specs if s.name in existing]
        described = {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(present)} if present else {}
        configs: dict[str, dict[str, str]] = {}
        if present:
            resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in present]
            for response in await admin.describe_configs(resources):
                for resource in response.to_object()["resources"]:
                    configs[resource["resource_name"]] = {
                        entry["config_names"]: entry["config_value"]
                        for entry in resource["config_entries"]
                        if entry["config_names"] in ("cleanup.policy", "retention.ms")
                    }
    finally:
        await admin.close()
    out = []
    consumed = {settings.topic(EVENTS), settings.topic(ITEMS)}
    for spec in specs:
        if spec.name not in existing:
            out.append(TopicDescription(spec.name, False, 0, {}, 0, None))
            continue
        ends = await end_offsets(settings, spec.name)
        lag = (await group_lag(settings, settings.app_id, spec.name)).lag if spec.name in consumed else None
        out.append(TopicDescription(spec.name, True, described.get(spec.name, 0), configs.get(spec.name, {}), sum(ends.values()), lag))
    return out


async def cluster_id(settings: Settings) -> str:
    """The cluster id the broker reports (Tansu's default is ``tansu_cluster``)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        return str((await admin.describe_cluster()).get("cluster_id") or "")
    finally:
        await admin.close()



async def wait_for_broker_and_topics(settings: Settings, max_backoff_s: float = 30.0) -> Settings:
    """Create/check the topics, retrying with backoff while the broker is down;
    the settings with the partition count the existing topics have (see
    :func:`setup_topics`)."""
    delay = 0.5
    while True:
        try:
            return (await setup_topics(settings)).settings
        except (KafkaConnectionError, OSError, asyncio.TimeoutError) as exc:
            log.warning("broker %s not reachable (%s); retrying in %.1fs", settings.bootstrap_servers, type(exc).__name__, delay)
        except KafkaError as exc:
            log.warning("broker %s not ready (%s); retrying in %.1fs", settings.bootstrap_servers, exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_backoff_s)


async def is_tansu(settings: Settings) -> bool:
    """Whether the broker is Tansu (the embedded broker), whose ListOffsets
    reports the base offset of a partition's last record batch (+1) rather
    than its end: Faust's recovery consistency check then mistakes a store
    that is exactly up to date for one ahead of its changelog."""
    return "tansu" in (await cluster_id(settings)).lower()

@dataclass(frozen=True)
class GroupInfo:
    """A consumer group as the coordinator sees it."""

    group_id: str
    state: str  # Kafka's group state: Empty, Stable, PreparingRebalance, CompletingRebalance, Dead
    members: list[str]  # member ids (client id first when the broker reports one)

    @property
    def active(self) -> bool:
        """True while a consumer is a member (a worker is running or has not
        timed out yet): moving the group's offsets then is refused by Kafka."""
        return bool(self.members) or self.state not in ("Empty", "Dead", "")


async def describe_group(settings: Settings, group_id: str) -> GroupInfo:
    """State and members of ``group_id`` (DescribeGroups; a group that does not
    exist is reported as ``Dead`` by Kafka and ``Empty`` by the embedded broker,
    both with no members)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group_id])
    finally:
        await admin.close()
    for response in responses:
        for group in response.to_object()["groups"]:
            if group["group"] != group_id:
                continue
            if group["error_code"]:
                raise for_code(group["error_code"])(f"describing consumer group {group_id}")
            members = [m["client_id"] or m["member_id"] for m in group["members"]]
            return GroupInfo(group_id, group["state"], members)
    return GroupInfo(group_id, "Dead", [])


async def existing_topics(settings: Settings) -> set[str]:
    """Names of the topics on the cluster (the admin API's topic listing)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()
