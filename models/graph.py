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

The graph lives in flat arrays (per-item weights, one slab of an edge pool
per item) that the compiled kernels of :mod:`models.kernels` update and
score; this class maps item ids to indices and persists rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import msgspec
import numpy as np

from models import exact, kernels
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
    # engagements at or below this signal (models.interest.event_signal) feed
    # neither edges nor trending: 0 = every positive one; 0.75 leaves out
    # ratings of 1 and 2 stars (signals 0.4 and 0.7)
    min_signal: float = 0.0


DEFAULT_GRAPH = GraphParams()


class GraphRow(msgspec.Struct, array_like=True):
    """One item's persisted row: trending weight, incoming weight, out-edges
    (target ids with their weights and weight times as little-endian
    float64/int64 bytes), and the highest source offset whose event changed
    it. The first format (``edges`` as a dict) is read too (:func:`decode_row`)."""

    pop: float = 0.0
    pop_ts: int = 0
    inbound: float = 0.0
    inbound_ts: int = 0
    targets: list[str] = msgspec.field(default_factory=list)
    weights: bytes = b""
    stamps: bytes = b""
    offset: int = -1
    # the view's count of foreign ops (other partitions' deltas) that had
    # changed the row when it was persisted (models.global_graph)
    seq: int = -1

    @property
    def edges(self) -> dict[str, tuple[float, int]]:
        """Out-edges as ``{target: (weight, event time)}`` (for reading and diagnostics)."""
        weights = np.frombuffer(self.weights, dtype="<f8").tolist()
        stamps = np.frombuffer(self.stamps, dtype="<i8").tolist()
        return dict(zip(self.targets, zip(weights, stamps)))


class _RowV1(msgspec.Struct, array_like=True):
    pop: float = 0.0
    pop_ts: int = 0
    inbound: float = 0.0
    inbound_ts: int = 0
    edges: dict[str, tuple[float, int]] = msgspec.field(default_factory=dict)
    offset: int = -1


_row_encoder = msgspec.msgpack.Encoder()
_row_decoder = msgspec.msgpack.Decoder(GraphRow)
_row_v1_decoder = msgspec.msgpack.Decoder(_RowV1)


def encode_row(row: GraphRow) -> bytes:
    return _row_encoder.encode(row)


def decode_row(data: bytes) -> GraphRow:
    try:
        return _row_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        try:
            old = _row_v1_decoder.decode(data)
        except msgspec.MsgspecError:
            raise StateError(f"corrupt graph row ({len(data)} bytes): {exc}") from exc
        return GraphRow(
            old.pop,
            old.pop_ts,
            old.inbound,
            old.inbound_ts,
            list(old.edges),
            np.array([w for w, _ in old.edges.values()], dtype="<f8").tobytes(),
            np.array([t for _, t in old.edges.values()], dtype="<i8").tobytes(),
            old.offset,
        )


# pool slots kept free before each observe: one slab move per touched row
# (window + 1 rows, each at most 2 * (2 * max_neighbours + 1) slots)
def _observe_reserve(params: GraphParams) -> int:
    return (params.window + 1) * 2 * (2 * params.max_neighbours + 8)


@dataclass
class ItemGraph:
    """Co-engagement graph and trending weights of one partition.

    Items get a dense index; their trending and incoming weights, watermarks
    and dirty marks live in arrays by that index, their out-edges in slabs
    of one edge pool (:mod:`models.kernels`). :class:`GraphRow` is only the
    persisted form (one changelog record per changed item).
    """

    params: GraphParams = DEFAULT_GRAPH
    latest_ts: int = 0
    last_offset: int = -1  # highest source offset observed (redelivery guard)
    # As a partition's view of the global graph (models.global_graph): the
    # partition's event-time watermark, the epoch up to which other
    # partitions' ops are folded in, and how many such ops were applied (each
    # row keeps the count it had seen, its watermark for foreign ops).
    watermark: int = -1
    foreign_epoch: int = -1
    foreign_seq: int = 0
    _index: dict[str, int] = field(default_factory=dict)
    _ids: list[str] = field(default_factory=list)
    _pop: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    _pop_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _in: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    _in_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _row_off: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _row_seq: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _dirty: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))
    _start: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _count: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _cap: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _targets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    _weights: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    _stamps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _meta: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.int64))  # pool used, slots in moved slabs
    _row_map: np.ndarray | None = None
    _row_map_catalog: tuple[int, int] = (0, 0)

    def _idx(self, item_id: str) -> int:
        i = self._index.get(item_id)
        if i is None:
            i = self._index[item_id] = len(self._ids)
            self._ids.append(item_id)
            if i >= len(self._pop):
                size = max(64, 2 * len(self._pop))
                for name in ("_pop", "_pop_ts", "_in", "_in_ts", "_row_off", "_row_seq", "_dirty", "_start", "_count", "_cap"):
                    old = getattr(self, name)
                    grown = np.zeros(size, dtype=old.dtype)
                    grown[: len(old)] = old
                    setattr(self, name, grown)
            self._pop[i] = self._in[i] = 0.0
            self._pop_ts[i] = self._in_ts[i] = 0
            self._row_off[i] = self._row_seq[i] = -1
            self._dirty[i] = False
            self._start[i] = self._count[i] = self._cap[i] = 0
        return i

    def _reserve(self, slots: int) -> None:
        """At least ``slots`` free slots at the pool's end (compacts first
        when moved slabs left half the pool behind)."""
        used, holes = int(self._meta[0]), int(self._meta[1])
        if used + slots <= len(self._targets):
            return
        if holes > used // 2:
            kernels.compact_pool(self._start, self._count, self._cap, self._targets, self._weights, self._stamps, self._meta, len(self._ids))
            used = int(self._meta[0])
            if used + slots <= len(self._targets):
                return
        size = max(1024, 2 * len(self._targets), used + slots)
        for name in ("_targets", "_weights", "_stamps"):
            old = getattr(self, name)
            grown = np.zeros(size, dtype=old.dtype)
            grown[:used] = old[:used]
            setattr(self, name, grown)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    @property
    def dirty(self) -> frozenset[str]:
        """Items whose rows changed since the last :meth:`take_dirty`."""
        ids = self._ids
        return frozenset(ids[i] for i in np.flatnonzero(self._dirty[: len(ids)]).tolist())

    def observe(
        self, previous: Sequence[tuple[str, int, float]], item_id: str, ts: int, offset: int | None = None
    ) -> tuple[list[str], list[int]]:
        """Record a positive engagement with ``item_id`` at ``ts`` after the
        user's ``previous`` (item_id, ts, signal) entries, oldest first.

        With a source ``offset``, a row that already holds an event at or past
        it (persisted before a crash, then redelivered) is left alone, so
        replaying any stretch of the partition changes each row exactly once:
        every row is its own watermark.

        Returns the items and times the engagement linked to (most recent
        first): with ``item_id`` and ``ts``, what :meth:`observe_foreign`
        needs to apply the same change to another partition's view.
        """
        p = self.params
        prev_ids: list[str] = []
        prev_ts: list[int] = []
        for prev_id, prev_time, signal in reversed(previous):
            if len(prev_ids) >= p.window:
                break
            if signal <= p.min_signal or prev_id == item_id:
                continue
            prev_ids.append(prev_id)
            prev_ts.append(prev_time)
        self.latest_ts = max(self.latest_ts, ts)
        self._apply(item_id, prev_ids, prev_ts, ts, -1 if offset is None else offset, "_row_off")
        return prev_ids, prev_ts

    def observe_foreign(self, item_id: str, prev_ids: Sequence[str], prev_ts: Sequence[int], ts: int) -> None:
        """Apply another partition's engagement (:meth:`observe`'s result) as
        the view's next foreign op: rows persisted after it (their ``seq`` is
        at or past it) are left alone, as :meth:`observe` does with offsets.
        The partition's own event time (``latest_ts``) does not move."""
        self.foreign_seq += 1
        self._apply(item_id, prev_ids, prev_ts, ts, self.foreign_seq, "_row_seq")

    def observe_foreign_many(self, ops: Sequence[tuple[str, Sequence[str], Sequence[int], int]]) -> int:
        """:meth:`observe_foreign` of each ``(item, previous, previous_ts,
        ts)`` in order, in one kernel call (the same rows, bit for bit);
        returns the edge updates made (two per linked item)."""
        n = len(ops)
        if n == 0:
            return 0
        idx = self._idx  # every index first: it may grow the arrays the kernel gets
        items = np.empty(n, dtype=np.int64)
        bounds = np.empty(n + 1, dtype=np.int64)
        times = np.empty(n, dtype=np.int64)
        previous: list[int] = []
        previous_ts: list[int] = []
        for k, (item_id, prev_ids, prev_ts, ts) in enumerate(ops):
            items[k] = idx(item_id)
            bounds[k] = len(previous)
            previous.extend(idx(i) for i in prev_ids)
            previous_ts.extend(prev_ts)
            times[k] = ts
        bounds[n] = len(previous)
        guards = np.arange(self.foreign_seq + 1, self.foreign_seq + 1 + n, dtype=np.int64)
        self.foreign_seq += n
        prev_rows, prev_times = np.array(previous, dtype=np.int64), np.array(previous_ts, dtype=np.int64)
        p = self.params
        reserve = _observe_reserve(p)
        done = 0
        while done < n:
            self._reserve(reserve)
            done = kernels.observe_many(
                done, items, prev_rows, prev_times, bounds, times, guards, reserve,
                _gap_weights(p), p.backward, p.half_life_ms, p.pop_half_life_ms, p.pair_half_life_ms, p.max_neighbours,
                self._pop, self._pop_ts, self._in, self._in_ts, self._row_seq, self._dirty,
                self._start, self._count, self._cap, self._targets, self._weights, self._stamps, self._meta,
            )  # fmt: skip
        return 2 * len(previous)

    def _apply(self, item_id: str, prev_ids: Sequence[str], prev_ts: Sequence[int], ts: int, guard: int, guards: str) -> None:
        p = self.params
        j = self._idx(item_id)
        prev_rows = np.array([self._idx(i) for i in prev_ids], dtype=np.int64)
        self._reserve(_observe_reserve(p))
        kernels.observe(
            j, prev_rows, np.array(prev_ts, dtype=np.int64), ts, guard,
            _gap_weights(p), p.backward, p.half_life_ms, p.pop_half_life_ms, p.pair_half_life_ms, p.max_neighbours,
            self._pop, self._pop_ts, self._in, self._in_ts, getattr(self, guards), self._dirty,  # after _idx: the arrays may have grown
            self._start, self._count, self._cap, self._targets, self._weights, self._stamps, self._meta,
        )  # fmt: skip

    # -- reading --------------------------------------------------------------
    def _slab(self, i: int) -> tuple[int, int]:
        return int(self._start[i]), int(self._count[i])

    def neighbours(self, item_id: str, at_ts: int) -> dict[str, float]:
        """Out-edges of ``item_id`` normalised like cosine on a bipartite
        graph: w(i->j) / sqrt(out(i) * in(j)), decayed to ``at_ts``."""
        targets, scores = self._neighbour_scores(item_id, at_ts)
        return {self._ids[int(t)]: float(s) for t, s in zip(targets, scores)}

    def _neighbour_scores(self, item_id: str, at_ts: int) -> tuple[np.ndarray, np.ndarray]:
        empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))
        i = self._index.get(item_id)
        if i is None or not self._count[i]:
            return empty
        hl = self.params.half_life_ms
        begin, n = self._slab(i)
        decayed = kernels.decayed_row(at_ts, hl, begin, n, self._weights, self._stamps)
        out_total = 0.0
        for value in decayed.tolist():  # in order, as the scoring kernel sums
            out_total += value
        targets = self._targets[begin : begin + n].astype(np.int64)
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
        One kernel call (:func:`models.kernels.seed_scores`)."""
        n = catalog_rows.size()
        index = self._index
        seed_rows = np.array([index.get(seed, -1) for seed in seeds], dtype=np.int64)
        if not len(seed_rows) or not (seed_rows >= 0).any():
            return np.zeros(n, dtype=np.float32), np.full(n, -1, dtype=np.int64)
        powers = np.array(exact.power_table(recency, len(seeds)), dtype=np.float64)
        return kernels.seed_scores(
            seed_rows, powers, at_ts, self.params.half_life_ms, self._catalog_map(catalog_rows), n,
            self._in, self._in_ts, self._start, self._count, self._targets, self._weights, self._stamps,
        )  # fmt: skip

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
        """Trending weight per catalog row at ``at_ts`` (one kernel call)."""
        n = len(self._ids)
        return kernels.trending_over(at_ts, self.params.pop_half_life_ms, self._catalog_map(catalog_rows), catalog_rows.size(), self._pop[:n], self._pop_ts[:n])

    def trending(self, at_ts: int) -> tuple[list[str], np.ndarray]:
        """Every known item's trending weight at ``at_ts`` (ids, weights)."""
        n = len(self._ids)
        return self._ids, self._pop[:n] * exact.decay_array(at_ts - self._pop_ts[:n], self.params.pop_half_life_ms)

    # -- persistence ----------------------------------------------------------
    def mark(self) -> str:
        """The graph's watermarks, persisted with a snapshot of its rows
        (offset, event-time watermark, foreign epoch and op count, latest_ts)."""
        return f"{self.last_offset} {self.watermark} {self.foreign_epoch} {self.foreign_seq} {self.latest_ts}"

    def restore_mark(self, mark: str) -> None:
        """Set what :meth:`mark` wrote (a bare offset: the first format)."""
        fields = mark.split()
        try:
            values = [int(v) for v in fields]
        except ValueError as exc:
            raise StateError(f"corrupt graph mark {mark[:80]!r}") from exc
        if len(values) not in (1, 5):
            raise StateError(f"corrupt graph mark {mark[:80]!r}")
        self.last_offset = values[0]
        if len(values) == 5:
            self.watermark, self.foreign_epoch, self.foreign_seq, self.latest_ts = values[1:]

    def row(self, item_id: str) -> GraphRow:
        """The persisted form of one item."""
        i = self._index[item_id]
        begin, n = self._slab(i)
        ids = self._ids
        return GraphRow(
            float(self._pop[i]),
            int(self._pop_ts[i]),
            float(self._in[i]),
            int(self._in_ts[i]),
            [ids[t] for t in self._targets[begin : begin + n].tolist()],
            self._weights[begin : begin + n].astype("<f8").tobytes(),
            self._stamps[begin : begin + n].astype("<i8").tobytes(),
            int(self._row_off[i]),
            int(self._row_seq[i]),
        )

    def take_dirty(self) -> list[tuple[str, bytes]]:
        """Rows changed since the last call, encoded, for the changelog."""
        n = len(self._ids)
        changed = sorted(self._ids[i] for i in np.flatnonzero(self._dirty[:n]).tolist())
        self._dirty[:n] = False
        return [(item_id, encode_row(self.row(item_id))) for item_id in changed]

    def load_row(self, item_id: str, data: bytes) -> None:
        row = decode_row(data)
        i = self._idx(item_id)
        self._pop[i], self._pop_ts[i], self._in[i], self._in_ts[i] = row.pop, row.pop_ts, row.inbound, row.inbound_ts
        self._row_off[i] = row.offset
        self._row_seq[i] = row.seq
        weights = np.frombuffer(row.weights, dtype="<f8")
        stamps = np.frombuffer(row.stamps, dtype="<i8")
        if len(weights) != len(row.targets) or len(stamps) != len(row.targets):
            raise StateError(f"corrupt graph row for {item_id!r}: {len(row.targets)} targets, {len(weights)} weights, {len(stamps)} times")
        targets = np.array([self._idx(t) for t in row.targets], dtype=np.int32)
        n = len(targets)
        cap = max(8, 1 << max(0, (n - 1).bit_length()))
        if self._cap[i] < n:
            self._reserve(cap)
            begin = int(self._meta[0])
            self._meta[1] += self._cap[i]
            self._meta[0] = begin + cap
            self._start[i], self._cap[i] = begin, cap
        begin = int(self._start[i])
        self._targets[begin : begin + n] = targets
        self._weights[begin : begin + n] = weights
        self._stamps[begin : begin + n] = stamps
        self._count[i] = n
        self.latest_ts = max(self.latest_ts, row.pop_ts, row.inbound_ts)


def _gap_weights(params: GraphParams) -> np.ndarray:
    """``gap ** -gap_exponent`` at index ``gap`` (decimal arithmetic, cached)."""
    return _gap_table(params.gap_exponent, params.window)


@functools.lru_cache(maxsize=16)
def _gap_table(exponent: float, window: int) -> np.ndarray:
    table = np.array(exact.integer_powers(-exponent, window), dtype=np.float64)
    table.setflags(write=False)
    return table
