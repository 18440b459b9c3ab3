"""The compiled item graph (``models.graph`` on ``models.kernels``) against
the slow reference it replaced (``tests/reference/graph.py``): the same rows,
scores and reasons, bit for bit, on random engagement streams with
redeliveries, repeated items, late events and pruned rows."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.graph import GraphParams, GraphRow, ItemGraph, decode_row, encode_row
from tests.reference.graph import ItemGraph as ReferenceGraph

T0 = 1_700_000_000_000


class Rows:
    """A catalog stand-in: items ``i0..i{n-1}`` (one unknown to it)."""

    def __init__(self, n: int, unknown: str = "i3") -> None:
        self.ids = [f"i{k}" for k in range(n) if f"i{k}" != unknown]

    def row_of(self, item_id: str) -> int | None:
        try:
            return self.ids.index(item_id)
        except ValueError:
            return None

    def size(self) -> int:
        return len(self.ids)

    def version(self) -> tuple[int, int]:
        return (len(self.ids), 0)


def _as_reference(row: GraphRow) -> tuple:
    weights = np.frombuffer(row.weights, dtype="<f8").tolist()
    stamps = np.frombuffer(row.stamps, dtype="<i8").tolist()
    return (row.pop, row.pop_ts, row.inbound, row.inbound_ts, list(zip(row.targets, zip(weights, stamps))), row.offset)


def _reference_row(graph: ReferenceGraph, item: str) -> tuple:
    row = graph.row(item)
    return (row.pop, row.pop_ts, row.inbound, row.inbound_ts, list(row.edges.items()), row.offset)


events = st.lists(
    st.tuples(
        st.integers(0, 5),  # user
        st.integers(0, 24),  # item
        st.integers(-3, 40),  # minutes from the previous event (negative: late)
        st.sampled_from([1.0, 1.0, 0.6, -1.0]),  # signal
        st.booleans(),  # redelivered after it
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(stream=events, max_neighbours=st.sampled_from([3, 200]), window=st.sampled_from([4, 20]))
def test_the_kernels_build_the_reference_graph_and_score_like_it(stream, max_neighbours, window):
    params = GraphParams(max_neighbours=max_neighbours, window=window, pair_half_life_ms=3_600_000, half_life_ms=7_200_000)
    graph, reference = ItemGraph(params=params), ReferenceGraph(params=params)
    history: dict[int, list[tuple[str, int, float]]] = {}
    ts, offset = T0, 0
    for user, item, minutes, signal, redelivered in stream:
        ts += minutes * 60_000
        item_id = f"i{item}"
        previous = history.setdefault(user, [])
        if signal > 0:
            for _ in range(2 if redelivered else 1):  # a redelivery must change nothing
                graph.observe(previous, item_id, ts, offset)
                reference.observe(previous, item_id, ts, offset)
        previous.append((item_id, ts, signal))
        offset += 1
    items = sorted(reference._index)
    assert sorted(graph._index) == items
    for item in items:
        assert _as_reference(graph.row(item)) == _reference_row(reference, item)
    rows = Rows(26)
    for user, previous in history.items():
        seeds = [h[0] for h in previous if h[2] > 0][-20:][::-1]
        for at in (ts, ts + 3 * 3_600_000):
            got, because = graph.seed_scores(seeds, 0.85, at, rows)
            want, want_because = reference.seed_scores(seeds, 0.85, at, rows)
            assert np.array_equal(got, want) and np.array_equal(because, want_because)
    assert np.array_equal(graph.trending_over(rows, ts), reference.trending_over(rows, ts))
    for item in items:
        assert graph.neighbours(item, ts) == reference.neighbours(item, ts)


def test_rows_round_trip_through_the_changelog_and_the_first_format_is_read():
    graph = ItemGraph(params=GraphParams(max_neighbours=4))
    history: list[tuple[str, int, float]] = []
    for k in range(60):
        item = f"i{(k * 7) % 13}"
        graph.observe(history, item, T0 + k * 1000, k)
        history.append((item, T0 + k * 1000, 1.0))
    rows = dict(graph.take_dirty())
    assert not graph.dirty and len(rows) == 13
    copy = ItemGraph(params=graph.params)
    for item, data in rows.items():
        copy.load_row(item, data)
    for item in rows:
        assert copy.row(item) == graph.row(item)
    at = T0 + 100_000
    assert copy.seed_scores(["i1", "i2"], 0.85, at, Rows(13, unknown=""))[0].tolist() == graph.seed_scores(["i1", "i2"], 0.85, at, Rows(13, unknown=""))[0].tolist()
    # the first persisted format (edges as a dict) still loads
    reference = ReferenceGraph(params=graph.params)
    history = []
    for k in range(30):
        item = f"i{k % 5}"
        reference.observe(history, item, T0 + k, k)
        history.append((item, T0 + k, 1.0))
    old_rows = reference.take_dirty()
    migrated = ItemGraph(params=graph.params)
    for item, data in old_rows:
        migrated.load_row(item, data)
    for item, _ in old_rows:
        assert _as_reference(migrated.row(item)) == _reference_row(reference, item)
        assert decode_row(encode_row(migrated.row(item))) == migrated.row(item)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400), max_neighbours=st.sampled_from([2, 5, 200]), window=st.sampled_from([1, 3, 20]))
def test_foreign_ops_in_one_call_build_the_graph_one_at_a_time_does(seed, n, max_neighbours, window):
    """``ItemGraph.observe_foreign_many`` (the global graph's catch-up, one
    kernel call) against ``observe_foreign`` op by op: the same rows, the
    same dirty set and sequence numbers, through pool growth and slab moves."""
    rng = np.random.default_rng(seed)
    params = GraphParams(max_neighbours=max_neighbours, window=window)
    items = [f"i{k}" for k in range(int(rng.integers(2, 60)))]
    ops = []
    for _ in range(n):
        item = items[int(rng.integers(len(items)))]
        previous = [i for i in rng.choice(items, size=min(len(items), int(rng.integers(0, window + 1))), replace=False).tolist() if i != item]
        ts = T0 + int(rng.integers(0, 10**9))
        ops.append((item, previous, [ts - int(rng.integers(-10**6, 10**8)) for _ in previous], ts))
    one, many = ItemGraph(params), ItemGraph(params)
    one.foreign_seq = many.foreign_seq = 7
    for op in ops[: n // 3]:  # some before, so the second call starts on a used pool
        one.observe_foreign(*op)
    many.observe_foreign_many(ops[: n // 3])
    for op in ops[n // 3 :]:
        one.observe_foreign(*op)
    edges = many.observe_foreign_many(ops[n // 3 :])
    assert edges == 2 * sum(len(op[1]) for op in ops[n // 3 :])
    assert one.foreign_seq == many.foreign_seq and one.dirty == many.dirty
    assert one.take_dirty() == many.take_dirty()
