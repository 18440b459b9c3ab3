"""``streams.state.partition_log`` without a broker: holes and read-back,
graph load and catch-up, redelivery, snapshots, the TTL sweep, and one log
per partition."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from streams.state.partition_log import PartitionLog, PartitionLogs
from streams.state.tables import graph_offset_key, graph_row_key


@dataclass(frozen=True)
class Rec:
    user_id: str


class Anchor:
    """Stands for a Faust event (table writes act for it)."""


class FakeGraph:
    def __init__(self) -> None:
        self.last_offset = -1
        self.latest_ts = 0
        self.dirty: set[str] = set()
        self.rows: dict[str, bytes] = {}

    def change(self, item_id: str, row: bytes, offset: int) -> None:
        self.rows[item_id] = row
        self.dirty.add(item_id)
        self.last_offset = offset

    def take_dirty(self) -> list[tuple[str, bytes]]:
        changed = [(item_id, self.rows[item_id]) for item_id in sorted(self.dirty)]
        self.dirty.clear()
        return changed

    def load_row(self, item_id: str, data: bytes) -> None:
        self.rows[item_id] = data

    def mark(self) -> str:
        return str(self.last_offset)

    def restore_mark(self, mark: str) -> None:
        self.last_offset = int(mark)


class WriteLog(dict):
    """A table that remembers the order of its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[bytes, bytes]] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes.append((key, value))
        super().__setitem__(key, value)


def entry(offset: int, user: str = "u", event: object | None = "delivered") -> tuple:
    return (offset, Rec(user), event)


class Topic:
    """The partition's valid events by offset; records what was read."""

    def __init__(self, offsets: range | list[int], user: str = "u") -> None:
        self.events = {o: entry(o, user, None) for o in offsets}
        self.reads: list[tuple[int, int]] = []

    async def read(self, start: int, stop: int) -> list[tuple]:
        self.reads.append((start, stop))
        return [self.events[o] for o in sorted(self.events) if start <= o < stop]


# -- holes ---------------------------------------------------------------------


def test_holes_are_gaps_within_a_batch_and_since_the_previous_one():
    log = PartitionLog(0)
    for offset in (5, 6, 8):
        log.note_delivered(offset)
    assert log.take_holes([5, 6, 8]) == [(7, 8)]
    assert log.delivered == set() and log.delivered_upto == 8
    log.note_delivered(12)
    assert log.take_holes([12]) == [(9, 12)]
    # a redelivery below what was delivered before leaves no hole and keeps the high mark
    assert log.take_holes([3, 4]) == []
    assert log.delivered_upto == 12


def test_delivered_offsets_of_invalid_records_close_holes_the_batch_has_no_event_for():
    log = PartitionLog(0)
    for offset in (0, 1, 2, 3):  # 1 and 2 were dead-lettered: delivered, not in the batch
        log.note_delivered(offset)
    assert log.take_holes([0, 3]) == []


async def test_contiguous_reads_back_only_the_holes_and_orders_each_offset_once():
    log = PartitionLog(3)
    topic = Topic(range(0, 20))
    delivered = [entry(10), entry(14), entry(10), entry(11)]
    for offset, _, _ in delivered:
        log.note_delivered(offset)
    log.delivered_upto = 7  # the previous batch ended at 7: 8 and 9 never came
    batch = await log.contiguous(delivered, topic.read)
    assert [e[0] for e in batch.entries] == [8, 9, 10, 11, 12, 13, 14]
    assert [e[2] for e in batch.entries] == [None, None, "delivered", "delivered", None, None, "delivered"]
    assert batch.holes == [8, 9, 12, 13]
    assert (batch.found, batch.doubles) == (4, 1)
    assert topic.reads == [(8, 14)]  # one read from the first hole to the end of the last


async def test_contiguous_without_holes_reads_nothing_and_holes_that_read_back_empty_still_count():
    log = PartitionLog(0)
    topic = Topic([])
    batch = await log.contiguous([entry(0), entry(1)], topic.read)
    assert (batch.holes, batch.found, topic.reads) == ([], 0, [])
    # a transaction marker at 2: the hole reads back as nothing, yet is done once written
    batch = await log.contiguous([entry(3)], topic.read)
    assert [e[0] for e in batch.entries] == [3]
    assert (batch.holes, batch.found, topic.reads) == ([2], 0, [(2, 3)])


# -- graph load, catch-up, redelivery -----------------------------------------------


def stored_graph(partition: int, offset: int, rows: dict[str, bytes]) -> dict[bytes, bytes]:
    table = {graph_row_key(partition, item): row for item, row in rows.items()}
    table[graph_offset_key(partition)] = str(offset).encode()
    table[graph_row_key(partition + 1, "other")] = b"not this partition's"
    return table


async def test_first_use_loads_the_snapshot_and_replays_the_events_after_it():
    log = PartitionLog(1)
    topic = Topic(range(0, 30))
    start = await log.resume(25, FakeGraph, stored_graph(1, 19, {"a": b"A", "b": b"B"}).items(), topic.read, tracked_offsets=32)
    assert log.graph is start.graph and start.graph.rows == {"a": b"A", "b": b"B"}
    assert start.graph.last_offset == 19 and log.snapshot_offset == 19
    assert topic.reads == [(20, 25)]
    assert [e[0] for e in start.catch_up] == [20, 21, 22, 23, 24]
    assert start.rank_from == 25 and not start.redelivered


async def test_first_use_without_a_gap_ranks_everyone_and_an_empty_table_starts_at_minus_one():
    log = PartitionLog(0)
    start = await log.resume(0, FakeGraph, [], Topic([]).read, tracked_offsets=32)
    assert start.graph.last_offset == -1 and start.catch_up == [] and start.rank_from == -1


async def test_a_commit_behind_the_snapshot_replays_nothing_and_ranks_only_past_it():
    log = PartitionLog(0)
    topic = Topic(range(0, 30))
    start = await log.resume(10, FakeGraph, stored_graph(0, 19, {}).items(), topic.read, tracked_offsets=32)
    assert start.catch_up == [] and start.rank_from == 20


async def test_redelivery_into_this_processs_graph_ranks_only_users_past_it():
    log = PartitionLog(0)
    graph = log.graph = FakeGraph()
    graph.last_offset = 40
    topic = Topic(range(0, 50))

    def no_new_graph() -> FakeGraph:
        raise AssertionError("the graph is loaded once")

    again = await log.resume(35, no_new_graph, [], topic.read, tracked_offsets=32)
    assert (again.graph, again.catch_up, again.rank_from, again.redelivered) == (graph, [], 41, True)
    onward = await log.resume(41, no_new_graph, [], topic.read, tracked_offsets=32)
    assert (onward.catch_up, onward.rank_from, onward.redelivered) == ([], -1, False)
    assert topic.reads == []


async def test_a_user_with_more_catch_up_events_than_their_history_replays_is_reported(caplog):
    log = PartitionLog(2)
    topic = Topic(range(0, 10), user="busy")
    with caplog.at_level(logging.WARNING, logger="streams.state.partition_log"):
        await log.resume(10, FakeGraph, [], topic.read, tracked_offsets=4)
    assert "1 users have more than 4 events to replay" in caplog.text


# -- snapshots -------------------------------------------------------------------


def test_snapshots_wait_for_the_interval_unless_forced_or_a_user_runs_ahead():
    log = PartitionLog(0)
    graph = log.graph = FakeGraph()
    assert not log.maybe_snapshot(["u"], 100.0, force=True, tracked_offsets=8, flush_s=5.0)  # nothing changed
    graph.change("a", b"A1", offset=3)
    assert log.maybe_snapshot(["u"], 100.0, force=False, tracked_offsets=8, flush_s=5.0)  # first one: interval since 0
    assert log.pending == [("3", [("a", b"A1")])] and not log.since_snapshot
    graph.change("b", b"B1", offset=4)
    assert not log.maybe_snapshot(["u", "v"], 101.0, force=False, tracked_offsets=8, flush_s=5.0)
    assert log.since_snapshot == {"u": 1, "v": 1}
    assert log.maybe_snapshot(["v"] * 2, 102.0, force=False, tracked_offsets=8, flush_s=5.0) is False  # v at 3 of 4
    assert log.maybe_snapshot(["v"], 102.5, force=False, tracked_offsets=8, flush_s=5.0)  # v at 4: half of 8
    graph.change("a", b"A2", offset=9)
    assert log.maybe_snapshot([], 103.0, force=True, tracked_offsets=8, flush_s=5.0)
    assert [int(mark) for mark, _ in log.pending] == [3, 4, 9]
    assert log.flushed_at == 103.0


def test_pending_snapshots_are_written_oldest_first_and_a_fresh_log_loads_them():
    log = PartitionLog(2, graph=FakeGraph(), anchor=Anchor())
    log.pending = [("3", [("a", b"A1")]), ("7", [("a", b"A2"), ("b", b"B1")])]
    table = WriteLog()
    assert log.write_snapshots(table) == 2
    assert table == {graph_row_key(2, "a"): b"A2", graph_row_key(2, "b"): b"B1", graph_offset_key(2): b"7"}
    # each snapshot's rows, then its watermark
    assert table.writes == [(graph_row_key(2, "a"), b"A1"), (graph_offset_key(2), b"3"),
                            (graph_row_key(2, "a"), b"A2"), (graph_row_key(2, "b"), b"B1"), (graph_offset_key(2), b"7")]
    assert log.pending == [] and log.snapshot_offset == 7
    assert log.write_snapshots(table) == 0


async def test_snapshot_round_trip_through_the_table():
    table: dict[bytes, bytes] = {}
    log = PartitionLog(0, graph=FakeGraph(), anchor=Anchor())
    log.graph.change("x", b"X", offset=11)
    log.maybe_snapshot(["u"], 10.0, force=True, tracked_offsets=8, flush_s=5.0)
    log.write_snapshots(table)
    restarted = PartitionLog(0)
    start = await restarted.resume(12, FakeGraph, table.items(), Topic([]).read, tracked_offsets=8)
    assert start.graph.rows == {"x": b"X"} and start.graph.last_offset == 11 and start.rank_from == -1


def test_snapshots_without_an_event_to_act_for_are_dropped():
    log = PartitionLog(0, graph=FakeGraph())
    log.pending = [("3", [("a", b"A")])]
    table: dict[bytes, bytes] = {}
    assert log.write_snapshots(table) == 0
    assert table == {} and log.pending == []


# -- the TTL sweep -----------------------------------------------------------------


def test_the_sweep_walks_the_keys_a_slice_at_a_time_and_starts_over_at_the_end():
    table = {f"user-{i}".encode(): bytes([i]) for i in range(5)}
    seen: list[bytes | None] = []

    def chunk(after: bytes | None, size: int) -> list[tuple[bytes, bytes]]:
        seen.append(after)
        keys = sorted(k for k in table if after is None or k > after)
        return [(k, table[k]) for k in keys[:size]]

    log = PartitionLog(0, anchor=Anchor())
    odd = lambda value: value[0] % 2 == 1  # noqa: E731
    assert log.sweep(table, chunk, 2, odd) == [b"user-1"]
    assert log.sweep_cursor == b"user-1"
    assert log.sweep(table, chunk, 2, odd) == [b"user-3"]
    assert log.sweep_cursor == b"user-3"
    assert log.sweep(table, chunk, 2, odd) == []  # a short slice: the end
    assert log.sweep_cursor is None
    assert seen == [None, b"user-1", b"user-3"]
    assert sorted(table) == [b"user-0", b"user-2", b"user-4"]


# -- one log per partition -----------------------------------------------------------


def test_a_revocation_drops_everything_of_the_partition_with_one_pop():
    logs = PartitionLogs()
    logs[0].note_delivered(5)
    logs[1].graph = FakeGraph()
    logs[1].snapshot_offset = 9
    logs[3].snapshot_offset = 4
    assert logs[0] is logs[0] and logs[0].partition == 0
    assert logs.snapshot_offsets() == {1: 9, 3: 4}
    logs.pop(1)
    assert 1 not in logs and logs.snapshot_offsets() == {3: 4}
    fresh = logs[1]
    assert fresh.graph is None and fresh.delivered_upto is None and fresh.pending == [] and fresh.sweep_cursor is None

