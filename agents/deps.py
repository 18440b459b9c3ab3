"""What the agents need, handed to them by the app's entry point."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Sequence

import faust
import numpy as np

from models.catalog import ItemCatalog
from models.encoder import TextEncoder
from models.global_graph import DEFAULT_EPOCHS, DeltaBoard, EpochParams
from models.graph import GraphParams
from models.guard import DEFAULT_GUARD, GuardParams
from models.interest import InterestParams
from models.ranking import RankingParams
from models.recommend import BatchStats
from schemas import Limits
from streams.web.metrics import WorkerMetrics
from streams.settings import Settings
from streams.state.partition_log import PartitionLogs

log = logging.getLogger(__name__)


class EncoderSlot:
    """Loads the encoder once, off the event loop, and runs it off the loop.

    Model loading and encoding take seconds of CPU; doing either on the event
    loop would stall heartbeats and trigger needless rebalances.
    """

    def __init__(self, load: Callable[[], TextEncoder]) -> None:
        self._load = load
        self._encoder: TextEncoder | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> TextEncoder:
        if self._encoder is None:
            async with self._lock:
                if self._encoder is None:
                    started = time.perf_counter()
                    self._encoder = await asyncio.to_thread(self._load)
                    log.info("encoder %s loaded on %s in %.1fs", self._encoder.version, self._encoder.device, time.perf_counter() - started)
        return self._encoder

    @property
    def loaded(self) -> TextEncoder | None:
        return self._encoder

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        encoder = await self.get()
        return await asyncio.to_thread(encoder.encode, list(texts))


@dataclass
class Counters:
    """Running totals, logged periodically and read by the demo and benches."""

    events: int = 0
    applied: int = 0  # user states written
    dead_letters: int = 0
    dead_letters_by_reason: Tally[str] = field(default_factory=Tally)
    lists: int = 0
    held_lists: int = 0  # made while a rebuild holds lists (not on recommendations)
    items: int = 0
    state_resets: int = 0
    batches: int = 0
    redelivered: int = 0  # events at or below their user's watermark
    duplicates: int = 0  # events whose id the user had seen
    forgotten: int = 0
    expired: int = 0  # states reset on touch or removed by the sweep
    graph_catch_up: int = 0  # events the graph replayed after a restart
    graph_snapshots: int = 0
    skipped_revoked: int = 0  # events of partitions revoked while batched
    redelivered_in_process: int = 0  # batches starting behind this process's graph
    gap_events: int = 0  # events the consumer skipped, read back from the topic
    # the global graph (models.global_graph)
    foreign_ops: int = 0  # other partitions' ops folded into owned views
    held_events: int = 0  # events held back because another partition was behind
    delta_records: int = 0  # records sent to graph-deltas
    ticks: int = 0  # tick records sent to idle partitions
    behind_durable: int = 0  # events new to a state that should have had them (lost writes)
    double_deliveries: int = 0  # one offset handed over twice in a batch
    # the bot guard (models.guard)
    bot_discounted: int = 0  # events past their user's rate: seen only
    bot_repeats: int = 0  # repeated engagements not fed to the graph and trending
    bots_flagged: int = 0  # users newly flagged as suspected bots
    suspected_bots: deque = field(default_factory=lambda: deque(maxlen=50))  # user ids, newest last
    # live quality (models.quality): events looked up in their user's last list, hits at k
    online_events: int = 0
    online_hits: Tally[int] = field(default_factory=Tally)
    started: float = field(default_factory=time.monotonic)

    def add(self, stats: BatchStats) -> None:
        """Add one batch's :class:`models.recommend.BatchStats`."""
        self.redelivered += stats.redelivered
        self.duplicates += stats.duplicates
        self.forgotten += stats.forgotten
        self.expired += stats.expired
        self.behind_durable += stats.behind_durable
        self.foreign_ops += stats.foreign_ops
        self.bot_discounted += stats.discounted
        self.bot_repeats += stats.repeats
        self.bots_flagged += stats.flagged
        self.suspected_bots.extend(stats.flagged_users)
        self.online_events += stats.online.events
        self.online_hits.update(stats.online.hits)


class RecentLists:
    """The latest list this worker published per user, for the dashboard's
    user box; bounded (least recently published users fall out)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._lists: OrderedDict[str, object] = OrderedDict()

    def put(self, user_id: str, record: object | None) -> None:
        self._lists.pop(user_id, None)
        if record is None:  # a tombstone
            return
        self._lists[user_id] = record
        while len(self._lists) > self.capacity:
            self._lists.popitem(last=False)

    def get(self, user_id: str) -> object | None:
        return self._lists.get(user_id)


async def _nothing() -> None:
    return None


@dataclass
class AgentDeps:
    """Topics, tables and models the agents wire together."""

    settings: Settings
    events_topic: faust.TopicT
    items_topic: faust.TopicT
    recommendations_topic: faust.TopicT
    dead_letter_topic: faust.TopicT
    user_state: faust.Table
    item_vectors: faust.Table
    item_graph: faust.Table
    catalog: ItemCatalog
    encoder: EncoderSlot
    interest_params: InterestParams
    ranking_params: RankingParams
    graph_params: GraphParams
    limits: Limits
    model_version: str
    guard_params: GuardParams = DEFAULT_GUARD
    counters: Counters = field(default_factory=Counters)
    # Prometheus instruments of this app (streams.web.metrics); totals are read
    # from `counters` at scrape time, so agents only observe histograms
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    # the log state (graph, delivered offsets, snapshots, sweep cursor) of
    # each owned events partition; a revocation pops the partition's
    partition_logs: PartitionLogs = field(default_factory=PartitionLogs)
    recent_lists: RecentLists = field(default_factory=RecentLists)
    graph_flush_s: float = 5.0  # a partition's graph is snapshotted at most this often while batches come full
    # expiry sweep: keys per step, keys to tombstone
    sweep_chunk: int = 500
    expired_users: list[bytes] = field(default_factory=list)
    # the events partitions this worker owns now (None: unknown, e.g. in tests)
    assigned: Callable[[], "set[int] | None"] = lambda: None
    # waits until every record sent so far is acknowledged (states, lists)
    flush_producer: Callable[[], Awaitable[None]] = lambda: _nothing()
    # tells Faust's consumer that offsets the agent read back itself are done
    mark_processed: Callable[[int, list[int]], int] = lambda partition, offsets: 0
    # where lists go now (streams.ops.rebuild.CatchUpGate.topic): a rebuild holds
    # them (None, or a held-lists topic) until it has caught up; None here
    # means always ``recommendations_topic``
    lists_topic: "Callable[[], faust.TopicT | None] | None" = None
    # awaited before each events batch (a rebuild waits for its catalog)
    before_events: "Callable[[], Awaitable[None]] | None" = None
    # told of each list sent to ``recommendations`` (user key, offset of the
    # state it was ranked from, value; None = tombstone): the serving API's
    # latest lists (streams.state.latest)
    on_list: Callable[[bytes, int, "bytes | None"], None] = lambda key, offset, value: None
    # the global graph: every partition's ops as this worker knows them (None:
    # each partition ranks on its own graph), where this worker's partitions
    # send theirs, and one batch at a time (the feed folds held events too)
    epochs: EpochParams = DEFAULT_EPOCHS
    board: DeltaBoard | None = None
    deltas_topic: "faust.TopicT | None" = None
    on_delivery: Callable[[int], None] = lambda partition: None
    rewind_deltas: Callable[[], None] = lambda: None
    batch_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def list_destination(self) -> "tuple[faust.TopicT | None, bool]":
        """(topic for lists or None to drop them, whether they are held)."""
        if self.lists_topic is None:
            return self.recommendations_topic, False
        topic = self.lists_topic()
        return topic, topic is not self.recommendations_topic
