"""Per-user interest state and its update rule.

A user's taste is a decayed sum of the vectors of what they engaged with:
``taste(T) = sum_i w_i * 0.5 ** ((T - t_i) / half_life) * v_i``, in event time.
The sum is kept as a unit direction plus a norm so the stored float16 vector
never under- or overflows, and because the sum is commutative a late event
lands exactly where it would have had it arrived on time. Short-term intent
is read from the most recent history at ranking time.

The state is small and bounded (history capped, vectors in float16) and is
stored as msgpack bytes in a RocksDB-backed table.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import msgspec
import numpy as np

from models import exact, kernels
from models.errors import StateError
from schemas.records import Event, EventType

STATE_VERSION = 2


@dataclass(frozen=True)
class InterestParams:
    """Tunable constants of the update rule (event-time based)."""

    half_life_ms: int = 14 * 24 * 3600 * 1000
    history_size: int = 100
    max_clusters: int = 4
    # cosine to the nearest interest needed to join it rather than open a new one
    join_threshold: float = 0.45
    view: float = 0.3
    click: float = 0.6
    add_to_cart: float = 1.2
    purchase: float = 2.0
    search: float = 1.0
    dislike: float = -1.0
    # event ids remembered per user to catch duplicates (see README, "Nothing
    # lost, nothing counted twice"): the last N *arrivals* of that user
    dedupe_window: int = 32
    # history entries that keep their source offset (the newest arrivals):
    # a graph snapshot is due once one user has half this many events since
    # the last, so that a crash's replay can rebuild what they fed the graph.
    # 32 makes global-graph views snapshot nearly every step on MovieLens
    # (users rate in bursts); 100 ran faster but is not yet crash-tested
    tracked_offsets: int = 32
    # a search stops steering the ranking after RankingParams.
    # search_memory_events later items; the state then drops its vector
    # (must be >= that; a test checks)
    query_memory_events: int = 10
    # an inactive user's state expires after this much event time (0: never)
    ttl_ms: int = 0


DEFAULT_PARAMS = InterestParams()


def event_signal(event: Event, params: InterestParams = DEFAULT_PARAMS) -> float:
    """Signed strength of one event. A rating always means the user consumed
    the item, so every rating is a positive signal that grows with the value
    (1 star: 0.4, 3 stars: 1.0, 5 stars: 1.6); ``dislike`` is the negative."""
    if event.type is EventType.FORGET:
        return 0.0
    if event.type is EventType.RATE:
        base = 0.4 + 0.3 * ((event.value or 0.0) - 1.0)
        base = max(base, 0.1)
    else:
        base = getattr(params, event.type.value)
    return base * (event.weight if event.weight is not None else 1.0)


def decay_factor(elapsed_ms: int, half_life_ms: int) -> float:
    """Weight left after ``elapsed_ms`` of event time (the same bits on every
    machine: :func:`models.exact.decay`)."""
    return exact.decay(elapsed_ms, half_life_ms)


class HistoryEntry(msgspec.Struct, array_like=True):
    """One engaged item in the user's recent history. ``folded`` is False
    while the item's vector was unknown (not yet in the catalog)."""

    item_id: str
    ts: int
    signal: float
    folded: bool = True
    # source offset of the event: replaying the graph after a crash needs the
    # history *as it was* before each event
    offset: int = -1


class Cluster(msgspec.Struct, array_like=True):
    """One interest: a centroid in the encoder's space (int8, scaled unit
    vector), its weight decayed in event time, and its best recent item."""

    centroid: bytes
    weight: float
    ts: int
    anchor: str  # representative item ("" for a search-only interest)
    anchor_score: float

    def vector(self) -> np.ndarray:
        return np.frombuffer(self.centroid, dtype=np.int8).astype(np.float32) / 127.0

    def weight_at(self, ts: int, half_life_ms: int) -> float:
        return self.weight * decay_factor(ts - self.ts, half_life_ms)


# The stored float16 direction is an int8 direction over 127: 255 values.
# Tables of them let the kernels (models.kernels.fold_taste and friends)
# read and write the float16 form exactly as numpy's casts do.
_Q = np.arange(-127, 128, dtype=np.int8)
HALF_OF_Q = (_Q.astype(np.float32) / 127.0).astype(np.float16).astype(np.float32)  # the float16 value of q / 127, by q + 127
HALF_BITS_OF_Q = (_Q.astype(np.float32) / 127.0).astype(np.float16).view(np.uint16)  # its bits
HALF_TO_F32 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)  # every float16, by its bits


def _half_bytes(q: np.ndarray) -> bytes:
    """``_int8_to_fp16(q.tobytes())`` by table."""
    return HALF_BITS_OF_Q[q.astype(np.int64) + 127].tobytes()


def _kernel_vector(vector: np.ndarray | None) -> bool:
    # the kernels replicate numpy's float32 arithmetic; other dtypes take numpy
    return vector is not None and vector.dtype == np.float32 and vector.ndim == 1 and len(vector) > 0


def _quantise(unit: np.ndarray) -> bytes:
    if unit.dtype == np.float32 and unit.ndim == 1 and len(unit):
        quantised = kernels.quantise_int8(unit)  # the same bytes, one call instead of four
        if len(quantised):
            return quantised.tobytes()
    return np.clip(np.round(unit * 127.0), -127, 127).astype(np.int8).tobytes()


class UserState(msgspec.Struct, kw_only=True):
    """What recstream remembers about one user (mutable; owned by one batch)."""

    version: int = STATE_VERSION
    taste_dir: bytes = b""  # float16 unit vector of the decayed taste sum
    taste_norm: float = 0.0  # its length at ``ref_ts``
    ref_ts: int = 0  # event time the taste sum is decayed to
    query_vec: bytes = b""  # float16 vector of the latest search
    query_ts: int = 0
    history: list[HistoryEntry] = msgspec.field(default_factory=list)
    clusters: list[Cluster] = msgspec.field(default_factory=list)
    last_offset: int = -1  # highest source offset applied (redelivery guard)
    event_count: int = 0
    last_event_id: str = ""
    last_event_ts: int = 0
    recent_ids: bytes = b""  # uint64 hashes of the last event ids, oldest first
    duplicates: int = 0  # events skipped because their id was seen
    # the bot guard (models.guard): event-time rate window, events in it,
    # last window past the rate (-1: never), events folded as seen only
    guard_window: int = -1
    guard_count: int = 0
    flagged_window: int = -1
    discounted: int = 0
    # uint32 hashes of the items of the user's latest list, best first (live
    # quality, models.quality: was the next item in it, at which rank)
    last_list: bytes = b""

    # -- vectors ---------------------------------------------------------
    def taste(self, dim: int) -> np.ndarray:
        """The decayed taste sum at ``ref_ts`` (float32; zeros when empty)."""
        if not self.taste_dir:
            return np.zeros(dim, dtype=np.float32)
        return np.frombuffer(self.taste_dir, dtype=np.float16).astype(np.float32) * self.taste_norm

    def set_taste(self, vector: np.ndarray) -> None:
        norm = exact.norm(vector)
        if norm < 1e-12 or not math.isfinite(norm):
            self.taste_dir, self.taste_norm = b"", 0.0
        else:
            # kept on the int8 grid it is stored on: a state read back from
            # the table is then the very state that was written, so lists do
            # not depend on where batches (and store round trips) fall
            self.taste_dir = _int8_to_fp16(_quantise(vector / norm))
            # scale so the quantised direction times the norm keeps the length
            stored = exact.norm(np.frombuffer(self.taste_dir, dtype=np.float16).astype(np.float32))
            self.taste_norm = norm / stored if stored > 0 else norm

    def query(self) -> np.ndarray | None:
        if not self.query_vec:
            return None
        return np.frombuffer(self.query_vec, dtype=np.float16).astype(np.float32)

    def seen_items(self) -> set[str]:
        return {h.item_id for h in self.history}

    # -- duplicates --------------------------------------------------------
    def has_seen(self, id_hash: int) -> bool:
        """Whether an event with this id hash is among the remembered ones."""
        return bool(self.recent_ids) and bool((np.frombuffer(self.recent_ids, dtype=np.uint64) == np.uint64(id_hash)).any())

    def remember(self, id_hash: int, window: int) -> None:
        """Add an event id hash to the ring of the last ``window`` arrivals."""
        ids = np.frombuffer(self.recent_ids, dtype=np.uint64)
        self.recent_ids = np.append(ids[max(0, len(ids) - window + 1) :], np.uint64(id_hash)).tobytes()


def event_id_hash(event_id: str) -> int:
    """64-bit hash of an event id (collisions: about 1 in 10^17 per pair)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


def apply_event(
    state: UserState,
    event: Event,
    item_vector: np.ndarray | None,
    query_vector: np.ndarray | None = None,
    params: InterestParams = DEFAULT_PARAMS,
    offset: int = -1,
) -> None:
    """Fold one event (read at source ``offset``) into ``state`` (in place).

    ``item_vector`` is ``None`` when the catalog does not know the item yet:
    the event still counts in history (seen-filtering, sequence signals) but
    adds nothing to the taste vector.
    """
    signal = event_signal(event, params)
    vector = item_vector if item_vector is not None else query_vector
    if vector is not None:
        add_to_taste(state, vector, signal, event.ts, params)
        update_clusters(state, vector, signal, event.ts, event.item_id or "", params)
    if query_vector is not None and event.ts >= state.query_ts:
        unit = np.asarray(query_vector, dtype=np.float32)
        q = kernels.unit_int8(unit) if _kernel_vector(unit) else np.empty(0, dtype=np.int8)
        state.query_vec = _half_bytes(q) if len(q) == len(unit) else _int8_to_fp16(_quantise(unit / (exact.norm(unit) or 1.0)))
        state.query_ts = event.ts
    if event.item_id is not None:
        # signals are stored to 0.01; keep them so in memory too (see set_taste)
        entry = HistoryEntry(event.item_id, event.ts, round(signal * 100) / 100, folded=item_vector is not None, offset=offset)
        append_history(state, entry, params)
    state.event_count += 1
    if event.ts >= state.last_event_ts:
        state.last_event_ts = event.ts
        state.last_event_id = event.event_id


def add_to_taste(state: UserState, vector: np.ndarray, signal: float, ts: int, params: InterestParams = DEFAULT_PARAMS) -> None:
    """Add ``signal * vector`` at event time ``ts`` to the decayed taste sum
    (one kernel call for a float32 vector; :func:`add_to_taste_numpy` is
    the same arithmetic in numpy, and the reference the kernel is tested on)."""
    if not _kernel_vector(vector) or (state.taste_dir and len(state.taste_dir) != 2 * len(vector)):
        add_to_taste_numpy(state, vector, signal, ts, params)
        return
    gap = ts - state.ref_ts if ts >= state.ref_ts else state.ref_ts - ts
    bits = np.frombuffer(state.taste_dir, dtype=np.uint16)
    q, norm, state.ref_ts = kernels.fold_taste(bits, state.taste_norm, state.ref_ts, vector, float(signal), ts,
                                               decay_factor(gap, params.half_life_ms), HALF_TO_F32, HALF_OF_Q)
    if len(q):
        state.taste_dir, state.taste_norm = _half_bytes(q), norm
    else:
        state.taste_dir, state.taste_norm = b"", 0.0


def add_to_taste_numpy(state: UserState, vector: np.ndarray, signal: float, ts: int, params: InterestParams = DEFAULT_PARAMS) -> None:
    """:func:`add_to_taste` in numpy (any dtype)."""
    taste = state.taste(len(vector))
    if ts >= state.ref_ts:
        taste = taste * decay_factor(ts - state.ref_ts, params.half_life_ms) + signal * vector
        state.ref_ts = ts
    else:  # late event: decay its contribution to the state's time instead
        taste = taste + signal * decay_factor(state.ref_ts - ts, params.half_life_ms) * vector
    state.set_taste(taste)


def update_clusters(
    state: UserState, vector: np.ndarray, signal: float, ts: int, item_id: str, params: InterestParams = DEFAULT_PARAMS
) -> None:
    """Online multi-interest clustering (in the spirit of PinnerSage).

    A positive event joins the nearest interest when it is close enough
    (moving its centroid, adding to its decayed weight) or opens a new one,
    evicting the weakest past ``max_clusters``. A negative event (dislike)
    takes weight from the interest it is closest to.
    """
    hl = params.half_life_ms
    clusters = state.clusters
    fast = _kernel_vector(vector) and all(len(c.centroid) == len(vector) for c in clusters)
    if fast:
        centroids = np.frombuffer(b"".join(c.centroid for c in clusters), dtype=np.int8).reshape(len(clusters), len(vector))
        unit, index, best_cos = kernels.nearest_interest(centroids, vector)
        best = clusters[index] if index >= 0 else None
    else:
        unit = vector / (exact.norm(vector) or 1.0)
        best, best_cos = None, -1.0
        for cluster in clusters:
            cos = exact.dot(cluster.vector(), unit)
            if cos > best_cos:
                best, best_cos = cluster, cos
    if signal <= 0:
        if best is not None and best_cos >= params.join_threshold:
            penalty = -signal * best_cos
            if ts >= best.ts:
                best.weight, best.ts = max(0.0, best.weight_at(ts, hl) - penalty), ts
            else:
                best.weight = max(0.0, best.weight - penalty * decay_factor(best.ts - ts, hl))
        return
    if best is not None and best_cos >= params.join_threshold:
        current = best.weight_at(ts, hl) if ts >= best.ts else best.weight
        added = signal if ts >= best.ts else signal * decay_factor(best.ts - ts, hl)
        q = kernels.merge_centroid(np.frombuffer(best.centroid, dtype=np.int8), current, unit, added) if fast else np.empty(0, dtype=np.int8)
        if len(q) == len(unit):
            best.centroid = q.tobytes()
        else:  # numpy (another dtype, or a component the kernel cannot cast)
            merged = best.vector() * current + unit * added
            best.centroid = _quantise(merged / (exact.norm(merged) or 1.0))
        best.weight, best.ts = current + added, max(best.ts, ts)
        if item_id and added >= best.anchor_score * decay_factor(ts - best.ts, hl):
            best.anchor, best.anchor_score = item_id, added
        return
    state.clusters.append(Cluster(_quantise(unit), signal, ts, item_id, signal))
    if len(state.clusters) > params.max_clusters:
        weakest = min(state.clusters, key=lambda c: c.weight_at(max(ts, c.ts), hl))
        state.clusters.remove(weakest)


def fold_pending(state: UserState, vector_of, params: InterestParams = DEFAULT_PARAMS) -> int:
    """Fold history items whose vectors arrived after their events.

    ``vector_of(item_id)`` returns the vector or ``None``. Because the taste
    sum is commutative in event time, folding late gives the same taste as
    folding on time. Returns how many entries were folded.
    """
    folded = 0
    for entry in state.history:
        if entry.folded:
            continue
        vector = vector_of(entry.item_id)
        if vector is not None:
            add_to_taste(state, vector, entry.signal, entry.ts, params)
            update_clusters(state, vector, entry.signal, entry.ts, entry.item_id, params)
            entry.folded = True
            folded += 1
    return folded


def append_history(state: UserState, entry: HistoryEntry, params: InterestParams = DEFAULT_PARAMS) -> None:
    """Add one entry to the history (capped, in event-time order), keeping
    the offsets of the newest entries only and dropping a search vector the
    ranking no longer uses."""
    _append_history(state, entry, params.history_size)
    _forget_old_offsets(state, params.tracked_offsets)
    if state.query_vec and sum(h.ts > state.query_ts for h in state.history) >= params.query_memory_events:
        state.query_vec = b""  # no longer used by the ranking; keep the state small


def _forget_old_offsets(state: UserState, keep: int) -> None:
    """Keep the source offsets of the newest ``keep`` entries only (-1 for
    the rest: older than any event a crash could make the graph replay)."""
    tracked = [h for h in state.history if h.offset >= 0]
    if len(tracked) > keep:
        for entry in sorted(tracked, key=lambda h: h.offset)[: len(tracked) - keep]:
            entry.offset = -1


def _append_history(state: UserState, entry: HistoryEntry, cap: int) -> None:
    history = state.history
    # keep history ordered by event time so late events slot into place
    position = len(history)
    while position > 0 and history[position - 1].ts > entry.ts:
        position -= 1
    history.insert(position, entry)
    if len(history) > cap:
        del history[: len(history) - cap]


class _StoredState(msgspec.Struct, array_like=True):
    """The on-disk form of :class:`UserState`: vectors as int8, history in
    columns with delta-coded times and offsets, so a full state stays under
    4 KB. The first fields are what the expiry sweep reads (:func:`state_header`)."""

    version: int
    last_event_ts: int
    last_offset: int
    taste: bytes  # int8 unit vector
    taste_norm: float
    ref_ts: int
    query: bytes  # int8 unit vector
    query_ts: int
    items: list[str]
    first_ts: int
    ts_deltas: list[int]  # ms since the previous history entry
    signals: list[int]  # signal * 100
    offsets_back: list[int]  # last_offset - entry offset, -1: not kept
    unfolded: bytes  # bit i (little-endian bitmap) set: entry i not yet folded
    clusters: list[Cluster]
    event_count: int
    last_event_id: str
    recent_ids: bytes
    duplicates: int
    # later additions, with defaults: states written before them still decode
    guard_window: int = -1
    guard_count: int = 0
    flagged_window: int = -1
    discounted: int = 0
    last_list: bytes = b""


class StateHeader(msgspec.Struct, array_like=True):
    """The leading fields of a stored state, decoded without the rest."""

    version: int
    last_event_ts: int
    last_offset: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_StoredState)
_header_decoder = msgspec.msgpack.Decoder(StateHeader)


def _fp16_to_int8(data: bytes) -> bytes:
    return _quantise(np.frombuffer(data, dtype=np.float16).astype(np.float32)) if data else b""


def _int8_to_fp16(data: bytes) -> bytes:
    return (np.frombuffer(data, dtype=np.int8).astype(np.float32) / 127.0).astype(np.float16).tobytes() if data else b""


def encode_state(state: UserState) -> bytes:
    """Compact msgpack bytes for the state table (signals kept to 0.01)."""
    history = state.history
    times = [h.ts for h in history]
    return _encoder.encode(
        _StoredState(
            version=state.version,
            last_event_ts=state.last_event_ts,
            last_offset=state.last_offset,
            taste=_fp16_to_int8(state.taste_dir),
            taste_norm=state.taste_norm,
            ref_ts=state.ref_ts,
            query=_fp16_to_int8(state.query_vec),
            query_ts=state.query_ts,
            items=[h.item_id for h in history],
            first_ts=times[0] if times else 0,
            ts_deltas=[b - a for a, b in zip(times, times[1:])],
            signals=[round(h.signal * 100) for h in history],
            offsets_back=[state.last_offset - h.offset if h.offset >= 0 else -1 for h in history],
            unfolded=np.packbits([not h.folded for h in history], bitorder="little").tobytes() if history else b"",
            clusters=state.clusters,
            event_count=state.event_count,
            last_event_id=state.last_event_id,
            recent_ids=state.recent_ids,
            duplicates=state.duplicates,
            guard_window=state.guard_window,
            guard_count=state.guard_count,
            flagged_window=state.flagged_window,
            discounted=state.discounted,
            last_list=state.last_list,
        )
    )


def state_header(data: bytes) -> StateHeader:
    """Version, last event time and offset of stored state bytes, cheaply."""
    try:
        return _header_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise StateError(f"corrupt user state ({len(data)} bytes): {exc}") from exc


def decode_state(data: bytes | None) -> UserState:
    """State from table bytes; a missing value is a fresh user."""
    if not data:
        return UserState()
    try:
        stored = _decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise StateError(f"corrupt user state ({len(data)} bytes): {exc}") from exc
    if stored.version != STATE_VERSION:
        raise StateError(f"user state version {stored.version} is not {STATE_VERSION}")
    n = len(stored.items)
    if len(stored.signals) != n or len(stored.offsets_back) != n or len(stored.ts_deltas) != max(0, n - 1):
        raise StateError("corrupt user state: history columns differ in length")
    if len(stored.recent_ids) % 8:
        raise StateError("corrupt user state: event id ring is not whole uint64s")
    times = [stored.first_ts]
    for delta in stored.ts_deltas:
        times.append(times[-1] + delta)
    unfolded = np.unpackbits(np.frombuffer(stored.unfolded, dtype=np.uint8), count=n, bitorder="little") if n else []
    history = [
        HistoryEntry(item, ts, signal / 100.0, folded=not unfolded[i], offset=stored.last_offset - back if back >= 0 else -1)
        for i, (item, ts, signal, back) in enumerate(zip(stored.items, times, stored.signals, stored.offsets_back))
    ]
    return UserState(
        version=stored.version,
        taste_dir=_int8_to_fp16(stored.taste),
        taste_norm=stored.taste_norm,
        ref_ts=stored.ref_ts,
        query_vec=_int8_to_fp16(stored.query),
        query_ts=stored.query_ts,
        history=history,
        clusters=stored.clusters,
        last_offset=stored.last_offset,
        event_count=stored.event_count,
        last_event_id=stored.last_event_id,
        last_event_ts=stored.last_event_ts,
        recent_ids=stored.recent_ids,
        duplicates=stored.duplicates,
        guard_window=stored.guard_window,
        guard_count=stored.guard_count,
        flagged_window=stored.flagged_window,
        discounted=stored.discounted,
        last_list=stored.last_list,
    )
