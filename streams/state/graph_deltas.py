"""The ``graph-deltas`` topic: how every worker learns every partition's
graph ops (``models.global_graph``).

- The owner of events partition ``p`` sends a :class:`DeltaRecord` to
  partition ``p`` of ``graph-deltas`` after each batch of ``p`` (its new ops
  and its epoch), through the app's producer, so the record is flushed with
  the batch's states before any graph snapshot that covers it.
- :class:`DeltaFeed` reads every partition of the topic from the beginning
  with a plain consumer (no group: every worker needs all of it) onto the
  worker's :class:`DeltaBoard`. The board takes records only from the topic,
  and a partition's ops republished after a crash are dropped by offset.
  The one shortcut: a writer (one ownership of a partition) numbers its
  records, and adds a record to its own board as it sends it only while its
  previous one is on the board already (its first always comes back through
  the topic, after the records of the partition's earlier owners). A worker
  that owns several partitions then moves them on without a round trip
  through the broker; others still learn them from the topic. A board that
  reads the topic again forgets what it held (:meth:`DeltaBoard.reset`), so
  the shortcut waits for the re-read.
- Ticks: an owned events partition that has been idle for the tick interval
  and is further behind than the delay gets a tick record at the newest
  event time any partition has received (``DeltaRecord.seen``, held events
  included), so it cannot hold the others back.

The ops of epochs every owned view has folded in are pruned from the board;
a view that needs older ones (a partition taken over) makes the feed read
the topic again from the start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Iterable, Protocol

from aiokafka import AIOKafkaConsumer

from streams.kafka.clients import _partitions, client_kwargs, true_end_offsets
from streams.kafka.topics import graph_deltas_topic
from streams.settings import Settings

log = logging.getLogger(__name__)


class Board(Protocol):
    """What the feed and the ticker need of ``models.global_graph.DeltaBoard``."""

    partitions: int

    def take(self, value: bytes) -> Any: ...  # decode and add one record, returned; None: not a valid record

    def reset(self) -> None: ...

    def progress(self, partition: int) -> int: ...

    def held_ops(self) -> int: ...


class DeltaFeed:
    """Keeps ``board`` up to date with the ``graph-deltas`` topic."""

    def __init__(self, settings: Settings, board: Board, on_records: Callable[[], Awaitable[None]]) -> None:
        self.settings = settings
        self.board = board
        self.topic = graph_deltas_topic(settings)
        self._on_records = on_records
        self._rewind = asyncio.Event()
        self.caught_up = asyncio.Event()  # read up to the end the topic had at the (re)start
        self.records = 0
        self.bad_records = 0
        self.rewinds = 0

    def rewind(self) -> None:
        """Read the topic again from the start (a view needs pruned ops)."""
        self._rewind.set()

    async def run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the broker went away: retry, the board keeps what it has
                log.exception("graph-deltas feed failed; reconnecting in 1 s")
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=20, **client_kwargs(self.settings))
        await consumer.start()
        try:
            partitions = await _partitions(consumer, self.topic)
            if not partitions:
                raise RuntimeError(f"topic {self.topic} has no partitions")
            while True:
                self._rewind.clear()
                self.caught_up.clear()
                # the ends first: true_end_offsets re-assigns the consumer and
                # reads the last batch (the embedded broker's ListOffsets quirk)
                ends = await true_end_offsets(consumer, partitions)
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                pending = {tp for tp in partitions if ends[tp] > 0}
                if not pending:
                    self.caught_up.set()
                while not self._rewind.is_set():
                    batches = await consumer.getmany(timeout_ms=200, max_records=5_000)
                    taken = 0
                    for tp, messages in batches.items():
                        for message in messages:
                            taken += self._take(message.value)
                            if tp in pending and message.offset + 1 >= ends[tp]:
                                pending.discard(tp)
                    if pending and not batches:
                        for tp in list(pending):
                            if await consumer.position(tp) >= ends[tp]:
                                pending.discard(tp)
                    if not pending and not self.caught_up.is_set():
                        self.caught_up.set()
                        log.info("graph-deltas read to its end: %d records, %d ops held", self.records, self.board.held_ops())
                    if batches:
                        await self._on_records()
                self.rewinds += 1
                self.board.reset()
                log.info("graph-deltas: reading again from the start (a view needs ops pruned from the board)")
        finally:
            await consumer.stop()

    def _take(self, value: bytes | None) -> int:
        if value is None:
            return 0
        record = self.board.take(value)
        if record is None:
            self.bad_records += 1
            log.warning("graph-deltas: an undecodable record was skipped")
            return 0
        self.records += 1
        return 1


class Ticker:
    """Decides which owned, idle partitions need a tick, and at what time."""

    def __init__(self, board: Board, interval_s: float, delay: int, epoch_ms: int, end: int) -> None:
        self.board = board
        self.interval_s = interval_s
        self.delay, self.epoch_ms, self.end = delay, epoch_ms, end  # end: the progress of a partition with no events left
        self.last_delivery: dict[int, float] = {}
        self.sent = 0

    def delivered(self, partition: int, now: float | None = None) -> None:
        self.last_delivery[partition] = time.monotonic() if now is None else now

    def due(self, owned: Iterable[int], now: float | None = None, holding: Callable[[int], bool] = lambda p: False) -> list[tuple[int, int]]:
        """(partition, tick time) for each owned partition idle for the
        interval and more than the delay behind the newest event time any
        partition has received (held events included). The tick goes to that
        time, so one tick releases every event the others hold for it: a
        tick to the most advanced partition's *progress* (its first held
        event) let it fold only ``delay + 1`` epochs per tick interval, and
        an out-of-order stream stalled behind an idle partition. A partition
        that holds events is waiting, not idle: a tick would only land
        between its events."""
        now = time.monotonic() if now is None else now
        board = self.board
        live = [q for q in range(board.partitions) if board.progress(q) < self.end]
        if not live:
            return []
        newest = max(max(board.seen(q), board.progress(q) * self.epoch_ms) for q in live)
        if newest < 0:
            return []
        target = newest // self.epoch_ms
        ticks = []
        for p in owned:
            idle = now - self.last_delivery.get(p, 0.0) >= self.interval_s and not holding(p)
            if idle and board.progress(p) < target - self.delay:
                ticks.append((p, newest))
                self.last_delivery[p] = now  # one tick per interval at most
        self.sent += len(ticks)
        return ticks
