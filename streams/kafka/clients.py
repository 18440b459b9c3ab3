"""Plain aiokafka clients for tools around the worker: publishing, reading a
topic to its end, and measuring a consumer group's lag.

Only portable Kafka APIs are used (produce, fetch, OffsetFetch through a
consumer's ``committed()``, ListOffsets), so these work the same on Apache
Kafka and on the embedded broker.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.kafka.security import ssl_context
from streams.settings import Settings

log = logging.getLogger(__name__)


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection and security arguments shared by every aiokafka client."""
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers}
    protocol = settings.security_protocol
    if protocol != "PLAINTEXT":
        kwargs["security_protocol"] = protocol
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return kwargs


# ``(key, value)``, or ``(key, value, timestamp_ms)`` to set the record's
# timestamp (a backfill keeps the events' original times on the log).
PublishRecord = tuple[bytes | None, bytes | None] | tuple[bytes | None, bytes | None, int | None]


async def publish(
    settings: Settings,
    topic: str,
    records: Iterable[PublishRecord],
    on_progress: Callable[[int], None] | None = None,
    chunk: int = 2_000,
) -> int:
    """Publish ``(key, value[, timestamp_ms])`` records in order; return how
    many were acked.

    Sends are pipelined (a chunk in flight at once) and each chunk is awaited
    before the next, so a broker error surfaces instead of being lost.
    """
    producer = AIOKafkaProducer(linger_ms=5, max_batch_size=256 * 1024, acks="all", **client_kwargs(settings))
    await producer.start()
    sent = 0
    try:
        pending: list[asyncio.Future] = []
        for record in records:
            key, value = record[0], record[1]
            timestamp_ms = record[2] if len(record) > 2 else None
            pending.append(await producer.send(topic, key=key, value=value, timestamp_ms=timestamp_ms))
            if len(pending) >= chunk:
                await asyncio.gather(*pending)
                sent += len(pending)
                pending.clear()
                if on_progress:
                    on_progress(sent)
        if pending:
            await asyncio.gather(*pending)
            sent += len(pending)
            if on_progress:
                on_progress(sent)
    finally:
        await producer.stop()
    return sent


async def end_offsets(settings: Settings, topic: str, wait_s: float = 10.0) -> dict[int, int]:
    """Partition -> end offset (next offset to be written); empty when the
    topic does not exist within ``wait_s``."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_kwargs(settings))
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic, wait_s)
        ends = await true_end_offsets(consumer, partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def true_end_offsets(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """End offsets that hold on every broker.

    The embedded broker (Tansu 0.6, memory engine) answers ListOffsets with
    the *base* offset of the last record batch + 1, not the last offset + 1.
    Reading from the reported end - 1 returns that whole last batch, whose
    last record gives the true end; on Apache Kafka the reported end is
    already right and the max() keeps it. The consumer must not be
    subscribed (it is re-assigned here).
    """
    reported = await consumer.end_offsets(partitions)
    ends = dict(reported)
    probe = [tp for tp in partitions if reported[tp] > 0]
    if not probe:
        return ends
    consumer.assign(probe)
    for tp in probe:
        consumer.seek(tp, reported[tp] - 1)
    pending = set(probe)
    # generous: a table recovery that stops short of the true end loses the
    # last batch of state writes, and a starved process can take seconds
    deadline = asyncio.get_running_loop().time() + 60.0
    while pending and asyncio.get_running_loop().time() < deadline:
        batches = await consumer.getmany(*pending, timeout_ms=200)
        for tp, messages in batches.items():
            if messages:
                ends[tp] = max(ends[tp], messages[-1].offset + 1)
                pending.discard(tp)
    if pending:
        log.warning("no record read at the reported end of %s within 60 s; using the reported end offsets",
                    ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(pending)))
    return ends


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout_s: float = 10.0) -> list[TopicPartition]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if asyncio.get_running_loop().time() > deadline:
            return []
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class GroupLag:
    """How far a consumer group is behind on one topic."""

    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True)
class PartitionOffsets:
    """One partition's log bounds and a consumer group's position on it."""

    partition: int
    beginning: int  # first offset still on the log (retention may have moved it)
    end: int  # next offset to be written (true end, see true_end_offsets)
    committed: int | None  # the group's committed offset; None = never committed

    @property
    def lag(self) -> int:
        """Records the group has still to read (all of them when it never committed)."""
        return max(0, self.end - (self.committed if self.committed is not None else self.beginning))


async def partition_offsets(settings: Settings, topic: str, group_id: str | None = None, wait_s: float = 10.0) -> list[PartitionOffsets]:
    """Per partition of ``topic``: beginning, true end and (with ``group_id``)
    the group's committed offset; empty when the topic does not exist.

    Reads the group's offsets with a consumer's ``committed()`` without joining
    the group (the admin API's offset listing is not portable to every broker:
    the embedded one drops the connection on it).
    """
    consumer = AIOKafkaConsumer(group_id=group_id, enable_auto_commit=False, **client_kwargs(settings))
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic, wait_s)
        if not partitions:
            return []
        beginnings = await consumer.beginning_offsets(partitions)
        ends = await true_end_offsets(consumer, partitions)
        out = []
        for tp in partitions:
            committed = await consumer.committed(tp) if group_id is not None else None
            out.append(PartitionOffsets(tp.partition, beginnings[tp], ends[tp], committed))
        return out
    finally:
        await consumer.stop()


async def group_lag(settings: Settings, group_id: str, topic: str) -> GroupLag:
    """Committed offsets of ``group_id`` against the end of ``topic`` (summed
    over partitions; a partition never committed counts as 0)."""
    offsets = await partition_offsets(settings, topic, group_id)
    return GroupLag(committed=sum(p.committed or 0 for p in offsets), end=sum(p.end for p in offsets))


@dataclass(frozen=True)
class Record:
    """One record read back from a topic, with its position."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None  # the record's timestamp (epoch ms)


async def read_records_to_end(settings: Settings, topic: str) -> AsyncIterator[Record]:
    """Every record of ``topic`` from the beginning up to its current end
    (partition by partition order is kept; partitions interleave)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest", **client_kwargs(settings))
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        if not partitions:
            return
        ends = await true_end_offsets(consumer, partitions)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, messages in batches.items():
                for message in messages:
                    yield Record(tp.partition, message.offset, message.key, message.value, message.timestamp)
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def read_to_end(settings: Settings, topic: str) -> AsyncIterator[tuple[bytes | None, bytes | None]]:
    """Every ``(key, value)`` of ``topic`` from the beginning up to its current end."""
    async for record in read_records_to_end(settings, topic):
        yield record.key, record.value


async def read_partition_range(settings: Settings, topic: str, partition: int, start: int, stop: int) -> list[Record]:
    """The records of one partition with ``start <= offset < stop`` (offsets
    removed by retention are simply absent)."""
    if stop <= start:
        return []
    consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest", **client_kwargs(settings))
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        records: list[Record] = []
        while await consumer.position(tp) < stop:
            batches = await consumer.getmany(tp, timeout_ms=1000)
            for message in batches.get(tp, []):
                if message.offset >= stop:
                    return records
                records.append(Record(partition, message.offset, message.key, message.value))
            if not batches:
                ends = await true_end_offsets(consumer, [tp])
                if await consumer.position(tp) >= ends[tp]:
                    break  # the range runs past the end: nothing more to read
        return records
    finally:
        await consumer.stop()
