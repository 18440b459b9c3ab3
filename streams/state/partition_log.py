"""The log state of one owned ``events`` partition: what turns Faust's
at-least-once delivery into an exactly-once effect (README, "Nothing lost,
nothing counted twice").

- user states carry an offset watermark and the ids of their last events
  (``models.recommend.process_partition_events``); this module keeps what
  the partition as a whole needs besides:
- holes: every offset handed to the agent is noted; offsets missing between
  them, or since the previous batch, are events Faust never handed over,
  read back from the topic (:meth:`PartitionLog.contiguous`);
- graph load and catch-up: the partition's graph starts from its snapshot in
  the item-graph table and replays the events between the snapshot and the
  first delivered one, read from the topic (:meth:`PartitionLog.resume`);
- redelivery watermarks: a batch that starts at or below the graph's offset
  ranks only the users with events past it (``Resume.rank_from``);
- snapshots: the changed graph rows, every ``graph_flush_s`` or sooner for
  busy users, written only once the producer has flushed the states and
  lists of every event up to them (each graph row is its own watermark, so
  a torn snapshot is harmless). This does not wait for Faust's offset
  commit, which can stall for long stretches (``streams.state.faust_fixes``);
- the TTL sweep: a cursor walks the partition's user states, a slice per batch.

Generic over records and graphs: the caller hands in how to read the topic,
how to make a graph and how to tell an expired state, so nothing here needs
the models or a broker. One :class:`PartitionLog` per owned partition: a
revocation drops it with a single ``pop``.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generic, Iterable, MutableMapping, Protocol, TypeVar

from schemas import InvalidRecord
from streams.kafka.clients import read_partition_range
from streams.settings import Settings
from streams.state.tables import acting_for, graph_offset_key, graph_row_key, partition_graph_snapshot

log = logging.getLogger(__name__)

Entry = tuple[int, Any, Any]  # (offset, record with a user_id, Faust event; None when read back from the topic)
Reader = Callable[[int, int], Awaitable[list[Entry]]]  # valid events in [start, stop) of the partition
Rows = list[tuple[str, bytes]]  # (item id, encoded graph row)


class Graph(Protocol):
    """What the log needs of a partition's item graph (``models.graph.ItemGraph``)."""

    last_offset: int  # the newest event folded in (-1: none)
    latest_ts: int  # the partition's event time
    dirty: set[str]  # rows changed since the last take_dirty

    def take_dirty(self) -> Rows: ...

    def load_row(self, item_id: str, data: bytes) -> None: ...

    def mark(self) -> str: ...  # the watermarks persisted with a snapshot (first field: last_offset)

    def restore_mark(self, mark: str) -> None: ...


G = TypeVar("G", bound=Graph)


@dataclass
class Contiguous:
    """One partition's events of a batch, in offset order, each offset once."""

    entries: list[Entry]
    holes: list[int]  # offsets no event was delivered for: done once the batch is written
    found: int = 0  # events read back from the holes
    doubles: int = 0  # offsets handed over more than once


@dataclass
class Resume(Generic[G]):
    """Where a batch starts on the partition's graph."""

    graph: G
    catch_up: list[Entry]  # events to fold in before the batch
    rank_from: int  # users whose events all lie below are not ranked again (-1: rank all)
    redelivered: bool = False  # the batch starts behind this process's own graph


@dataclass
class PartitionLog(Generic[G]):
    """Offsets, graph and snapshots of one owned ``events`` partition."""

    partition: int
    graph: G | None = None  # loaded from the item-graph table on first use
    # offsets handed to the agent since the last batch of the partition, and
    # the highest before them (holes between them are events never seen)
    delivered: set[int] = field(default_factory=set)
    delivered_upto: int | None = None
    snapshot_offset: int | None = None  # of the newest snapshot written (progress log)
    pending: list[tuple[str, Rows]] = field(default_factory=list)  # snapshots (mark, rows) waiting for the flush
    # events taken but not yet folded: the global graph lacks another
    # partition's ops their epoch needs (models.global_graph); they come first
    # in the next batch. Not committed past: Faust may commit their offsets,
    # and a restart replays them from the graph's snapshot like a catch-up.
    held: list[Entry] = field(default_factory=list)
    held_epoch: int = -1
    # the newest event time received in this ownership, held events included
    # (DeltaRecord.seen): a running maximum, so a partition holding a long
    # backlog does not rescan it for every record it sends
    seen_ts: int = -1
    # the highest Resume.rank_from of this ownership: users whose events all
    # lie below it and were applied before are not ranked again
    rank_from: int = -1
    # this ownership's id on graph-deltas and the number of its next record
    # (DeltaRecord.source and seq, streams.state.graph_deltas)
    source: str = field(default_factory=lambda: uuid.uuid4().hex)
    delta_seq: int = 0
    since_snapshot: Counter[str] = field(default_factory=Counter)  # events per user since the last one
    flushed_at: float = 0.0  # monotonic time of the last snapshot taken
    # the latest Faust event of the partition: table writes outside the
    # agent's batch (snapshots, sweep) act for it to reach the right partition
    anchor: Any = None
    sweep_cursor: bytes | None = None  # next user-state key of the sweep

    def note_delivered(self, offset: int) -> None:
        self.delivered.add(offset)

    def take_holes(self, offsets: Iterable[int]) -> list[tuple[int, int]]:
        """``[start, stop)`` ranges missing from the offsets delivered since
        the last call (``offsets`` when none were noted) and since the highest
        offset delivered before."""
        delivered = sorted(self.delivered or offsets)
        self.delivered = set()
        previous = self.delivered_upto
        if previous is not None and previous < delivered[0]:
            delivered.insert(0, previous)
        self.delivered_upto = max(delivered[-1], previous if previous is not None else -1)
        return [(a + 1, b) for a, b in zip(delivered, delivered[1:]) if b > a + 1]

    async def contiguous(self, entries: list[Entry], read: Reader) -> Contiguous:
        """The batch's events in offset order, each offset once and without holes.

        Per-user offset watermarks take any event below a user's watermark
        for a redelivery, so an event the agent never saw while later ones
        went through would be lost for good (Faust's commit stalls at such a
        hole, so the event comes back after a restart, but too late). This
        was seen on the embedded broker under kill -9 restarts. Holes are
        read back from the topic; on Kafka, transaction markers leave holes
        that read back as nothing.
        """
        by_offset: dict[int, Entry] = {}
        for entry in entries:
            by_offset.setdefault(entry[0], entry)
        result = Contiguous([], [], doubles=len(entries) - len(by_offset))
        holes = self.take_holes(by_offset)
        if holes:
            found = [e for e in await read(holes[0][0], holes[-1][1]) if e[0] not in by_offset and any(a <= e[0] < b for a, b in holes)]
            by_offset.update((e[0], e) for e in found)
            result.found = len(found)
            if found:
                log.warning("partition %d: %d events never delivered to the agent (offsets %d..%d) read back from the topic",
                            self.partition, len(found), holes[0][0], holes[-1][1] - 1)
        result.entries = [by_offset[o] for o in sorted(by_offset)]
        result.holes = [o for start, stop in holes for o in range(start, stop)]
        return result

    async def resume(
        self, first_offset: int, new_graph: Callable[[], G], table: Iterable[tuple[bytes, bytes | None]], read: Reader, tracked_offsets: int
    ) -> Resume[G]:
        """The partition's graph (loaded from the item-graph ``table`` rows on
        first use), the events to fold in before a batch starting at
        ``first_offset`` and the offset below which users are not ranked again
        (``tracked_offsets``: the newest events per user whose history entry
        the graph can replay)."""
        graph = self.graph
        if graph is not None:
            if first_offset <= graph.last_offset:
                # Redelivery into the graph this process built (the consumer
                # went back to the committed offset, or re-read the partition's
                # last record at its end, as Tansu does). Every row is its own
                # watermark, so the events change nothing they changed before;
                # their lists went out from this process already. Only users
                # with events past the graph are ranked again.
                log.info("partition %d: redelivery from offset %d; this process's graph is at %d", self.partition, first_offset, graph.last_offset)
                return Resume(graph, [], graph.last_offset + 1, redelivered=True)
            return Resume(graph, [], -1)
        graph = self.graph = new_graph()
        mark, rows = partition_graph_snapshot(table, self.partition)
        for item_id, row in rows:
            graph.load_row(item_id, row)
        if mark is not None:
            graph.restore_mark(mark)
        self.snapshot_offset = graph.last_offset
        log.info("partition %d: graph loaded at offset %d; first event delivered: %d", self.partition, graph.last_offset, first_offset)
        catch_up = await read(graph.last_offset + 1, first_offset)
        if catch_up:
            log.info("partition %d: graph replays %d events (offsets %d..%d) committed after its last snapshot",
                     self.partition, len(catch_up), graph.last_offset + 1, first_offset - 1)
            self._warn_if_replay_inexact(catch_up, tracked_offsets)
        if first_offset <= graph.last_offset:
            # the consumer's commit lags the snapshot: the states and lists of
            # the events up to the snapshot were durable before it was written
            return Resume(graph, [], graph.last_offset + 1)
        return Resume(graph, catch_up, first_offset if catch_up else -1)

    def _warn_if_replay_inexact(self, catch_up: list[Entry], tracked_offsets: int) -> None:
        """The graph replays an event from the user's history entry for it,
        found by its source offset; only the newest ``tracked_offsets``
        entries keep one. Snapshots are taken often enough to stay inside that
        (:meth:`maybe_snapshot`); say so when a stall of the commits let a
        user run past it."""
        per_user = Counter(record.user_id for _, record, _ in catch_up)
        over = [user for user, n in per_user.items() if n > tracked_offsets]
        if over:
            log.warning("partition %d: %d users have more than %d events to replay into the graph; "
                        "their oldest edges in this stretch are not rebuilt", self.partition, len(over), tracked_offsets)

    def maybe_snapshot(self, users: Iterable[str], now: float, *, force: bool, tracked_offsets: int, flush_s: float) -> bool:
        """Take a snapshot of the graph's changed rows (written by
        :meth:`write_snapshots`) at most every ``flush_s`` while batches come
        full (a hot item's row changes in almost every batch; writing it once
        per interval keeps the changelog fast), and sooner when one user's
        events since the last snapshot (``users``: one name per event) reach
        half of what their history can replay after a crash
        (``tracked_offsets``)."""
        graph = self.graph
        assert graph is not None
        self.since_snapshot.update(users)
        due = force or max(self.since_snapshot.values(), default=0) * 2 >= tracked_offsets
        if not graph.dirty or (not due and now - self.flushed_at < flush_s):
            return False
        self.flushed_at = now
        self.since_snapshot.clear()
        self.pending.append((graph.mark(), graph.take_dirty()))
        return True

    def write_snapshots(self, table: MutableMapping[bytes, bytes]) -> int:
        """Write the pending snapshots, oldest first: rows, then the offset key
        (same changelog partition, so in order). Call once the producer has
        flushed. Returns how many were written."""
        pending, self.pending = self.pending, []
        if not pending or self.anchor is None or self.graph is None:
            return 0
        with acting_for(self.anchor):
            for mark, rows in pending:
                for item_id, row in rows:
                    table[graph_row_key(self.partition, item_id)] = row
                table[graph_offset_key(self.partition)] = mark.encode()
                self.snapshot_offset = int(mark.split()[0])
        return len(pending)

    def sweep(self, table: MutableMapping[bytes, bytes], chunk: Callable[[bytes | None, int], list[tuple[bytes, bytes]]],
              size: int, expired: Callable[[bytes], bool]) -> list[bytes]:
        """Delete the next ``size`` user states (``chunk(after, size)``: the
        partition's keys after ``after``, in order) that are ``expired``;
        return their keys. A cursor walks the keys, so no call scans millions."""
        found = chunk(self.sweep_cursor, size)
        self.sweep_cursor = found[-1][0] if len(found) == size else None
        gone = [key for key, value in found if expired(value)]
        with acting_for(self.anchor):
            for key in gone:
                del table[key]
        return gone


def topic_reader(settings: Settings, topic: str, partition: int, decode: Callable[[bytes | None, bytes], Any]) -> Reader:
    """Reads back the valid records of one partition of ``topic``:
    ``decode(value, key)`` (an absent key as ``b""``) raises
    :class:`schemas.InvalidRecord` for those dead-lettered on first delivery."""

    async def read(start: int, stop: int) -> list[Entry]:
        entries: list[Entry] = []
        for record in await read_partition_range(settings, topic, partition, start, stop):
            try:
                entries.append((record.offset, decode(record.value, record.key or b""), None))
            except InvalidRecord:
                continue
        return entries

    return read


class PartitionLogs(dict[int, PartitionLog]):
    """The log of each owned partition, made on first mention."""

    def __missing__(self, partition: int) -> PartitionLog:
        made = self[partition] = PartitionLog(partition)
        return made

    def snapshot_offsets(self) -> dict[int, int]:
        """Offset of the newest snapshot written, per partition that has one."""
        return {p: plog.snapshot_offset for p, plog in sorted(self.items()) if plog.snapshot_offset is not None}
