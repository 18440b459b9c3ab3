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
from streams.kafka import topics
from streams.kafka.admin import GroupInfo, describe_group, existing_topics
from streams.kafka.clients import PartitionOffsets, end_offsets, partition_offsets, read_to_end
from streams.settings import Settings
from streams.kafka.topics import topic_specs

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


# -- a worker's own metrics (`recstream status --metrics-url`) -------------------

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


async def fetch_worker_metrics(url: str, timeout_s: float = 5.0) -> Samples:
    """Scrape a worker's ``/metrics`` (``RECSTREAM_METRICS_PORT``): sample
    name -> sorted labels -> value. Raises :class:`StatusError` when the
    worker does not answer."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
            async with http.get(url) as response:
                if response.status != 200:
                    raise StatusError(f"{url} answered HTTP {response.status}")
                text = await response.text()
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise StatusError(f"cannot read worker metrics from {url} ({type(exc).__name__}: {exc})") from exc
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


class StatusError(RuntimeError):
    """A status source could not be read."""


def histogram_quantile(q: float, buckets: dict[tuple[tuple[str, str], ...], float]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``le`` buckets (since
    the worker started; linear inside a bucket). ``None`` without samples."""
    bounds = sorted((float(dict(labels)["le"]), count) for labels, count in buckets.items())
    if not bounds or bounds[-1][1] == 0:
        return None
    rank = q * bounds[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in bounds:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # past the last finite bucket: its bound is all we know
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1e-12)
        lower_bound, lower_count = bound, count
    return lower_bound


def worker_summary(samples: Samples) -> dict[str, Any]:
    """The numbers ``recstream status --metrics-url`` shows, from one scrape."""

    def total(name: str) -> float:
        return sum(samples.get(name, {}).values())

    requested = total("recstream_encoder_cache_hits_total") + total("recstream_encoder_cache_misses_total")
    latency = samples.get("recstream_list_latency_seconds_bucket", {})
    batches = samples.get("recstream_batch_size_count", {}).get((("agent", "events"),), 0.0)
    return {
        "events": int(total("recstream_events_total")),
        "lists": int(total("recstream_lists_total")),
        "dead_letters": {dict(labels)["reason"]: int(v) for labels, v in samples.get("recstream_dead_letters_total", {}).items()},
        "users_in_state": int(total("recstream_users_in_state")),
        "lag": {f"{topic}[{partition}]": lag for (topic, partition), lag in sorted(
            ((dict(labels)["topic"], int(dict(labels)["partition"])), int(v)) for labels, v in samples.get("recstream_consumer_lag", {}).items())},
        "mean_batch": round(samples.get("recstream_batch_size_sum", {}).get((("agent", "events"),), 0.0) / batches, 1) if batches else None,
        "latency_p50_ms": None if (p50 := histogram_quantile(0.5, latency)) is None else round(p50 * 1000, 1),
        "latency_p99_ms": None if (p99 := histogram_quantile(0.99, latency)) is None else round(p99 * 1000, 1),
        "encoder_hit_rate": round(total("recstream_encoder_cache_hits_total") / requested, 3) if requested else None,
    }


def worker_table(url: str, summary: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table("metric", "value", title=f"worker {url}")
    table.add_row("events consumed", f"{summary['events']:,}")
    table.add_row("lists published", f"{summary['lists']:,}")
    table.add_row("users in state", f"{summary['users_in_state']:,}")
    table.add_row("mean events batch", "-" if summary["mean_batch"] is None else str(summary["mean_batch"]))
    for name in ("latency_p50_ms", "latency_p99_ms"):
        label = f"event -> list {name.split('_')[1]}"
        table.add_row(label, "-" if summary[name] is None else f"{summary[name]} ms")
    table.add_row("encoder cache hit rate", "-" if summary["encoder_hit_rate"] is None else f"{summary['encoder_hit_rate']:.1%}")
    for reason, count in sorted(summary["dead_letters"].items()):
        table.add_row(f"dead letters {reason}", str(count))
    for partition, lag in summary["lag"].items():
        table.add_row(f"lag {partition}", str(lag))
    return table
