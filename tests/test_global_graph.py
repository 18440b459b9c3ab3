"""The global graph (models.global_graph): one collaborative signal for all
partitions, lists still a function of the events.

A small simulator plays several partitions the way workers would: random
batch sizes, partitions taken in random order, delta records delivered late
and again, views restored from a snapshot mid-stream. Every list must equal
the list of the offline replay at the same trigger, bit for bit.
"""

from __future__ import annotations

import copy
import random
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.global_graph import DeltaBoard, DeltaRecord, EpochParams, decode_delta, encode_delta
from models.graph import ItemGraph
from models.interest import UserState
from models.recommend import BatchStats, delta_record, process_partition_events, replay_offline
from schemas import Event, EventType, tick_event
from tests.test_exactly_once import QUERIES, T0, make_catalog, make_stream

K = 5
EPOCHS = EpochParams(epoch_ms=120_000, delay=1)


def split(events: list[Event], partitions: int) -> dict[int, list[tuple[int, Event]]]:
    by_partition: dict[int, list[tuple[int, Event]]] = {p: [] for p in range(partitions)}
    for event in events:
        p = int(event.user_id[1:]) % partitions
        by_partition[p].append((len(by_partition[p]), event))
    return by_partition


def lists_of(updates) -> dict[str, tuple]:
    return {u: tuple((s.item_id, s.score) for s in update.ranked) for u, update in updates.items()}


class Live:
    """Partitions driven like workers: batches of random size, delta records
    delivered to the board late, out of order between partitions, twice."""

    def __init__(self, by_partition, partitions: int, catalog, rng: random.Random, epochs: EpochParams = EPOCHS) -> None:
        self.by_partition, self.catalog, self.rng, self.epochs = by_partition, catalog, rng, epochs
        self.board = DeltaBoard(partitions, epochs)
        self.graphs = {p: ItemGraph() for p in by_partition}
        self.states: dict[str, UserState] = defaultdict(UserState)
        self.cursor = {p: 0 for p in by_partition}
        self.held: dict[int, list] = {p: [] for p in by_partition}
        self.in_flight: dict[int, list[bytes]] = {p: [] for p in by_partition}  # per source: in order
        self.published: dict[tuple[str, int], tuple] = {}  # (user, trigger offset) -> list
        self.final: dict[str, tuple] = {}

    def step(self) -> bool:
        rng = self.rng
        p = rng.choice(sorted(self.by_partition))
        events = self.by_partition[p]
        n = rng.randint(0, 6)
        fresh = events[self.cursor[p] : self.cursor[p] + n]
        self.cursor[p] += len(fresh)
        exhausted = self.cursor[p] >= len(events)
        stats = BatchStats()
        batch = self.held[p] + fresh
        if exhausted and not self.held[p] and not fresh:
            batch = [(len(events), tick_event(10**15))]  # the idle partition's tick
            events.append(batch[0])
            self.cursor[p] += 1
        if batch:
            updates = process_partition_events(batch, self.states, self.graphs[p], self.catalog, QUERIES, K,
                                               stats=stats, board=self.board, partition=p)
            self.held[p] = stats.held
            for update in updates:
                listed = tuple((s.item_id, s.score) for s in update.ranked)
                self.published[(update.user_id, update.state.last_offset)] = listed
                self.final[update.user_id] = listed
            record = encode_delta(delta_record(p, self.graphs[p], stats.ops, self.epochs, stats.held_epoch))
            self.in_flight[p].append(record)
            if rng.random() < 0.2:
                self.in_flight[p].append(record)  # republished after a crash: taken once
        for q in list(self.in_flight):  # deliver some, each source in order
            while self.in_flight[q] and rng.random() < 0.5:
                self.board.add(decode_delta(self.in_flight[q].pop(0)))
        return any(self.cursor[q] < len(self.by_partition[q]) or self.held[q] or self.in_flight[q] for q in self.by_partition)

    def run(self, limit: int = 100_000) -> None:
        for _ in range(limit):
            if not self.step():
                return
        raise AssertionError("the simulation did not finish")


def offline(by_partition, partitions: int, catalog, epochs: EpochParams = EPOCHS, final_only: bool = False):
    states: dict[str, UserState] = defaultdict(UserState)
    graphs: dict[int, ItemGraph] = {}
    latest = replay_offline({p: [e for e in evs if e[1].type is not EventType.TICK] for p, evs in by_partition.items()},
                            partitions, states, catalog, QUERIES, K, epochs=epochs, graphs=graphs, final_only=final_only)
    return latest, graphs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), partitions=st.integers(2, 4))
def test_live_partitions_publish_the_offline_lists(seed, partitions):
    events = make_stream(seed, 160, users=8, forgets=False)
    by_partition = split(events, partitions)
    catalog = make_catalog()
    reference, _ = offline(copy.deepcopy(by_partition), partitions, catalog, final_only=True)
    live = Live(by_partition, partitions, catalog, random.Random(seed))
    live.run()
    assert live.final == lists_of(reference)
    assert live.board.held_ops() >= 0


def test_lists_do_not_depend_on_batching_or_delivery_order():
    catalog = make_catalog()
    events = make_stream(11, 300, users=10, forgets=False)
    finals = []
    published = []
    for seed in range(4):
        live = Live(split(events, 3), 3, catalog, random.Random(seed))
        live.run()
        finals.append(live.final)
        published.append(live.published)
    assert all(final == finals[0] for final in finals)
    common = set(published[0]) & set(published[1])
    assert len(common) > 10
    assert all(published[0][key] == published[1][key] for key in common)


def _engage(user: str, items: list[str], start: int) -> list[Event]:
    return [Event(event_id=f"{user}-{n}", user_id=user, type=EventType.PURCHASE, ts=start + n * 1000, item_id=item) for n, item in enumerate(items)]


def test_the_collaborative_signal_crosses_partitions():
    """Users of partition 0 engage i3 then i7; a user of partition 1 who
    engages i3 later gets i7 ``often_after`` i3, though no one in partition 1
    ever engaged i7."""
    catalog = make_catalog()
    params = EpochParams(epoch_ms=1000, delay=2)
    by_partition = {0: [], 1: []}
    for n, user in enumerate(["u0", "u2", "u4", "u6"]):
        for event in _engage(user, ["i3", "i7"], T0 + n * 10_000):
            by_partition[0].append((len(by_partition[0]), event))
    for event in _engage("u1", ["i3"], T0 + 100_000):
        by_partition[1].append((len(by_partition[1]), event))
    latest, graphs = offline(by_partition, 2, catalog, params)
    listed = {s.item_id: s for s in latest["u1"].ranked}
    assert "i7" in listed and listed["i7"].reason == "often_after" and listed["i7"].because == "i3"
    assert "i7" in graphs[1].neighbours("i3", T0 + 100_000)
    # per-partition graphs (the old behaviour) do not see it
    latest_local, _ = offline(by_partition, 2, catalog, EpochParams(enabled=False))
    assert all(s.item_id != "i7" or s.reason != "often_after" for s in latest_local["u1"].ranked)


def test_an_event_waits_only_for_a_partition_more_than_the_delay_behind():
    catalog = make_catalog()
    params = EpochParams(epoch_ms=1000, delay=2)
    board = DeltaBoard(2, params)
    graph, states = ItemGraph(), defaultdict(UserState)
    board.add(DeltaRecord(1, T0 // 1000 - 2, T0 - 2000, 0))  # partition 1 is 2 epochs behind: within the delay
    stats = BatchStats()
    events = [(0, _engage("u0", ["i1"], T0)[0]), (1, _engage("u0", ["i2"], T0 + 1000)[0])]
    updates = process_partition_events(events, states, graph, catalog, {}, K, stats=stats, board=board, partition=0)
    assert [offset for offset, _ in stats.held] == [1] and stats.blocked_by == [1]
    assert stats.held_epoch == T0 // 1000 + 1
    assert [u.state.last_offset for u in updates] == [0]
    # a tick moves the idle partition on: the held event goes through
    board.add(DeltaRecord(1, T0 // 1000 + 5, T0 + 5000, 1))
    stats = BatchStats()
    updates = process_partition_events(stats_held := [(1, events[1][1])], states, graph, catalog, {}, K, stats=stats, board=board, partition=0)
    assert not stats.held and updates[0].state.last_offset == 1 and stats_held


def test_a_view_restored_from_its_snapshot_continues_with_the_same_lists():
    catalog = make_catalog()
    events = make_stream(5, 240, users=8, forgets=False)
    by_partition = split(events, 2)
    reference, ref_graphs = offline(copy.deepcopy(by_partition), 2, catalog, final_only=True)
    live = Live(by_partition, 2, catalog, random.Random(3))
    for _ in range(40):
        live.step()
    p = 0
    graph = live.graphs[p]
    saved = _all_rows(graph)  # every row, as the item-graph table holds them
    restored = ItemGraph()
    for item_id, row in saved:
        restored.load_row(item_id, row)
    restored.last_offset, restored.watermark = graph.last_offset, graph.watermark
    restored.foreign_epoch, restored.foreign_seq, restored.latest_ts = graph.foreign_epoch, graph.foreign_seq, graph.latest_ts
    live.graphs[p] = restored
    live.run()
    assert live.final == lists_of(reference)


def _all_rows(graph: ItemGraph):
    from models.graph import encode_row

    return [(item_id, encode_row(graph.row(item_id))) for item_id in list(graph._ids)]


def test_delta_records_round_trip_and_old_ops_are_taken_once():
    board = DeltaBoard(2, EPOCHS)
    from models.global_graph import GraphOp

    record = DeltaRecord(1, 7, 7 * 120_000, 3, [GraphOp(2, 6, "i1", 5, ["i0"], [4]), GraphOp(3, 7, "i2", 6, [], [])])
    assert decode_delta(encode_delta(record)) == record
    assert board.add(record) == 2 and board.add(record) == 0
    assert [op.offset for op in board.foreign_ops(0, -1, 7)] == [2, 3]
    assert list(board.foreign_ops(1, -1, 7)) == []  # a view never takes its own ops back
    assert board.prune(6) == 1 and board.held_ops() == 1


@pytest.mark.parametrize("partitions", [1, 3])
def test_tick_events_only_move_the_watermark(partitions):
    catalog = make_catalog()
    board = DeltaBoard(partitions, EPOCHS)
    for q in range(1, partitions):
        board.add(DeltaRecord(q, 1 << 40, 0, 0))
    graph, states = ItemGraph(), defaultdict(UserState)
    stats = BatchStats()
    updates = process_partition_events([(0, tick_event(T0))], states, graph, catalog, {}, K, stats=stats, board=board, partition=0)
    assert updates == [] and not states and graph.watermark == T0 and graph.last_offset == 0 and not stats.ops


def test_a_view_older_than_the_pruned_board_waits_for_the_board_to_be_read_again():
    catalog = make_catalog()
    params = EpochParams(epoch_ms=1000, delay=2)
    board = DeltaBoard(2, params)
    board.add(DeltaRecord(1, T0 // 1000 + 50, T0 + 50_000, 9))
    board.prune(T0 // 1000)  # every view this worker had folded these in
    graph, states = ItemGraph(), defaultdict(UserState)  # a view taken over, from an older snapshot
    stats = BatchStats()
    events = [(0, _engage("u0", ["i1"], T0 + 10_000)[0])]
    assert process_partition_events(events, states, graph, catalog, {}, K, stats=stats, board=board, partition=0) == []
    assert len(stats.held) == 1
    board.reset()  # the feed reads graph-deltas again from the start
    board.add(DeltaRecord(1, T0 // 1000 + 50, T0 + 50_000, 9))
    stats = BatchStats()
    assert len(process_partition_events(events, states, graph, catalog, {}, K, stats=stats, board=board, partition=0)) == 1
    assert not stats.held


def _writer_record(seq: int, source: str = "w1") -> DeltaRecord:
    from models.global_graph import GraphOp

    return DeltaRecord(1, seq, seq * 120_000, seq, [GraphOp(seq, seq, f"i{seq}", seq, [], [])], source=source, seq=seq)


def _send(board: DeltaBoard, topic: list[bytes], record: DeltaRecord) -> None:
    """What agents.events._send_delta does: to the topic, and to the own
    board at once only while the writer's previous record is on it."""
    topic.append(encode_delta(record))
    if board.holds_through(record.source, record.seq - 1):
        board.add(record)


def test_a_writer_adds_its_record_to_its_board_only_right_after_its_previous_one():
    """Records 0 and 1 are sent; 0 comes back; 2 is sent while 1 is still
    on its way: 2 must not go to the board first (its offset would make the
    board drop 1's op when 1 arrives)."""
    board, topic = DeltaBoard(2, EPOCHS), []
    _send(board, topic, _writer_record(0))
    _send(board, topic, _writer_record(1))
    assert board.held_ops() == 0  # the first records wait for the topic
    board.take(topic.pop(0))  # 0 comes back
    _send(board, topic, _writer_record(2))  # 1 is not back: 2 waits too
    board.take(topic.pop(0))  # 1
    board.take(topic.pop(0))  # 2
    _send(board, topic, _writer_record(3))  # 2 is on the board: 3 goes straight on
    assert [op.offset for op in board.foreign_ops(0, -1, 10)] == [0, 1, 2, 3]
    board.take(topic.pop(0))  # 3's copy from the topic changes nothing
    assert [op.offset for op in board.foreign_ops(0, -1, 10)] == [0, 1, 2, 3]
    assert not board.holds_through("", 0) and not board.holds_through("w2", -1)


def test_after_a_reset_a_writer_waits_for_the_topic_again():
    """A reset (the feed reading graph-deltas again) forgets which records
    are on the board: the writer's next record waits until its previous one
    is re-read."""
    board, topic = DeltaBoard(2, EPOCHS), []
    for seq in range(2):
        _send(board, topic, _writer_record(seq))
    for value in list(topic):
        board.take(value)
    assert board.holds_through("w1", 1)
    board.reset()
    _send(board, topic, _writer_record(2))
    assert board.held_ops() == 0
    for value in topic:
        board.take(value)
    assert [op.offset for op in board.foreign_ops(0, -1, 10)] == [0, 1, 2]
