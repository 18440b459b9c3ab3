"""``recstream replay --from earliest|latest|TIMESTAMP|OFFSETS``: move the
worker group's committed offsets on ``events``.

The worker's consumer group is the Faust app id (``settings.app_id``). Faust
commits, per ``events`` partition, the offset of the next record to process
and starts from it, so committing new offsets while no worker runs is all a
replay (or a skip) needs. Kafka only accepts such a commit from outside the
group while the group has no members, so a running worker makes this refuse
rather than race it.

Offsets are committed with a plain consumer carrying the group id and a
manual assignment (OffsetCommit with no generation), and read back with
``committed()``: both portable, unlike the admin API's offset calls (the
embedded broker drops the connection on ListConsumerGroupOffsets).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from streams.kafka import topics
from streams.kafka.admin import GroupInfo, describe_group
from streams.kafka.clients import PartitionOffsets, _partitions, client_kwargs, partition_offsets
from streams.settings import Settings

# Epoch milliseconds below this are taken for seconds (1973): the same bound
# as the event decoder's, so one mistake is caught the same way everywhere.
MIN_EPOCH_MS = 100_000_000_000
_OFFSETS = re.compile(r"^\s*\d+\s*:\s*\d+\s*(,\s*\d+\s*:\s*\d+\s*)*$")


class ReplayError(RuntimeError):
    """The replay cannot be done (bad --from, group active, offset out of range)."""


@dataclass(frozen=True)
class Start:
    """Where to move the group: ``kind`` is earliest, latest, timestamp or offsets."""

    kind: str
    timestamp_ms: int | None = None
    offsets: dict[int, int] | None = None

    def describe(self) -> str:
        if self.kind == "timestamp":
            assert self.timestamp_ms is not None
            return f"{datetime.fromtimestamp(self.timestamp_ms / 1000, tz=timezone.utc).isoformat(timespec='milliseconds')} ({self.timestamp_ms})"
        if self.kind == "offsets":
            assert self.offsets is not None
            return ",".join(f"{p}:{o}" for p, o in sorted(self.offsets.items()))
        return self.kind


def parse_start(spec: str) -> Start:
    """``earliest``, ``latest``, ``P:O[,P:O...]``, epoch milliseconds, or an
    ISO-8601 time (a time without a zone is UTC)."""
    text = spec.strip()
    if text.lower() in ("earliest", "latest"):
        return Start(text.lower())
    if _OFFSETS.match(text):
        offsets: dict[int, int] = {}
        for pair in text.split(","):
            partition, offset = (int(x) for x in pair.split(":"))
            if partition in offsets:
                raise ReplayError(f"--from {spec!r} names partition {partition} twice")
            offsets[partition] = offset
        return Start("offsets", offsets=offsets)
    if text.isdigit():
        value = int(text)
        if value < MIN_EPOCH_MS:
            raise ReplayError(f"--from {spec!r} looks like epoch seconds; give epoch milliseconds or an ISO-8601 time")
        return Start("timestamp", timestamp_ms=value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayError(f"--from {spec!r} is not earliest, latest, PARTITION:OFFSET[,...], epoch milliseconds or an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return Start("timestamp", timestamp_ms=int(round(moment.timestamp() * 1000)))


@dataclass(frozen=True)
class PartitionMove:
    """One partition: where the group was, where it goes, and the log around it."""

    partition: int
    beginning: int
    end: int
    before: int | None  # committed offset before (None: never committed)
    target: int | None  # offset to commit (None: left as it is)
    after: int | None = None  # committed offset read back after the commit

    @property
    def delta(self) -> int | None:
        """Records the worker will re-read (positive) or skip (negative)."""
        if self.target is None:
            return None
        return (self.before if self.before is not None else self.beginning) - self.target

    def as_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "beginning": self.beginning, "end": self.end, "before": self.before,
                "target": self.target, "after": self.after, "delta": self.delta}


@dataclass(frozen=True)
class ReplayPlan:
    """Everything a replay does, for printing before and after."""

    group: GroupInfo
    topic: str
    start: Start
    moves: list[PartitionMove]
    committed: bool = False


async def _offsets_at(settings: Settings, topic: str, timestamp_ms: int, offsets: list[PartitionOffsets]) -> dict[int, int]:
    """Per partition, the first offset whose record timestamp is at or after
    ``timestamp_ms``; the end where no record is that late.

    ListOffsets by time is exact on Apache Kafka. The embedded broker (Tansu
    0.6) answers with the start of a record batch, compared against the
    batch's append time rather than the records' own timestamps (and offset 0
    with timestamp -1 when nothing is late enough), so the answer is checked
    by reading forward from it to the first record whose own timestamp is at
    or after the time. On Kafka that read stops at the first record; on the
    embedded broker it may read the partition.
    """
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_kwargs(settings))
    await consumer.start()
    try:
        tps = {p.partition: TopicPartition(topic, p.partition) for p in offsets}
        found = await consumer.offsets_for_times({tp: timestamp_ms for tp in tps.values()})
        targets: dict[int, int] = {}
        scan: dict[TopicPartition, int] = {}
        for p in offsets:
            hit = found.get(tps[p.partition])
            if hit is None or hit.timestamp < 0 or p.end <= p.beginning:
                targets[p.partition] = p.end
            else:
                scan[tps[p.partition]] = max(hit.offset, p.beginning)
        if scan:
            consumer.assign(list(scan))
            for tp, offset in scan.items():
                consumer.seek(tp, offset)
            ends = {tps[p.partition]: p.end for p in offsets}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60.0
            pending = set(scan)
            while pending and loop.time() < deadline:
                batches = await consumer.getmany(*pending, timeout_ms=300)
                for tp, messages in batches.items():
                    if tp not in pending:
                        continue
                    late = next((m.offset for m in messages if m.timestamp >= timestamp_ms), None)
                    if late is not None:
                        targets[tp.partition] = late
                        pending.discard(tp)
                    elif messages and messages[-1].offset + 1 >= ends[tp]:
                        targets[tp.partition] = ends[tp]
                        pending.discard(tp)
            for tp in pending:
                # out of time: every record before the position was earlier than
                # the time, so the position is the best bound known (never later
                # than the true answer: nothing is skipped by mistake)
                targets[tp.partition] = await consumer.position(tp)
        return targets
    finally:
        await consumer.stop()


async def plan_replay(settings: Settings, start: Start) -> ReplayPlan:
    """Where each ``events`` partition of the worker group would move."""
    topic = settings.topic(topics.EVENTS)
    group = await describe_group(settings, settings.app_id)
    offsets = await partition_offsets(settings, topic, settings.app_id, wait_s=5.0)
    if not offsets:
        raise ReplayError(f"topic {topic} does not exist (nothing to replay)")
    by_partition = {p.partition: p for p in offsets}
    if start.kind == "earliest":
        targets = {p.partition: p.beginning for p in offsets}
    elif start.kind == "latest":
        targets = {p.partition: p.end for p in offsets}
    elif start.kind == "timestamp":
        assert start.timestamp_ms is not None
        targets = await _offsets_at(settings, topic, start.timestamp_ms, offsets)
    else:
        assert start.offsets is not None
        unknown = sorted(set(start.offsets) - set(by_partition))
        if unknown:
            raise ReplayError(f"{topic} has partitions 0..{len(offsets) - 1}; no partition {', '.join(map(str, unknown))}")
        wrong = [
            f"partition {p}: {o} is outside {by_partition[p].beginning}..{by_partition[p].end}"
            for p, o in sorted(start.offsets.items())
            if not by_partition[p].beginning <= o <= by_partition[p].end
        ]
        if wrong:
            raise ReplayError("offsets out of range (beginning..end): " + "; ".join(wrong))
        targets = dict(start.offsets)  # partitions not named keep their offsets
    moves = [PartitionMove(p.partition, p.beginning, p.end, p.committed, targets.get(p.partition)) for p in offsets]
    return ReplayPlan(group, topic, start, moves)


async def commit_plan(settings: Settings, plan: ReplayPlan) -> ReplayPlan:
    """Commit the plan's targets for the group and read them back."""
    to_commit = {TopicPartition(plan.topic, m.partition): m.target for m in plan.moves if m.target is not None}
    consumer = AIOKafkaConsumer(group_id=settings.app_id, enable_auto_commit=False, **client_kwargs(settings))
    await consumer.start()
    try:
        await _partitions(consumer, plan.topic, 5.0)
        consumer.assign(list(to_commit))  # manual assignment: commit without joining the group
        try:
            await consumer.commit(to_commit)
        except CommitFailedError as exc:
            # Kafka rejects an outside commit once the group has members: a
            # worker started between the check and the commit
            raise ReplayError(f"group {settings.app_id} became active while replaying; stop its workers and run again ({exc.args[-1]})") from exc
        after = {m.partition: await consumer.committed(TopicPartition(plan.topic, m.partition)) for m in plan.moves}
    finally:
        await consumer.stop()
    moves = [PartitionMove(m.partition, m.beginning, m.end, m.before, m.target, after[m.partition]) for m in plan.moves]
    return ReplayPlan(plan.group, plan.topic, plan.start, moves, committed=True)


async def replay(settings: Settings, start: Start, dry_run: bool = False) -> ReplayPlan:
    """Plan, and unless ``dry_run``, check the group is idle and commit."""
    plan = await plan_replay(settings, start)
    if dry_run:
        return plan  # a preview is fine while workers run (the caller warns)
    if plan.group.active:
        members = ", ".join(plan.group.members) or "none listed"
        raise ReplayError(
            f"consumer group {settings.app_id} is active (state {plan.group.state}, {len(plan.group.members)} member(s): {members}); "
            "stop its workers first (a member that stopped without leaving counts until its session times out, "
            f"{settings.session_timeout_s:g}s by default)"
        )
    try:
        return await commit_plan(settings, plan)
    except KafkaError as exc:
        raise ReplayError(f"committing offsets for group {settings.app_id} failed: {exc}") from exc


def plan_table(plan: ReplayPlan) -> Any:
    """A rich table: per partition, log bounds, offsets before and after, and
    how many records the group will re-read (+) or skip (-)."""
    from rich.table import Table

    def show(offset: int | None) -> str:
        return "-" if offset is None else str(offset)

    after_title = "after" if plan.committed else "after (dry run)"
    table = Table(title=f"group {plan.group.group_id} on {plan.topic}: --from {plan.start.describe()}")
    for column in ("partition", "beginning", "end", "before", after_title, "re-read"):
        table.add_column(column, justify="right")
    for m in plan.moves:
        after = m.after if plan.committed else m.target
        delta = "unchanged" if m.delta is None else f"{m.delta:+d}"
        table.add_row(str(m.partition), str(m.beginning), str(m.end), show(m.before), show(after if m.target is not None else m.before), delta)
    return table
