"""One collaborative signal for all partitions: event-time epochs.

Each ``events`` partition keeps a *view* of the global item graph (an
:class:`models.graph.ItemGraph`): its own engagements go in at once, and
every other partition's engagements go in by event-time epoch, a fixed
delay behind.

- A partition's **watermark** is the highest event time seen so far in
  offset order (ticks included: :data:`schemas.EventType.TICK`); an event's
  **epoch** is ``watermark // epoch_ms``. Both come from the partition's
  data alone, so a replay assigns the same epochs.
- Every engagement the graph takes is a :class:`GraphOp` (the item, the
  user's previous items it links to, the time). Each partition publishes its
  ops and its current epoch (:class:`DeltaRecord`); every worker collects
  every partition's records on a :class:`DeltaBoard`.
- Before a partition's event of epoch ``e`` the view folds in the other
  partitions' ops of the epochs up to ``e - delay - 1`` that it has not
  folded yet, in a fixed order (epoch, partition, offset). Those epochs are
  complete once every other partition has reached epoch ``e - delay``; until
  then the partition holds its events back (:meth:`DeltaBoard.ready`). The
  minimum partition never waits, so nothing deadlocks; an idle one is moved
  on by ticks.

So the view at each of the partition's events is a function of the events
alone (its own up to that event, everyone's of the epochs before
``e - delay``), not of timing, worker count, crashes or rebalances, and
every list ranked on it is reproducible. Floating-point sums are not
reordered: the order of application is fixed, so no integer weights are
needed for the bits to agree.

Pure computation: no Kafka here. ``streams`` moves :class:`DeltaRecord` over
the ``graph-deltas`` topic; offline replays use :func:`replay_partitions`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, MutableMapping, Sequence

import msgspec

from models.graph import ItemGraph

END_OF_INPUT = 1 << 62  # an epoch past every real one: a partition with no events left
REPLAY_WINDOW = 1_000  # events per step of an offline replay (replay_partitions), at most


@dataclass(frozen=True)
class EpochParams:
    """``epoch_ms``: event time per epoch; ``delay``: epochs of other
    partitions' events a view may lack (the graph's staleness is at most
    ``(delay + 1) * epoch_ms`` of event time); ``enabled=False``: every
    partition ranks on its own graph only (no deltas, no waiting)."""

    epoch_ms: int = 1000
    delay: int = 2
    enabled: bool = True


DEFAULT_EPOCHS = EpochParams()


class GraphOp(msgspec.Struct, array_like=True, frozen=True):
    """One engagement as the graph took it (:meth:`ItemGraph.observe`)."""

    offset: int
    epoch: int
    item: str
    ts: int
    previous: list[str]
    previous_ts: list[int]


class DeltaRecord(msgspec.Struct, array_like=True):
    """A partition's progress: its ops since the previous record and the
    epoch and watermark of its newest processed event (ops of the epochs
    before ``epoch`` are complete)."""

    partition: int
    epoch: int
    watermark: int
    offset: int
    ops: list[GraphOp] = msgspec.field(default_factory=list)
    # who wrote it (one id per partition and ownership) and its number among
    # that writer's records (0, 1, ...): a writer adds its next record to
    # its own board at once only while its previous one is on the board
    # (DeltaBoard.holds_through, streams.state.graph_deltas)
    source: str = ""
    seq: int = -1
    # the highest event time the partition has received, held events
    # included (-1: not sent). Only the ticker reads it, to move an idle
    # partition far enough to release every held event at once; no list
    # depends on it (a tick is a record in the log, replayed as it is)
    seen: int = -1


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(DeltaRecord)


def encode_delta(record: DeltaRecord) -> bytes:
    return _encoder.encode(record)


def decode_delta(data: bytes) -> DeltaRecord:
    return _decoder.decode(data)


def epoch_of(watermark: int, params: EpochParams) -> int:
    return watermark // params.epoch_ms if watermark >= 0 else -1


@dataclass
class _PartitionOps:
    epochs: list[int] = field(default_factory=list)  # ascending
    ops: dict[int, list[GraphOp]] = field(default_factory=dict)
    taken: int = -1  # highest op offset taken (a republished op is dropped)
    progress: int = -1  # the partition's current epoch (-1: nothing yet)
    watermark: int = -1
    seen: int = -1  # the highest event time received, held events included


class DeltaBoard:
    """Every partition's ops by epoch and how far each partition is, as one
    worker knows them. Records may come in any order between partitions,
    and again after a crash: each partition's ops are taken once, by offset."""

    def __init__(self, partitions: int, params: EpochParams = DEFAULT_EPOCHS) -> None:
        self.params = params
        self._parts = [_PartitionOps() for _ in range(partitions)]
        self.pruned_upto = -1  # ops of epochs at or below were dropped (a view needing them must re-read)
        # per writer (DeltaRecord.source), the highest record number on the
        # board: records come from the topic in order, and a writer adds its
        # own directly only right after its previous one, so the board holds
        # every record of a writer up to this one
        self._through: dict[str, int] = {}

    def reset(self) -> None:
        """Forget everything (the records are about to be read again),
        including which writers' records are on the board: a writer's next
        records must come from the topic again until its previous one is
        re-read, else they would be taken before the older ones, which are
        then dropped by offset."""
        self._parts = [_PartitionOps() for _ in self._parts]
        self.pruned_upto = -1
        self._through = {}

    def holds_through(self, source: str, seq: int) -> bool:
        """Whether writer ``source``'s record number ``seq`` (and so every
        one before it) is on the board. Its first record must come in from
        the topic: it follows the records of the partition's earlier
        owners, which the board may not have read yet."""
        through = self._through.get(source) if source else None
        return through is not None and through >= seq

    @property
    def partitions(self) -> int:
        return len(self._parts)

    def add(self, record: DeltaRecord) -> int:
        """Take a record; returns how many of its ops were new."""
        part = self._parts[record.partition]
        new = 0
        for op in record.ops:
            if op.offset <= part.taken:
                continue
            part.taken = op.offset
            if op.epoch not in part.ops:
                part.ops[op.epoch] = []
                bisect.insort(part.epochs, op.epoch)
            part.ops[op.epoch].append(op)
            new += 1
        part.progress = max(part.progress, record.epoch)
        part.watermark = max(part.watermark, record.watermark)
        part.seen = max(part.seen, record.seen, record.watermark)
        if record.source and record.seq > self._through.get(record.source, -1):
            self._through[record.source] = record.seq
        return new

    def take(self, value: bytes) -> DeltaRecord | None:
        """:meth:`add` an encoded record and return it; None when it is not
        one (counted by the caller)."""
        try:
            record = decode_delta(value)
        except (msgspec.MsgspecError, TypeError, ValueError):
            return None
        if not 0 <= record.partition < len(self._parts):
            return None
        self.add(record)
        return record

    def progress(self, partition: int) -> int:
        return self._parts[partition].progress

    def watermark(self, partition: int) -> int:
        return self._parts[partition].watermark

    def max_watermark(self) -> int:
        return max((p.watermark for p in self._parts), default=-1)

    def seen(self, partition: int) -> int:
        """The highest event time partition ``partition`` has received, held
        events included (at least its watermark)."""
        return self._parts[partition].seen

    def ready(self, partition: int, epoch: int) -> bool:
        """Whether every other partition's ops of the epochs before
        ``epoch - delay`` are complete (each has reached ``epoch - delay``)."""
        need = epoch - self.params.delay
        return all(p.progress >= need for q, p in enumerate(self._parts) if q != partition)

    def blocking(self, partition: int, epoch: int) -> list[int]:
        """The partitions a view at ``epoch`` waits for."""
        need = epoch - self.params.delay
        return [q for q, p in enumerate(self._parts) if q != partition and p.progress < need]

    def foreign_ops(self, partition: int, after: int, upto: int) -> Iterator[GraphOp]:
        """Other partitions' ops of the epochs in ``(after, upto]``, by
        epoch, then partition, then offset: the one order every view uses."""
        per_epoch: dict[int, list[int]] = {}
        for q, part in enumerate(self._parts):
            if q == partition:
                continue
            lo = bisect.bisect_right(part.epochs, after)
            hi = bisect.bisect_right(part.epochs, upto)
            for epoch in part.epochs[lo:hi]:
                per_epoch.setdefault(epoch, []).append(q)
        for epoch in sorted(per_epoch):
            for q in per_epoch[epoch]:
                yield from self._parts[q].ops[epoch]

    def prune(self, upto: int) -> int:
        """Forget the ops of epochs at or below ``upto`` (every view has them)."""
        dropped = 0
        self.pruned_upto = max(self.pruned_upto, upto)
        for part in self._parts:
            cut = bisect.bisect_right(part.epochs, upto)
            for epoch in part.epochs[:cut]:
                dropped += len(part.ops.pop(epoch))
            del part.epochs[:cut]
        return dropped

    def held_ops(self) -> int:
        return sum(len(ops) for part in self._parts for ops in part.ops.values())


def catch_up_view(graph: ItemGraph, board: DeltaBoard, partition: int, epoch: int) -> int:
    """Fold into ``graph`` (partition ``partition``'s view) the other
    partitions' ops it needs before an event of ``epoch``; returns how many."""
    upto = epoch - board.params.delay - 1
    if upto <= graph.foreign_epoch:
        return 0
    ops = [(op.item, op.previous, op.previous_ts, op.ts) for op in board.foreign_ops(partition, graph.foreign_epoch, upto)]
    graph.observe_foreign_many(ops)  # one kernel call, in the one order
    graph.foreign_epoch = upto
    return len(ops)


def replay_partitions(
    by_partition: Mapping[int, Sequence[tuple[int, object]]],
    partitions: int,
    graphs: MutableMapping[int, ItemGraph],
    process: Callable[[int, Sequence[tuple[int, object]], ItemGraph, DeltaBoard | None], tuple[int, DeltaRecord | None]],
    params: EpochParams = DEFAULT_EPOCHS,
) -> DeltaBoard | None:
    """Offline: drive every partition's events through ``process`` the way
    the workers would, each partition as far as the board lets it, until all
    are done. ``process(partition, events, graph, board)`` folds a prefix of
    ``events`` and returns (how many it took, the partition's delta record).
    A partition with no events left counts as past every epoch (on a live
    deployment, ticks move it on)."""
    if not params.enabled:
        for partition, events in by_partition.items():
            process(partition, events, graphs[partition], None)
        return None
    board = DeltaBoard(partitions, params)
    cursor = {p: 0 for p in by_partition}
    for q in range(partitions):
        if not by_partition.get(q):
            board.add(DeltaRecord(q, END_OF_INPUT, -1, -1))
    while True:
        moved = False
        for partition in sorted(cursor):
            events = by_partition[partition]
            start = cursor[partition]
            if start >= len(events):
                continue
            before = board.progress(partition)
            # a window, not the whole rest: a step takes a short ready
            # prefix, and handing it every remaining event made the replay
            # quadratic (the lists do not depend on where steps end)
            taken, record = process(partition, events[start : start + REPLAY_WINDOW], graphs[partition], board)
            if record is not None:
                board.add(record)
            moved = moved or board.progress(partition) > before  # a held partition still tells how far it is
            cursor[partition] = start + taken
            if cursor[partition] >= len(events):
                board.add(DeltaRecord(partition, END_OF_INPUT, -1, -1))
            moved = moved or taken > 0
        if all(cursor[p] >= len(by_partition[p]) for p in cursor):
            return board
        if not moved:
            raise RuntimeError("replay_partitions: no partition can move (a bug: the minimum partition never waits)")
