"""Ticks for idle partitions (streams.state.graph_deltas.Ticker), on a real board."""

from __future__ import annotations

from models.global_graph import END_OF_INPUT, DeltaBoard, DeltaRecord, EpochParams
from streams.state.graph_deltas import Ticker

EPOCHS = EpochParams(epoch_ms=1000, delay=2)


def ticker(board: DeltaBoard) -> Ticker:
    return Ticker(board, interval_s=1.0, delay=EPOCHS.delay, epoch_ms=EPOCHS.epoch_ms, end=END_OF_INPUT)


def test_only_an_idle_partition_more_than_the_delay_behind_gets_a_tick_at_the_head():
    board = DeltaBoard(3, EPOCHS)
    board.add(DeltaRecord(0, 100, 100_500, 9))
    board.add(DeltaRecord(1, 98, 98_000, 3))  # within the delay
    # partition 2 never had an event
    t = ticker(board)
    t.delivered(0, now=10.0)
    t.delivered(1, now=10.0)
    assert t.due([0, 1, 2], now=10.5) == [(2, 100_000)]
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
