"""The partition an event's key belongs in, and the check that it is there.

A user's state, their list and the API's routing all follow Kafka's default
partitioner: murmur2 of the key, as the Java client and aiokafka use.
librdkafka-based producers (confluent-kafka for Python, Go, .NET,
node-rdkafka) hash keys with CRC32 by default. Their events land in a
partition whose worker would fold them into a state that ``forget`` and the
API never look at. Such events are dead-lettered instead (reason
``wrong_partition``), on first delivery and on every read-back alike, so an
offline replay folds exactly what the live worker folded.
"""

from __future__ import annotations

from functools import lru_cache

from schemas import Event, EventType, InvalidRecord, Limits, RejectReason, decode_event
from streams.kafka.topics import key_partition

# distinct keys remembered (a few MB at most): the hot users of a stream
KEY_CACHE_SIZE = 16_384

LIBRDKAFKA_HINT = (
    "librdkafka-based producers (confluent-kafka, Go, .NET, node-rdkafka) hash keys with CRC32 by default: "
    "set partitioner=murmur2_random"
)


@lru_cache(maxsize=KEY_CACHE_SIZE)
def cached_key_partition(key: bytes, partitions: int) -> int:
    """:func:`streams.kafka.topics.key_partition`, remembered per key.

    aiokafka's murmur2 is pure Python (about 2 us for a short key) and this
    runs once per event on the hot path; a user's events keep coming, so a
    cache hit (about 0.1 us) is the usual case."""
    return key_partition(key, partitions)


def wrong_partition_detail(partition: int, expected: int, partitions: int) -> str:
    """The dead letter's detail: where the event is, where it belongs, what to set."""
    return (
        f"event is in partition {partition} of {partitions}, but its key belongs in partition {expected} "
        f"under Kafka's default partitioner (murmur2 of the key, as the Java client and aiokafka use); "
        f"{LIBRDKAFKA_HINT}"
    )


def check_partition(event: Event, key: bytes, partition: int, partitions: int) -> None:
    """Raise :class:`InvalidRecord` (``wrong_partition``) unless ``event``,
    read from ``partition`` of a topic with ``partitions`` partitions, is in
    the partition its ``key`` belongs in.

    The workers' own tick records are sent to chosen partitions on purpose
    (each idle partition gets its own) and are exempt; the decoder admits
    type ``tick`` only with the reserved tick key."""
    if partitions == 1 or event.type is EventType.TICK:
        return
    expected = cached_key_partition(key, partitions)
    if partition != expected:
        raise InvalidRecord(RejectReason.WRONG_PARTITION, wrong_partition_detail(partition, expected, partitions))


def decode_event_in_partition(value: bytes | None, key: bytes, partition: int, partitions: int, limits: Limits) -> Event:
    """:func:`schemas.decode_event` of a record read from ``partition`` of
    ``events``, then :func:`check_partition`: what the worker folds, on
    delivery and on read-back (an absent key is given as ``b""``)."""
    event = decode_event(value, key=key, limits=limits)
    check_partition(event, key, partition, partitions)
    return event
