"""Operators' tools against the real broker: backfill, replay, status."""

from __future__ import annotations

import asyncio
import json
import sys

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console

from schemas import DeadLetter, SourcePosition, decode_event, encode_record
from streams.kafka import topics
from streams.kafka.admin import describe_group, ensure_topics
from streams.ops.backfill import backfill
from streams.kafka.clients import Record, client_kwargs, partition_offsets, publish, read_records_to_end
from streams.ops.replay import ReplayError, parse_start, replay
from streams.settings import Settings
from streams.ops.status import collect_status
from tests.integration.harness import wait_until

pytestmark = pytest.mark.integration

ML = {"user_id": "userId", "item_id": "movieId", "value": "rating", "ts": "timestamp"}
CSV = """userId,movieId,rating,timestamp
1,31,2.5,1260759144
1,1029,3.0,1260759179
2,10,4.0,835355493
3,,4.0,1298861675
4,50,7,1298861675
5,60,3.0,12345
6,70,3.0,notatime
7,80,5.0,1298861700
"""


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"))  # noqa: SIM115 - closed with the process


async def events_on_log(settings: Settings) -> list[Record]:
    return [r async for r in read_records_to_end(settings, settings.topic(topics.EVENTS))]


def cli_flags(settings: Settings) -> list[str]:
    """The connection flags, given before the command."""
    return ["--broker", settings.broker, "--topic-prefix", settings.topic_prefix]


async def run_cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


# -- backfill ------------------------------------------------------------------


async def test_backfill_publishes_valid_rows_keyed_with_event_times_and_reports_the_rest(settings, tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(CSV)
    errors = tmp_path / "errors.jsonl"
    options = dict(fmt="csv", mapping=ML, default_type="rate", ts_unit="s", console=quiet())
    report = await backfill(settings, path, errors_path=errors, **options)

    assert (report.rows, report.valid, report.published) == (8, 4, 4)
    assert dict(report.rejected) == {"invalid_field": 2, "bad_timestamp": 2}
    rejected = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejected] == [(5, "invalid_field"), (6, "invalid_field"), (7, "bad_timestamp"), (8, "bad_timestamp")]
    assert "item_id" in rejected[0]["detail"] and rejected[1]["row"]["rating"] == "7"

    records = await events_on_log(settings)
    assert len(records) == 4
    events = [decode_event(r.value, key=r.key) for r in records]  # the worker's decoder, key included
    assert all(r.key == e.user_id.encode() for r, e in zip(records, events))
    assert all(r.timestamp == e.ts for r, e in zip(records, events))  # record time = event time
    assert {(e.user_id, e.item_id, e.value, e.ts) for e in events} == {
        ("1", "31", 2.5, 1_260_759_144_000), ("1", "1029", 3.0, 1_260_759_179_000),
        ("2", "10", 4.0, 835_355_493_000), ("7", "80", 5.0, 1_298_861_700_000),
    }
    # one user's events share a partition, in file order
    ones = [r for r, e in zip(records, events) if e.user_id == "1"]
    assert len({r.partition for r in ones}) == 1 and [decode_event(r.value).item_id for r in ones] == ["31", "1029"]
    first_ids = {e.event_id for e in events}
    assert all(i.startswith("bf-") for i in first_ids)

    # a re-run republishes (dedupe is not the backfill's job) with the same ids
    again = await backfill(settings, path, **options)
    assert again.published == 4
    records = await events_on_log(settings)
    assert len(records) == 8
    second_ids = [decode_event(r.value).event_id for r in records]
    assert set(second_ids) == first_ids and all(second_ids.count(i) == 2 for i in first_ids)


async def test_backfill_dry_run_publishes_nothing(settings, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"event_id": "e1", "user_id": "u1", "type": "click", "item_id": "i1", "ts": 1700000000000}\n')
    await ensure_topics(settings)
    report = await backfill(settings, path, fmt="jsonl", mapping={}, dry_run=True, console=quiet())
    assert (report.valid, report.published) == (1, 0)
    assert await events_on_log(settings) == []


# -- replay --------------------------------------------------------------------

T0 = 1_700_000_000_000


async def seed_events(settings: Settings, count: int = 20) -> list[Record]:
    """``count`` events over 4 users (on both partitions of 2) with record timestamps T0, T0+1000, ..."""
    await ensure_topics(settings)
    records = []
    for n in range(count):
        user = ("alice", "bob", "d", "carol")[n % 4]
        ts = T0 + n * 1000
        value = orjson.dumps({"event_id": f"e{n}", "user_id": user, "type": "click", "item_id": f"i{n}", "ts": ts})
        records.append((user.encode(), value, ts))
    await publish(settings, settings.topic(topics.EVENTS), records)
    return await events_on_log(settings)


async def commit(settings: Settings, offsets: dict[int, int]) -> None:
    """Commit for the worker group the way Faust's offsets look (next offset to read)."""
    topic = settings.topic(topics.EVENTS)
    consumer = AIOKafkaConsumer(group_id=settings.app_id, enable_auto_commit=False, **client_kwargs(settings))
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): o for p, o in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


async def committed(settings: Settings) -> dict[int, int | None]:
    return {p.partition: p.committed for p in await partition_offsets(settings, settings.topic(topics.EVENTS), settings.app_id)}


def test_from_specs_are_parsed():
    assert parse_start("earliest").kind == "earliest" and parse_start("LATEST").kind == "latest"
    assert parse_start("0:120, 1:300").offsets == {0: 120, 1: 300}
    assert parse_start("1700000000000").timestamp_ms == T0
    assert parse_start("2023-11-14T22:13:20Z").timestamp_ms == T0
    assert parse_start("2023-11-14T22:13:20").timestamp_ms == T0  # no zone = UTC
    for bad, match in [("1700000000", "seconds"), ("0:1,0:2", "twice"), ("yesterday", "not earliest")]:
        with pytest.raises(ReplayError, match=match):
            parse_start(bad)


async def test_replay_moves_the_group_to_earliest_offsets_a_time_and_latest(settings):
    log = await seed_events(settings)
    ends = {p: max(r.offset for r in log if r.partition == p) + 1 for p in {r.partition for r in log}}
    assert sum(ends.values()) == 20 and len(ends) == settings.partitions
    await commit(settings, ends)  # the worker had read everything
    assert await committed(settings) == ends

    plan = await replay(settings, parse_start("earliest"))
    assert await committed(settings) == {p: 0 for p in ends}
    assert [(m.before, m.after, m.delta) for m in plan.moves] == [(ends[p], 0, ends[p]) for p in sorted(ends)]

    # a dry run changes nothing but says what it would do
    preview = await replay(settings, parse_start("latest"), dry_run=True)
    assert [m.target for m in preview.moves] == [ends[p] for p in sorted(ends)] and not preview.committed
    assert await committed(settings) == {p: 0 for p in ends}

    # explicit offsets: named partitions move, the others keep theirs
    await replay(settings, parse_start("0:2"))
    assert await committed(settings) == {0: 2, 1: 0}
    with pytest.raises(ReplayError, match="outside"):
        await replay(settings, parse_start(f"1:{ends[1] + 1}"))
    with pytest.raises(ReplayError, match="no partition 7"):
        await replay(settings, parse_start("7:0"))

    # a time: per partition, the first record at or after it (exact, even where
    # the broker answers with the start of a record batch)
    at = T0 + 10_500
    await replay(settings, parse_start(str(at)))
    expected = {p: min((r.offset for r in log if r.partition == p and r.timestamp >= at), default=ends[p]) for p in ends}
    assert await committed(settings) == expected
    assert 0 < sum(expected.values()) < 20
    # later than every record: the end (nothing to re-read)
    await replay(settings, parse_start("2099-01-01T00:00:00+00:00"))
    assert await committed(settings) == ends


async def test_replay_refuses_while_the_group_has_a_member(settings):
    await seed_events(settings, 4)
    member = AIOKafkaConsumer(
        settings.topic(topics.EVENTS), group_id=settings.app_id, session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=500, **client_kwargs(settings),
    )
    await member.start()
    try:
        async def joined() -> bool:
            await member.getmany(timeout_ms=200)
            return (await describe_group(settings, settings.app_id)).active

        await wait_until(joined, timeout_s=30)
        with pytest.raises(ReplayError, match="is active"):
            await replay(settings, parse_start("earliest"))
        # the command an operator runs: a clear message and a non-zero exit
        code, out = await run_cli(*cli_flags(settings), "replay", "--from", "earliest", "--app-id", settings.app_id)
        assert code != 0 and "is active" in out and "stop its workers" in out, out
        # a preview still works, with a warning
        code, out = await run_cli(*cli_flags(settings), "replay", "--from", "earliest", "--dry-run", "--app-id", settings.app_id)
        assert code == 0 and "warning" in out, out
    finally:
        await member.stop()


# -- status --------------------------------------------------------------------


async def test_status_shows_offsets_lag_rates_and_dead_letters_by_reason(settings):
    log = await seed_events(settings, 8)
    ends = {p: max(r.offset for r in log if r.partition == p) + 1 for p in {r.partition for r in log}}
    await commit(settings, {0: 1})  # partition 1 never committed
    source = SourcePosition(topic=settings.topic(topics.EVENTS), partition=0, offset=1, timestamp=T0)
    letters = [
        DeadLetter(reason=reason, detail="x", source=source, value_b64="", failed_at=T0)
        for reason in ("bad_timestamp", "bad_timestamp", "not_json")
    ]
    dlq = [(b"u", encode_record(letter)) for letter in letters] + [(b"u", b"not a dead letter")]
    await publish(settings, settings.topic(topics.DEAD_LETTERS), dlq)

    # producers keep appending while status samples: events/s must see them
    stop = asyncio.Event()

    async def producer() -> None:
        n = 0
        while not stop.is_set():
            value = orjson.dumps({"event_id": f"live{n}", "user_id": "live", "type": "view", "item_id": "i", "ts": T0})
            await publish(settings, settings.topic(topics.EVENTS), [(b"live", value)])
            n += 1
            await asyncio.sleep(0.05)

    task = asyncio.create_task(producer())
    try:
        status = await collect_status(settings, interval_s=1.5)
    finally:
        stop.set()
        await task

    events = status.topic(settings.topic(topics.EVENTS))
    assert events.exists and events.consumed and len(events.partitions) == settings.partitions
    by_partition = {p.partition: p for p in events.partitions}
    assert by_partition[0].committed == 1 and by_partition[1].committed is None
    assert by_partition[0].end >= ends[0] and by_partition[0].lag == by_partition[0].end - 1
    assert by_partition[1].lag == by_partition[1].end  # never committed: all of it is lag
    assert events.rate_per_s > 0
    assert status.topic(settings.topic(topics.RECOMMENDATIONS)).rate_per_s == 0
    assert status.dead_letters == {"bad_timestamp": 2, "not_json": 1, "undecodable": 1}
    assert status.group.state in ("Empty", "Dead") and not status.group.active

    code, out = await run_cli(*cli_flags(settings), "status", "--json", "--interval", "0.2", "--app-id", settings.app_id)
    assert code == 0, out
    shown = json.loads(out)
    assert shown["dead_letters"] == {"bad_timestamp": 2, "not_json": 1, "undecodable": 1}
    assert shown["topics"][0]["partitions"][0]["committed"] == 1
    code, out = await run_cli(*cli_flags(settings), "status", "--interval", "0.2", "--app-id", settings.app_id)
    assert code == 0 and "bad_timestamp" in out and settings.topic(topics.EVENTS) in out, out
