"""Ticks for idle partitions (streams.state.graph_deltas.Ticker), on a real board."""

from __future__ import annotations

from models.global_graph import END_OF_INPUT, DeltaBoard, DeltaRecord, EpochParams
from streams.state.graph_deltas import Ticker

EPOCHS = EpochParams(epoch_ms=1000, delay=2)


def ticker(board: DeltaBoard) -> Ticker:
    return Ticker(board, interval_s=1.0, delay=EPOCHS.delay, epoch_ms=EPOCHS.epoch_ms, end=END_OF_INPUT)


def test_only_an_idle_partition_more_than_the_delay_behind_gets_a_tick_at_the_newest_event_time():
    board = DeltaBoard(3, EPOCHS)
    board.add(DeltaRecord(0, 100, 100_500, 9))
    board.add(DeltaRecord(1, 98, 98_000, 3))  # within the delay
    # partition 2 never had an event
    t = ticker(board)
    t.delivered(0, now=10.0)
    t.delivered(1, now=10.0)
    assert t.due([0, 1, 2], now=10.5) == [(2, 100_500)]
    assert t.due([0, 1, 2], now=10.9) == []  # one tick per interval
    board.add(DeltaRecord(1, 97, 97_000, 4))  # progress never goes back
    assert t.due([1], now=20.0) == []


def test_a_partition_that_holds_events_or_was_just_delivered_is_not_idle():
    board = DeltaBoard(2, EPOCHS)
    board.add(DeltaRecord(0, 50, 50_000, 1))
    board.add(DeltaRecord(1, 10, 10_000, 1))
    t = ticker(board)
    t.delivered(1, now=5.0)
    assert t.due([1], now=5.5) == []
    assert t.due([1], now=7.0, holding=lambda p: True) == []
    assert t.due([1], now=7.0) == [(1, 50_000)]


def test_no_tick_before_any_partition_has_progress_or_once_all_are_done():
    board = DeltaBoard(2, EPOCHS)
    assert ticker(board).due([0, 1], now=100.0) == []
    board.add(DeltaRecord(0, END_OF_INPUT, -1, -1))
    assert ticker(board).due([1], now=100.0) == []


def test_the_tick_goes_past_every_event_a_partition_holds_not_to_its_first_one():
    """A partition that holds events an hour ahead of an idle one: one tick
    releases all of them (a tick to the held partition's progress, the
    epoch of its first held event, released delay + 1 epochs at a time)."""
    board = DeltaBoard(4, EPOCHS)
    hour = 3_600_000
    board.add(DeltaRecord(0, 10, 10_000, 5))  # the idle one
    board.add(DeltaRecord(1, 13, 12_900, 7, seen=hour))  # holds from epoch 13 to an hour on
    board.add(DeltaRecord(2, 12, 12_000, 3, seen=hour // 2))
    board.add(DeltaRecord(3, END_OF_INPUT, -1, -1))
    t = ticker(board)
    [(partition, ts)] = t.due([0, 1, 2], now=5.0, holding=lambda p: p in (1, 2))
    assert (partition, ts) == (0, hour)
    board.add(DeltaRecord(0, ts // EPOCHS.epoch_ms, ts, 6))  # the tick came back through the partition
    # the idle one holds neither back any more, even at their newest events
    assert all(0 not in board.blocking(p, hour // EPOCHS.epoch_ms) for p in (1, 2))
    assert t.due([0, 1, 2], now=20.0, holding=lambda p: p in (1, 2)) == []


def test_seen_is_kept_as_the_highest_and_is_at_least_the_watermark():
    board = DeltaBoard(2, EPOCHS)
    board.add(DeltaRecord(0, 5, 5_000, 1, seen=90_000))
    board.add(DeltaRecord(0, 5, 5_000, 2, seen=40_000))  # an older held batch's record
    assert board.seen(0) == 90_000
    board.add(DeltaRecord(1, 7, 7_000, 1))  # a record without it (an older writer)
    assert board.seen(1) == 7_000
