"""``recstream status``: per topic and partition, end offsets, the worker
group's committed offsets and lag, throughput, and dead letters by reason.

Throughput is measured, not guessed: end offsets are sampled twice an
interval apart, so events/s is how fast producers append to ``events`` and
lists/s how fast the workers publish to ``recommendations`` right now.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from schemas import DeadLetter
from streams import topics
from streams.admin import GroupInfo, describe_group, existing_topics
from streams.clients import PartitionOffsets, end_offsets, partition_offsets, read_to_end
from streams.settings import Settings
from streams.topics import topic_specs

# Topics the worker's group consumes: committed offsets and lag make sense there.
CONSUMED = (topics.EVENTS, topics.ITEMS)
UNDECODABLE = "undecodable"


@dataclass(frozen=True)
class TopicStatus:
    """One topic: its partitions' offsets and its measured append rate."""

    name: str
    exists: bool
    consumed: bool  # by the worker group (committed/lag apply)
    partitions: list[PartitionOffsets]
    rate_per_s: float  # records appended per second during the sample

    @property
    def end(self) -> int:
        return sum(p.end for p in self.partitions)

    @property
    def lag(self) -> int | None:
        return sum(p.lag for p in self.partitions) if self.consumed else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.name, "exists": self.exists, "records": self.end, "rate_per_s": round(self.rate_per_s, 2),
            "lag": self.lag,
            "partitions": [
                {"partition": p.partition, "beginning": p.beginning, "end": p.end,
                 "committed": p.committed if self.consumed else None, "lag": p.lag if self.consumed else None}
                for p in self.partitions
            ],
        }


@dataclass(frozen=True)
class Status:
    """Everything ``recstream status`` shows."""

    group: GroupInfo
    topics: list[TopicStatus]
    interval_s: float
    dead_letters: Counter[str] = field(default_factory=Counter)

    def topic(self, name: str) -> TopicStatus:
        return next(t for t in self.topics if t.name == name)

    def as_dict(self, settings: Settings) -> dict[str, Any]:
        return {
            "group": {"id": self.group.group_id, "state": self.group.state, "members": self.group.members},
            "interval_s": self.interval_s,
            "events_per_s": round(self.topic(settings.topic(topics.EVENTS)).rate_per_s, 2),
            "lists_per_s": round(self.topic(settings.topic(topics.RECOMMENDATIONS)).rate_per_s, 2),
            "dead_letters": dict(self.dead_letters.most_common()),
            "topics": [t.as_dict() for t in self.topics],
        }


async def dead_letter_reasons(settings: Settings) -> Counter[str]:
    """Dead letters on ``events-dlq`` by reason code (read to its current end)."""
    decoder = msgspec.json.Decoder(DeadLetter)
    counts: Counter[str] = Counter()
    async for _, value in read_to_end(settings, settings.topic(topics.DEAD_LETTERS)):
        try:
            counts[decoder.decode(value or b"").reason] += 1
        except msgspec.DecodeError:
            counts[UNDECODABLE] += 1  # someone else wrote to the DLQ; count it, don't hide it
    return counts


async def collect_status(settings: Settings, interval_s: float = 2.0) -> Status:
    """Sample every topic's end offsets twice ``interval_s`` apart, read the
    group's committed offsets and count the dead letters."""
    names = [(spec.name, spec.name in {settings.topic(t) for t in CONSUMED}) for spec in topic_specs(settings)]
    present = await existing_topics(settings)
    first: dict[str, dict[int, int]] = {}
    started = time.monotonic()
    for name, _ in names:
        if name in present:
            first[name] = await end_offsets(settings, name, wait_s=5.0)
    # the DLQ read and the group description fill the interval instead of adding to it
    reasons = await dead_letter_reasons(settings) if settings.topic(topics.DEAD_LETTERS) in present else Counter()
    group = await describe_group(settings, settings.app_id)
    await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    elapsed = time.monotonic() - started
    out = []
    for name, consumed in names:
        if name not in present:
            out.append(TopicStatus(name, False, consumed, [], 0.0))
            continue
        offsets = await partition_offsets(settings, name, settings.app_id if consumed else None, wait_s=5.0)
        appended = sum(p.end for p in offsets) - sum(first[name].values())
        out.append(TopicStatus(name, True, consumed, offsets, max(0, appended) / elapsed if elapsed > 0 else 0.0))
    return Status(group, out, round(elapsed, 3), reasons)


def status_tables(status: Status, settings: Settings) -> list[Any]:
    """Rich renderables: the group, the per-partition table, the dead letters."""
    from rich.table import Table
    from rich.text import Text

    members = ", ".join(status.group.members) if status.group.members else "no members (no worker running)"
    events = status.topic(settings.topic(topics.EVENTS))
    lists = status.topic(settings.topic(topics.RECOMMENDATIONS))
    head = Text.assemble(
        ("group ", "bold"), f"{status.group.group_id}: {status.group.state}, {members}\n",
        ("rates ", "bold"), f"{events.rate_per_s:,.1f} events/s in, {lists.rate_per_s:,.1f} lists/s out (over {status.interval_s:.1f} s)",
    )
    table = Table(title="topics")
    table.add_column("topic", no_wrap=True)  # names are what operators grep for: never cut them
    # short headers: the table fits 80 columns with 7-digit offsets
    for column in ("part", "start", "end", "committed", "lag", "rec/s"):
        table.add_column(column, justify="right", no_wrap=True)
    for t in status.topics:
        if not t.exists:
            table.add_row(t.name, "missing", "", "", "", "", "")
            continue
        for p in t.partitions:
            committed = ("-" if p.committed is None else str(p.committed)) if t.consumed else ""
            table.add_row(t.name, str(p.partition), str(p.beginning), str(p.end), committed, str(p.lag) if t.consumed else "", "")
        table.add_row(Text(t.name, style="bold"), "all", "", Text(str(t.end), style="bold"), "",
                      Text(str(t.lag), style="bold") if t.lag is not None else "", f"{t.rate_per_s:,.1f}", end_section=True)
    dlq = Table("reason", "dead letters", title=f"{settings.topic(topics.DEAD_LETTERS)} by reason")
    for reason, count in status.dead_letters.most_common():
        dlq.add_row(reason, str(count))
    if not status.dead_letters:
        dlq.add_row("(none)", "0")
    return [head, table, dlq]
