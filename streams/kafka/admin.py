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
from streams.kafka.topics import EVENTS, ITEMS, TopicSpec, topic_specs

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



async def wait_for_broker_and_topics(settings: Settings, max_backoff_s: float = 30.0) -> None:
    """Create/check the topics, retrying with backoff while the broker is down."""
    delay = 0.5
    while True:
        try:
            await ensure_topics(settings)
            return
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
