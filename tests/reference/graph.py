"""Slow reference of ``models.graph`` (the graph as it was before the compiled
kernels: per-item edge objects, numpy per call), the oracle of
``tests/test_graph_kernels.py``. Sums run in plain order, as the kernels sum.

The interest graph: item -> item edges from co-engagement in user sequences,
plus each item's trending weight, all decayed in event time.

When a user engages item ``j``, each of their previous ``window`` positive
items ``i`` gets an edge ``i -> j`` of weight ``gap ** -gap_exponent *
0.5 ** (dt / pair_half_life)`` (closer in the sequence and in time = stronger)
and a weaker edge back. Every weight is stored with the event time it refers
to and decayed on read (``half_life_ms``), so updates commute and a replay of
the same events builds the same graph.

A graph belongs to one partition of ``events`` (see README, "Interest
graph"): it is built from that partition's users in offset order, which
keeps lists deterministic and needs no cross-worker coordination.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import msgspec
import numpy as np

from models import exact
from models.errors import StateError
from models.graph import DEFAULT_GRAPH, CatalogRows, GraphParams


def _plain_sum(values: np.ndarray) -> float:
    total = 0.0
    for value in values.tolist():
        total += value
    return total


def _decayed(weight: float, since_ts: int, at_ts: int, half_life_ms: int) -> float:
    if at_ts <= since_ts:
        return weight
    return weight * exact.decay(at_ts - since_ts, half_life_ms)


def _add(weight: float, ts: int, delta: float, at_ts: int, half_life_ms: int) -> tuple[float, int]:
    """(weight, ts) after adding ``delta`` at event time ``at_ts`` (commutative)."""
    if at_ts >= ts:
        return _decayed(weight, ts, at_ts, half_life_ms) + delta, at_ts
    return weight + delta * exact.decay(ts - at_ts, half_life_ms), ts


class GraphRow(msgspec.Struct, array_like=True):
    """One item's persisted row: trending weight, incoming weight, out-edges."""

    pop: float = 0.0
    pop_ts: int = 0
    inbound: float = 0.0
    inbound_ts: int = 0
    edges: dict[str, tuple[float, int]] = msgspec.field(default_factory=dict)
    offset: int = -1  # highest source offset whose event changed this row


_row_encoder = msgspec.msgpack.Encoder()
_row_decoder = msgspec.msgpack.Decoder(GraphRow)


def encode_row(row: GraphRow) -> bytes:
    return _row_encoder.encode(row)


def decode_row(data: bytes) -> GraphRow:
    try:
        return _row_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise StateError(f"corrupt graph row ({len(data)} bytes): {exc}") from exc


class _Edges:
    """Out-edges of one item as parallel arrays (index of target, weight,
    event time of the weight), updated in place so scoring never rebuilds.

    A target's position is found by scanning ``targets`` (at most
    ``2 * max_neighbours`` entries: a couple of microseconds in numpy), not
    kept in a dict: a dict entry per edge was 70 of the graph's 92 bytes per
    edge, and a full graph holds items x up to 400 edges per partition.
    """

    __slots__ = ("targets", "weights", "stamps", "n")

    def __init__(self) -> None:
        self.targets = np.empty(8, dtype=np.int64)
        self.weights = np.empty(8, dtype=np.float64)
        self.stamps = np.empty(8, dtype=np.int64)
        self.n = 0

    def position(self, target: int) -> int:
        """Where ``target`` is, or -1."""
        found = np.flatnonzero(self.targets[: self.n] == target)
        return int(found[0]) if len(found) else -1

    def append(self, target: int, weight: float, ts: int) -> None:
        if self.n == len(self.targets):
            size = 2 * self.n
            self.targets = np.resize(self.targets, size)
            self.weights = np.resize(self.weights, size)
            self.stamps = np.resize(self.stamps, size)
        p = self.n
        self.targets[p], self.weights[p], self.stamps[p] = target, weight, ts
        self.n += 1

    def add(self, target: int, delta: float, ts: int, half_life_ms: int) -> None:
        p = self.position(target)
        if p < 0:
            self.append(target, delta, ts)
            return
        self.weights[p], self.stamps[p] = _add(float(self.weights[p]), int(self.stamps[p]), delta, ts, half_life_ms)

    def decayed(self, at_ts: int, half_life_ms: int) -> np.ndarray:
        n = self.n
        return self.weights[:n] * exact.decay_array(at_ts - self.stamps[:n], half_life_ms)

    def keep_strongest(self, count: int, at_ts: int, half_life_ms: int) -> None:
        order = np.argsort(-self.decayed(at_ts, half_life_ms), kind="stable")[:count]
        self.targets = self.targets[order].copy()
        self.weights = self.weights[order].copy()
        self.stamps = self.stamps[order].copy()
        self.n = len(order)


@dataclass
class ItemGraph:
    """Co-engagement graph and trending weights of one partition.

    Items get a dense index; trending and incoming weights live in arrays by
    that index and each item's out-edges in :class:`_Edges`, so scoring a
    user's seeds is a few vectorised operations. :class:`GraphRow` is only
    the persisted form (one changelog record per changed item).
    """

    params: GraphParams = DEFAULT_GRAPH
    dirty: set[str] = field(default_factory=set)
    latest_ts: int = 0
    last_offset: int = -1  # highest source offset observed (redelivery guard)
    _index: dict[str, int] = field(default_factory=dict)
    _ids: list[str] = field(default_factory=list)
    _pop: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    _pop_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _in: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    _in_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _row_off: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _edges: dict[int, _Edges] = field(default_factory=dict)
    _row_map: np.ndarray | None = None
    _row_map_catalog: tuple[int, int] = (0, 0)

    def _idx(self, item_id: str) -> int:
        i = self._index.get(item_id)
        if i is None:
            i = self._index[item_id] = len(self._ids)
            self._ids.append(item_id)
            if i >= len(self._pop):
                size = max(64, 2 * len(self._pop))
                for name in ("_pop", "_pop_ts", "_in", "_in_ts", "_row_off"):
                    setattr(self, name, np.resize(getattr(self, name), size))
            self._pop[i] = self._in[i] = 0.0
            self._pop_ts[i] = self._in_ts[i] = 0
            self._row_off[i] = -1
        return i

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def observe(self, previous: Sequence[tuple[str, int, float]], item_id: str, ts: int, offset: int | None = None) -> None:
        """Record a positive engagement with ``item_id`` at ``ts`` after the
        user's ``previous`` (item_id, ts, signal) entries, oldest first.

        With a source ``offset``, a row that already holds an event at or past
        it (persisted before a crash, then redelivered) is left alone, so
        replaying any stretch of the partition changes each row exactly once:
        every row is its own watermark.
        """
        p = self.params
        j = self._idx(item_id)
        j_new = offset is None or self._row_off[j] < offset
        touched = [j] if j_new else []
        if j_new:
            self._pop[j], self._pop_ts[j] = _add(float(self._pop[j]), int(self._pop_ts[j]), 1.0, ts, p.pop_half_life_ms)
        self.latest_ts = max(self.latest_ts, ts)
        gap = 0
        gap_weight = exact.integer_powers(-p.gap_exponent, p.window)
        for prev_id, prev_ts, signal in reversed(previous):
            if gap >= p.window:
                break
            if signal <= 0 or prev_id == item_id:
                continue
            gap += 1
            weight = gap_weight[gap] * exact.decay(abs(ts - prev_ts), p.pair_half_life_ms)
            i = self._idx(prev_id)
            # i -> j lives in row i (with i's inbound from j -> i); j -> i in row j
            if offset is None or self._row_off[i] < offset:
                self._link(i, j, weight, ts, inbound=weight * p.backward)
                touched.append(i)
            if j_new:
                self._link(j, i, weight * p.backward, ts, inbound=weight)
        for row in touched:
            self.dirty.add(self._ids[row])
            if offset is not None:
                self._row_off[row] = offset

    def _link(self, source: int, target: int, weight: float, ts: int, inbound: float) -> None:
        """Add ``weight`` to the edge ``source -> target`` and ``inbound`` to
        the source's incoming weight: both live in the source's row."""
        hl = self.params.half_life_ms
        edges = self._edges.get(source)
        if edges is None:
            edges = self._edges[source] = _Edges()
        edges.add(target, weight, ts, hl)
        if edges.n > 2 * self.params.max_neighbours:
            edges.keep_strongest(self.params.max_neighbours, ts, hl)
        self._in[source], self._in_ts[source] = _add(float(self._in[source]), int(self._in_ts[source]), inbound, ts, hl)

    # -- reading --------------------------------------------------------------
    def neighbours(self, item_id: str, at_ts: int) -> dict[str, float]:
        """Out-edges of ``item_id`` normalised like cosine on a bipartite
        graph: w(i->j) / sqrt(out(i) * in(j)), decayed to ``at_ts``."""
        targets, scores = self._neighbour_scores(item_id, at_ts)
        return {self._ids[int(t)]: float(s) for t, s in zip(targets, scores)}

    def _neighbour_scores(self, item_id: str, at_ts: int) -> tuple[np.ndarray, np.ndarray]:
        empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))
        i = self._index.get(item_id)
        edges = self._edges.get(i) if i is not None else None
        if edges is None or edges.n == 0:
            return empty
        hl = self.params.half_life_ms
        decayed = edges.decayed(at_ts, hl)
        out_total = 0.0
        for value in decayed.tolist():
            out_total += value
        targets = edges.targets[: edges.n]
        inbound = self._in[targets] * exact.decay_array(at_ts - self._in_ts[targets], hl)
        ok = inbound > 0
        if out_total <= 0 or not ok.any():
            return empty
        return targets[ok], decayed[ok] / np.sqrt(out_total * inbound[ok])

    def neighbour_rows(self, item_id: str, at_ts: int, catalog_rows: "CatalogRows") -> tuple[np.ndarray, np.ndarray]:
        """:meth:`neighbours` mapped to catalog rows: (rows, scores)."""
        targets, scores = self._neighbour_scores(item_id, at_ts)
        if not len(targets):
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        rows = self._catalog_map(catalog_rows)[targets]
        known = rows >= 0
        return rows[known], scores[known].astype(np.float32)

    def seed_scores(self, seeds: Sequence[str], recency: float, at_ts: int, catalog_rows: "CatalogRows") -> tuple[np.ndarray, np.ndarray]:
        """Graph scores per catalog row for a user's ``seeds`` (most recent
        first): the sum over seeds of ``recency ** age`` times the seed's
        normalised out-edges (:meth:`neighbours`), and per row the seed that
        contributed most (index into ``seeds``, the earliest on a tie; -1: none).

        All seeds' edges are scored in one pass of array operations (this
        runs for every listed user); the sums are accumulated seed by seed in
        the same order as one :meth:`neighbour_rows` call per seed would.
        """
        n = catalog_rows.size()
        scores = np.zeros(n, dtype=np.float32)
        because = np.full(n, -1, dtype=np.int64)
        used = [(age, edges) for age, seed in enumerate(seeds) if (i := self._index.get(seed)) is not None and (edges := self._edges.get(i)) is not None and edges.n]
        if not used:
            return scores, because
        hl = self.params.half_life_ms
        lengths = [edges.n for _, edges in used]
        targets = np.concatenate([edges.targets[: edges.n] for _, edges in used])
        weights = np.concatenate([edges.weights[: edges.n] for _, edges in used])
        stamps = np.concatenate([edges.stamps[: edges.n] for _, edges in used])
        decayed = weights * exact.decay_array(at_ts - stamps, hl)
        bounds = np.cumsum(lengths)[:-1]
        # per seed and summed as _neighbour_scores sums it (pairwise, per array)
        out_total = np.array([_plain_sum(part) for part in np.split(decayed, bounds)], dtype=np.float64)
        segment = np.repeat(np.arange(len(used)), lengths)
        inbound = self._in[targets] * exact.decay_array(at_ts - self._in_ts[targets], hl)
        rows = self._catalog_map(catalog_rows)[targets]
        totals = out_total[segment]
        keep = (inbound > 0) & (totals > 0) & (rows >= 0)
        if not keep.any():
            return scores, because
        seg = segment[keep]
        ages = np.array([age for age, _ in used], dtype=np.int64)[seg]
        powers = exact.power_table(recency, len(seeds))
        factors = np.array([np.float32(powers[age]) for age, _ in used], dtype=np.float32)[seg]
        normalised = (decayed[keep] / np.sqrt(totals[keep] * inbound[keep])).astype(np.float32)
        contribution = factors * normalised
        rows = rows[keep]
        np.add.at(scores, rows, contribution)
        best = np.zeros(n, dtype=np.float32)
        np.maximum.at(best, rows, contribution)
        # the earliest seed reaching a row's best (strictly positive) contribution
        wins = np.flatnonzero((contribution == best[rows]) & (contribution > 0))
        winner_rows, first = np.unique(rows[wins], return_index=True)
        because[winner_rows] = ages[wins[first]]
        return scores, because

    def _catalog_map(self, catalog_rows: "CatalogRows") -> np.ndarray:
        n = len(self._ids)
        version = catalog_rows.version()
        if self._row_map is not None and len(self._row_map) == n and self._row_map_catalog == version:
            return self._row_map
        if self._row_map is not None and self._row_map_catalog == version and len(self._row_map) < n:
            # the graph learnt new items and the catalog did not change: map only those
            fresh = [r if (r := catalog_rows.row_of(i)) is not None else -1 for i in self._ids[len(self._row_map) :]]
            self._row_map = np.concatenate([self._row_map, np.array(fresh, dtype=np.int64)])
        else:
            self._row_map = np.array([r if (r := catalog_rows.row_of(i)) is not None else -1 for i in self._ids], dtype=np.int64)
            self._row_map_catalog = version
        return self._row_map

    def trending_over(self, catalog_rows: "CatalogRows", at_ts: int) -> np.ndarray:
        """Trending weight per catalog row at ``at_ts`` (vectorised)."""
        row_map = self._catalog_map(catalog_rows)
        out = np.zeros(catalog_rows.size(), dtype=np.float32)
        known = row_map >= 0
        if known.any():
            _, weights = self.trending(at_ts)
            out[row_map[known]] = weights[known]
        return out

    def trending(self, at_ts: int) -> tuple[list[str], np.ndarray]:
        """Every known item's trending weight at ``at_ts`` (ids, weights)."""
        n = len(self._ids)
        elapsed = np.maximum(at_ts - self._pop_ts[:n], 0)
        return self._ids, self._pop[:n] * exact.decay_array(elapsed, self.params.pop_half_life_ms)

    # -- persistence ----------------------------------------------------------
    def row(self, item_id: str) -> GraphRow:
        """The persisted form of one item."""
        i = self._index[item_id]
        edges = self._edges.get(i)
        out: dict[str, tuple[float, int]] = {}
        if edges is not None:
            n, ids = edges.n, self._ids
            targets = [ids[t] for t in edges.targets[:n].tolist()]
            out = dict(zip(targets, zip(edges.weights[:n].tolist(), edges.stamps[:n].tolist())))
        return GraphRow(float(self._pop[i]), int(self._pop_ts[i]), float(self._in[i]), int(self._in_ts[i]), out, int(self._row_off[i]))

    def take_dirty(self) -> list[tuple[str, bytes]]:
        """Rows changed since the last call, encoded, for the changelog."""
        changed = [(item_id, encode_row(self.row(item_id))) for item_id in sorted(self.dirty)]
        self.dirty.clear()
        return changed

    def load_row(self, item_id: str, data: bytes) -> None:
        row = decode_row(data)
        i = self._idx(item_id)
        self._pop[i], self._pop_ts[i], self._in[i], self._in_ts[i] = row.pop, row.pop_ts, row.inbound, row.inbound_ts
        self._row_off[i] = row.offset
        edges = self._edges[i] = _Edges()
        for target, (weight, ts) in row.edges.items():
            edges.append(self._idx(target), weight, ts)
        self.latest_ts = max(self.latest_ts, row.pop_ts, row.inbound_ts)
