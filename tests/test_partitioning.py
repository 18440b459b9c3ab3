"""Unit tests of ``streams.kafka.partitioning``: the partition a key belongs
in (Kafka's default partitioner) and the ``wrong_partition`` check the
worker runs on every event (no broker)."""

from __future__ import annotations

import json
import zlib

import pytest
from aiokafka.partitioner import DefaultPartitioner

from schemas import DEFAULT_LIMITS, TICK_KEY, InvalidRecord, RejectReason, encode_record, tick_event
from streams.kafka.partitioning import cached_key_partition, check_partition, decode_event_in_partition
from streams.kafka.topics import key_partition

TS = 1_700_000_000_000


def click(user: str) -> bytes:
    return json.dumps({"event_id": f"e-{user}", "user_id": user, "type": "click", "item_id": "i-1", "ts": TS}).encode()


# Kafka's own Java partitioner on 1,000 partitions (the vectors kafka-python
# and aiokafka test against): the check must agree with Java producers.
@pytest.mark.parametrize("key, partition", [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)])
def test_key_partition_matches_the_java_client(key, partition):
    assert cached_key_partition(key, 1000) == partition


@pytest.mark.parametrize("partitions", [2, 3, 4, 16, 48])
def test_key_partition_is_aiokafkas_default_partitioner(partitions):
    every = list(range(partitions))
    for n in range(300):
        key = f"user-{n}".encode()
        assert cached_key_partition(key, partitions) == DefaultPartitioner()(key, every, every)


def test_an_event_in_its_keys_partition_passes():
    for n in range(50):
        user = f"u{n}"
        partition = cached_key_partition(user.encode(), 4)
        event = decode_event_in_partition(click(user), user.encode(), partition, 4, DEFAULT_LIMITS)
        assert event.user_id == user


def crc32_disagrees(partitions: int) -> list[str]:
    """Users librdkafka's default (consistent_random: CRC32 of the key) puts
    in another partition than murmur2 does."""
    users = [f"u{n}" for n in range(200)]
    return [u for u in users if zlib.crc32(u.encode()) % partitions != cached_key_partition(u.encode(), partitions)]


@pytest.mark.parametrize("partitions", [2, 4, 16])
def test_a_crc32_partitioned_event_is_rejected_with_what_to_set(partitions):
    users = crc32_disagrees(partitions)
    assert users, "some user ids must hash differently under CRC32 and murmur2"
    for user in users:
        crc = zlib.crc32(user.encode()) % partitions
        expected = cached_key_partition(user.encode(), partitions)
        with pytest.raises(InvalidRecord) as info:
            decode_event_in_partition(click(user), user.encode(), crc, partitions, DEFAULT_LIMITS)
        error = info.value
        assert error.reason is RejectReason.WRONG_PARTITION
        assert f"partition {crc} of {partitions}" in error.detail
        assert f"belongs in partition {expected}" in error.detail
        assert "partitioner=murmur2_random" in error.detail
        assert user not in error.detail  # details are logged: no user data


def test_one_partition_has_nothing_to_check():
    for user in crc32_disagrees(2):
        decode_event_in_partition(click(user), user.encode(), 0, 1, DEFAULT_LIMITS)


def test_the_workers_ticks_may_be_in_any_partition():
    # ticks go to the idle partition they move, whatever their key hashes to
    value = encode_record(tick_event(TS))
    for partition in range(8):
        assert decode_event_in_partition(value, TICK_KEY.encode(), partition, 8, DEFAULT_LIMITS).user_id == TICK_KEY


def test_a_record_the_decoder_rejects_keeps_the_decoders_reason():
    # decoding comes first: a mis-keyed event in a wrong partition is a key mismatch
    user = crc32_disagrees(2)[0]
    crc = zlib.crc32(user.encode()) % 2
    with pytest.raises(InvalidRecord) as info:
        decode_event_in_partition(click(user), b"someone-else", crc, 2, DEFAULT_LIMITS)
    assert info.value.reason is RejectReason.KEY_MISMATCH


def test_the_partition_of_a_key_is_cached():
    partition = key_partition(b"alice", 4)
    cached_key_partition.cache_clear()
    for _ in range(4):
        check_partition(tick_event(TS), TICK_KEY.encode(), 0, 4)  # exempt: no lookup
        decode_event_in_partition(click("alice"), b"alice", partition, 4, DEFAULT_LIMITS)
    info = cached_key_partition.cache_info()
    assert info.misses == 1 and info.hits == 3
