"""The interest graph: item -> item edges from co-engagement in user sequences,
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

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import msgspec
import numpy as np

from models.errors import StateError


class CatalogRows(Protocol):
    """What the graph needs of the catalog (kept abstract to avoid a cycle)."""

    def row_of(self, item_id: str) -> int | None: ...

    def size(self) -> int: ...

    def version(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class GraphParams:
    half_life_ms: int = 30 * 24 * 3600 * 1000
    # trending fades faster than co-engagement: what is hot this week
    pop_half_life_ms: int = 30 * 24 * 3600 * 1000
    window: int = 20
    gap_exponent: float = 0.5
    pair_half_life_ms: int = 30 * 24 * 3600 * 1000
    backward: float = 0.6
    max_neighbours: int = 200


DEFAULT_GRAPH = GraphParams()


def _decayed(weight: float, since_ts: int, at_ts: int, half_life_ms: int) -> float:
    if at_ts <= since_ts:
        return weight
    return weight * 0.5 ** ((at_ts - since_ts) / half_life_ms)


def _add(weight: float, ts: int, delta: float, at_ts: int, half_life_ms: int) -> tuple[float, int]:
    """(weight, ts) after adding ``delta`` at event time ``at_ts`` (commutative)."""
    if at_ts >= ts:
        return _decayed(weight, ts, at_ts, half_life_ms) + delta, at_ts
    return weight + delta * 0.5 ** ((ts - at_ts) / half_life_ms), ts


class GraphRow(msgspec.Struct, array_like=True):
    """One item's persisted row: trending weight, incoming weight, out-edges."""

    pop: float = 0.0
    pop_ts: int = 0
    inbound: float = 0.0
    inbound_ts: int = 0
    edges: dict[str, tuple[float, int]] = msgspec.field(default_factory=dict)


_row_encoder = msgspec.msgpack.Encoder()
_row_decoder = msgspec.msgpack.Decoder(GraphRow)


def encode_row(row: GraphRow) -> bytes:
    return _row_encoder.encode(row)


def decode_row(data: bytes) -> GraphRow:
    try:
        return _row_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise StateError(f"corrupt graph row ({len(data)} bytes): {exc}") from exc


@dataclass
class ItemGraph:
    """Co-engagement graph and trending weights of one partition."""

    params: GraphParams = DEFAULT_GRAPH
    rows: dict[str, GraphRow] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    latest_ts: int = 0
    last_offset: int = -1  # highest source offset observed (redelivery guard)
    # dense mirror of each row's trending weight, for vectorised scoring
    _index: dict[str, int] = field(default_factory=dict)
    _ids: list[str] = field(default_factory=list)
    _pop: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    _pop_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _in: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    _in_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _edge_cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    _row_map: np.ndarray | None = None
    _row_map_catalog: tuple[int, int] = (0, 0)

    def _row(self, item_id: str) -> GraphRow:
        row = self.rows.get(item_id)
        if row is None:
            row = self.rows[item_id] = GraphRow()
            self._index[item_id] = len(self._ids)
            self._ids.append(item_id)
            if len(self._ids) > len(self._pop):
                size = max(64, 2 * len(self._pop))
                self._pop = np.resize(self._pop, size)
                self._pop_ts = np.resize(self._pop_ts, size)
                self._in = np.resize(self._in, size)
                self._in_ts = np.resize(self._in_ts, size)
            last = len(self._ids) - 1
            self._pop[last] = self._in[last] = 0.0
            self._pop_ts[last] = self._in_ts[last] = 0
        return row

    def _mirror_pop(self, item_id: str, row: GraphRow) -> None:
        i = self._index[item_id]
        self._pop[i], self._pop_ts[i] = row.pop, row.pop_ts
        self._in[i], self._in_ts[i] = row.inbound, row.inbound_ts

    def observe(self, previous: Sequence[tuple[str, int, float]], item_id: str, ts: int) -> None:
        """Record a positive engagement with ``item_id`` at ``ts`` after the
        user's ``previous`` (item_id, ts, signal) entries, oldest first."""
        p = self.params
        row = self._row(item_id)
        row.pop, row.pop_ts = _add(row.pop, row.pop_ts, 1.0, ts, p.pop_half_life_ms)
        self._mirror_pop(item_id, row)
        self.dirty.add(item_id)
        self.latest_ts = max(self.latest_ts, ts)
        gap = 0
        for prev_id, prev_ts, signal in reversed(previous):
            if gap >= p.window:
                break
            if signal <= 0 or prev_id == item_id:
                continue
            gap += 1
            weight = gap ** -p.gap_exponent * 0.5 ** (abs(ts - prev_ts) / p.pair_half_life_ms)
            self._link(prev_id, item_id, weight, ts)
            self._link(item_id, prev_id, weight * p.backward, ts)

    def _link(self, source: str, target: str, weight: float, ts: int) -> None:
        hl = self.params.half_life_ms
        src = self._row(source)
        old = src.edges.get(target, (0.0, 0))
        src.edges[target] = _add(old[0], old[1], weight, ts, hl)
        if len(src.edges) > 2 * self.params.max_neighbours:
            self._prune(src, ts)
        self._edge_cache.pop(source, None)
        dst = self._row(target)
        dst.inbound, dst.inbound_ts = _add(dst.inbound, dst.inbound_ts, weight, ts, hl)
        self._mirror_pop(target, dst)
        self.dirty.update((source, target))

    def _prune(self, row: GraphRow, ts: int) -> None:
        hl = self.params.half_life_ms
        ranked = sorted(row.edges.items(), key=lambda kv: -_decayed(kv[1][0], kv[1][1], ts, hl))
        row.edges = dict(ranked[: self.params.max_neighbours])

    # -- reading --------------------------------------------------------------
    def neighbours(self, item_id: str, at_ts: int) -> dict[str, float]:
        """Out-edges of ``item_id`` normalised like cosine on a bipartite
        graph: w(i->j) / sqrt(out(i) * in(j)), decayed to ``at_ts``."""
        row = self.rows.get(item_id)
        if row is None or not row.edges:
            return {}
        hl = self.params.half_life_ms
        weights = {j: _decayed(w, t, at_ts, hl) for j, (w, t) in row.edges.items()}
        out_total = sum(weights.values())
        if out_total <= 0:
            return {}
        scores = {}
        for target, weight in weights.items():
            target_row = self.rows.get(target)
            inbound = _decayed(target_row.inbound, target_row.inbound_ts, at_ts, hl) if target_row else 0.0
            if inbound > 0:
                scores[target] = weight / math.sqrt(out_total * inbound)
        return scores

    def neighbour_rows(self, item_id: str, at_ts: int, catalog_rows: "CatalogRows") -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`neighbours` mapped to catalog rows: (rows, scores)."""
        cached = self._edge_cache.get(item_id)
        if cached is None:
            row = self.rows.get(item_id)
            if row is None or not row.edges:
                return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
            targets = np.fromiter((self._index[t] for t in row.edges), dtype=np.int64, count=len(row.edges))
            weights = np.fromiter((w for w, _ in row.edges.values()), dtype=np.float64, count=len(row.edges))
            stamps = np.fromiter((t for _, t in row.edges.values()), dtype=np.int64, count=len(row.edges))
            cached = self._edge_cache[item_id] = (targets, weights, stamps)
        targets, weights, stamps = cached
        hl = self.params.half_life_ms
        decayed = weights * np.exp2(-np.maximum(at_ts - stamps, 0) / hl)
        out_total = float(decayed.sum())
        inbound = self._in[targets] * np.exp2(-np.maximum(at_ts - self._in_ts[targets], 0) / hl)
        ok = inbound > 0
        if out_total <= 0 or not ok.any():
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        scores = decayed[ok] / np.sqrt(out_total * inbound[ok])
        rows = self._catalog_map(catalog_rows)[targets[ok]]
        known = rows >= 0
        return rows[known], scores[known].astype(np.float32)

    def _catalog_map(self, catalog_rows: "CatalogRows") -> np.ndarray:
        n = len(self._ids)
        if self._row_map is None or len(self._row_map) != n or self._row_map_catalog != catalog_rows.version():
            self._row_map = np.array([r if (r := catalog_rows.row_of(i)) is not None else -1 for i in self._ids], dtype=np.int64)
            self._row_map_catalog = catalog_rows.version()
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
        return self._ids, self._pop[:n] * np.exp2(-elapsed / self.params.pop_half_life_ms)

    # -- persistence ----------------------------------------------------------
    def take_dirty(self) -> list[tuple[str, bytes]]:
        """Rows changed since the last call, encoded, for the changelog."""
        changed = [(item_id, encode_row(self.rows[item_id])) for item_id in sorted(self.dirty)]
        self.dirty.clear()
        return changed

    def load_row(self, item_id: str, data: bytes) -> None:
        row = decode_row(data)
        self._row(item_id)
        for target in row.edges:
            self._row(target)  # targets need an index even before their own row loads
        self.rows[item_id] = row
        self._mirror_pop(item_id, row)
        self._edge_cache.pop(item_id, None)
        self.latest_ts = max(self.latest_ts, row.pop_ts, row.inbound_ts)
