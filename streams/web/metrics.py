"""Prometheus metrics of one worker, in the app's own registry.

Every app gets its own :class:`prometheus_client.CollectorRegistry` (tests
build several apps in one process; the global registry would refuse the
second set of names).

Three kinds of sources, each counted once:

- totals the agents already keep (``agents.deps.Counters``) and the
  encoder's ``EncoderStats`` are *read* at scrape time by a collector, so the
  hot path does not count twice;
- histograms (batch sizes, encode time, event -> list latency) are observed
  where the thing happens;
- gauges that cost a scan or a consumer call (users in state, consumer lag)
  are refreshed by the scrape itself (:meth:`WorkerMetrics.refresh`).

This module knows nothing of Faust: the composition root (``streams.app``)
hands it readers and refreshers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)
ENCODE_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# fine around the freshness targets (p50 <= 25 ms, p99 <= 100 ms), coarse up to 10 s
LATENCY_BUCKETS = (
    0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1,
    0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0,
)

# field of agents.deps.Counters -> (metric name without _total, help). Counters.batches
# is left out: recstream_batch_size_count{agent="events"} is the same number.
COUNTER_TOTALS: dict[str, tuple[str, str]] = {
    "events": ("recstream_events", "Records taken from the events topic, valid or not"),
    "applied": ("recstream_states_written", "User states written to the user-state table"),
    "lists": ("recstream_lists", "Recommendation lists (and user tombstones) published"),
    "items": ("recstream_items_encoded", "Catalog items encoded and stored"),
    "redelivered": ("recstream_redelivered", "Events at or below their user's offset watermark (changed nothing)"),
    "duplicates": ("recstream_duplicates", "Events whose event_id the user had already seen (changed nothing)"),
    "forgotten": ("recstream_forgotten", "Users deleted by a forget event"),
    "expired": ("recstream_expired", "User states expired (RECSTREAM_STATE_TTL_HOURS)"),
    "state_resets": ("recstream_state_resets", "Unreadable user states started afresh"),
    "graph_catch_up": ("recstream_graph_catch_up_events", "Events the item graph replayed from the topic after a restart or rebalance"),
    "graph_snapshots": ("recstream_graph_snapshots", "Item-graph snapshots written (after a producer flush)"),
    "skipped_revoked": ("recstream_skipped_revoked", "Batched events skipped because their partition was revoked meanwhile"),
    "redelivered_in_process": ("recstream_redelivered_batches", "Batches that began behind this worker's own graph (consumer went back)"),
    "gap_events": ("recstream_gap_events", "Events Faust never handed to the agent, read back from the topic"),
    "behind_durable": ("recstream_behind_durable_events", "Events new to a user state that a commit or graph snapshot said already held them (lost writes; should stay 0)"),
    "double_deliveries": ("recstream_double_deliveries", "Offsets handed to the agent twice in one batch (applied once)"),
    "held_lists": ("recstream_held_lists", "Lists held back by a rebuild that has not caught up"),
    "bot_discounted": ("recstream_bot_discounted_events", "Events past their user's rate (RECSTREAM_BOT_MAX_EVENTS_PER_MINUTE): seen-filtering only, no interest, graph or trending change"),
    "bot_repeats": ("recstream_bot_repeat_engagements", "Repeated engagements of one user with one item within RECSTREAM_REPEAT_WINDOW_MINUTES, left out of the graph and trending"),
    "bots_flagged": ("recstream_bots_flagged", "Users newly flagged as suspected bots (bot_suspected on their lists)"),
    "foreign_ops": ("recstream_graph_foreign_ops", "Other partitions' graph ops folded into this worker's partition views (the global graph)"),
    "held_events": ("recstream_graph_held_events", "Events held back because another partition was more than RECSTREAM_GRAPH_DELAY_EPOCHS behind (each time held)"),
    "delta_records": ("recstream_graph_delta_records", "Records this worker sent to graph-deltas (ops and progress of its partitions)"),
    "ticks": ("recstream_graph_ticks", "Tick records sent to idle events partitions that held the others back"),
    "online_events": ("recstream_online_events", "Events with an item whose user had a list: looked up in it before being folded in (live quality)"),
}
ONLINE_HITS = ("recstream_online_hits", "Of those events, the ones whose item was in the user's latest list within the top k (HR@k = hits / events)")
HIT_KS = (1, 5, 10)
DEAD_LETTERS = ("recstream_dead_letters", "Records sent to the dead-letter topic, by reason code")
# field of models.encoder.EncoderStats -> (metric name without _total, help)
ENCODER_TOTALS: dict[str, tuple[str, str]] = {
    "cache_hits": ("recstream_encoder_cache_hits", "Texts answered from the encoder's cache"),
    "texts_encoded": ("recstream_encoder_texts", "Distinct texts run through the model"),
}
ENCODER_MISSES = ("recstream_encoder_cache_misses", "Texts not in the encoder's cache (requested - hits)")


def _nothing() -> Mapping[str, Any]:
    return {}


@dataclass
class Readers:
    """Where the collector reads totals at scrape time (the app wires these)."""

    counters: Callable[[], Mapping[str, Any]] = _nothing  # fields of agents.deps.Counters
    encoder: Callable[[], Mapping[str, Any]] = _nothing  # fields of EncoderStats ({} before the model loads)
    catalog_items: Callable[[], int | None] = lambda: None


class _TotalsCollector:
    """Exposes the running totals the agents and the encoder keep anyway."""

    def __init__(self, readers: Readers) -> None:
        self.readers = readers

    def collect(self) -> Iterator[Metric]:
        counters = self.readers.counters()
        for field, (name, help_text) in COUNTER_TOTALS.items():
            yield CounterMetricFamily(name, help_text, value=float(counters.get(field, 0)))
        by_reason = CounterMetricFamily(DEAD_LETTERS[0], DEAD_LETTERS[1], labels=["reason"])
        for reason, count in sorted((counters.get("dead_letters_by_reason") or {}).items()):
            by_reason.add_metric([reason], float(count))
        yield by_reason
        hits = CounterMetricFamily(ONLINE_HITS[0], ONLINE_HITS[1], labels=["k"])
        online_hits = counters.get("online_hits") or {}
        for k in HIT_KS:
            hits.add_metric([str(k)], float(online_hits.get(k, 0)))
        yield hits
        stats = self.readers.encoder()
        for field, (name, help_text) in ENCODER_TOTALS.items():
            yield CounterMetricFamily(name, help_text, value=float(stats.get(field, 0)))
        misses = float(stats.get("texts_requested", 0)) - float(stats.get("cache_hits", 0))
        yield CounterMetricFamily(ENCODER_MISSES[0], ENCODER_MISSES[1], value=max(0.0, misses))
        catalog = self.readers.catalog_items()
        if catalog is not None:
            yield GaugeMetricFamily("recstream_catalog_items", "Items in this worker's in-memory catalog", value=float(catalog))


Refresher = Callable[[], Awaitable[None]]


class WorkerMetrics:
    """One worker's metrics: its registry, the instruments the agents
    observe, and the readers and refreshers the app wires in."""

    def __init__(self, readers: Readers | None = None) -> None:
        self.registry = CollectorRegistry()
        self.readers = readers or Readers()
        self.registry.register(_TotalsCollector(self.readers))  # type: ignore[arg-type]
        self.refreshers: list[Refresher] = []
        self.batch_size = Histogram(
            "recstream_batch_size", "Records per batch an agent took", ["agent"],
            buckets=BATCH_SIZE_BUCKETS, registry=self.registry,
        )
        self.encode_seconds = Histogram(
            "recstream_encode_seconds", "Seconds per encoder call that ran the model (texts missing from the cache)",
            buckets=ENCODE_SECONDS_BUCKETS, registry=self.registry,
        )
        self.list_latency = Histogram(
            "recstream_list_latency_seconds",
            "From the Kafka timestamp of a user's last event in a batch to the moment that user's list is sent",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.users_in_state = Gauge(
            "recstream_users_in_state", "Users with a state in this worker's partitions of the user-state table",
            ["partition"], registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "recstream_consumer_lag", "Records in an assigned source partition past this worker's fetch position (highwater - position)",
            ["topic", "partition"], registry=self.registry,
        )
        self.graph_staleness = Gauge(
            "recstream_graph_staleness_ms",
            "Event time by which an owned partition's view of the global graph lags the partition's own events "
            "(its watermark minus the end of the last epoch of other partitions' ops folded in); bounded by "
            "(RECSTREAM_GRAPH_DELAY_EPOCHS + 1) x RECSTREAM_GRAPH_EPOCH_MS while no partition falls behind",
            ["partition"], registry=self.registry,
        )
        self.graph_held = Gauge(
            "recstream_graph_held_now", "Events an owned partition holds back now, waiting for a partition more than the delay behind",
            ["partition"], registry=self.registry,
        )
        self.refresh_errors = Gauge(
            "recstream_metrics_refresh_failed", "1 when the last scrape could not refresh a gauge (see the worker log)",
            registry=self.registry,
        )

    # -- observed by the agents and the encoder --------------------------------
    def observe_batch(self, agent: str, size: int) -> None:
        self.batch_size.labels(agent).observe(size)

    def observe_encode(self, texts: int, seconds: float) -> None:
        """Called by the encoder (in its thread) after each model run; the
        texts themselves are counted by the encoder's stats."""
        self.encode_seconds.observe(seconds)

    def observe_list_latency(self, record_timestamp_s: float | None, now_s: float | None = None) -> None:
        """One list sent for an event with Kafka timestamp ``record_timestamp_s``
        (seconds, as Faust gives it; ``None``/0: the record had none)."""
        if not record_timestamp_s:
            return
        now = time.time() if now_s is None else now_s
        self.list_latency.observe(max(0.0, now - record_timestamp_s))

    # -- refreshed at scrape time ----------------------------------------------
    def set_users_in_state(self, counts: Mapping[int, int]) -> None:
        """Replace the per-partition user counts (partitions no longer owned disappear)."""
        self.users_in_state.clear()
        for partition, count in counts.items():
            self.users_in_state.labels(str(partition)).set(count)

    def set_graph_views(self, views: Mapping[int, tuple[int, int]]) -> None:
        """Per owned partition: (staleness in ms, events held now)."""
        self.graph_staleness.clear()
        self.graph_held.clear()
        for partition, (staleness, held) in views.items():
            self.graph_staleness.labels(str(partition)).set(staleness)
            self.graph_held.labels(str(partition)).set(held)

    def set_consumer_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Replace the per-partition lags (revoked partitions disappear)."""
        self.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)

    async def refresh(self) -> None:
        """Run the refreshers; one that fails leaves its gauge as it was and
        sets ``recstream_metrics_refresh_failed`` (a scrape never fails)."""
        failed = False
        for refresher in self.refreshers:
            try:
                await refresher()
            except Exception as exc:  # noqa: BLE001 - metrics must not take the endpoint down
                failed = True
                log.warning("metrics refresh %s failed: %s: %s", getattr(refresher, "__name__", refresher), type(exc).__name__, exc)
        self.refresh_errors.set(1 if failed else 0)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)

    async def scrape(self) -> bytes:
        await self.refresh()
        return self.exposition()
