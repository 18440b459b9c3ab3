"""Unit tests of ``models.interest``: signals, decay, the taste update rule,
history and state encoding. Synthetic vectors only (no model)."""

from __future__ import annotations

import random

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import StateError
from models.interest import (
    DEFAULT_PARAMS,
    STATE_VERSION,
    HistoryEntry,
    InterestParams,
    UserState,
    apply_event,
    decay_factor,
    decode_state,
    encode_state,
    event_signal,
    fold_pending,
)
from schemas.records import Event, EventType

T0 = 1_700_000_000_000
HOUR = 3600 * 1000
DIM = 8


def unit(vector) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32)
    return v / np.linalg.norm(v)


def basis(i: int, dim: int = DIM) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


def event(etype: str = "click", item_id: str | None = "i-0", ts: int = T0, n: int = 0, **fields) -> Event:
    return Event(event_id=f"e-{n}-{ts}", user_id="u-1", type=EventType(etype), ts=ts, item_id=item_id, **fields)


def cosine(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --------------------------------------------------------------------------
# event_signal / decay_factor
# --------------------------------------------------------------------------


def test_engagement_signals_are_ordered():
    signals = [event_signal(event(t)) for t in ("view", "click", "add_to_cart", "purchase")]
    assert all(s > 0 for s in signals)
    assert signals == sorted(signals)
    assert len(set(signals)) == 4, "each engagement level must be strictly stronger than the previous"


def test_rating_signal_grows_with_value_and_is_positive():
    signals = [event_signal(event("rate", value=v)) for v in (0, 0.5, 1, 2, 3, 4, 4.5, 5)]
    assert all(s > 0 for s in signals)
    assert all(a < b for a, b in zip(signals, signals[1:])), signals
    # 5 stars is stronger than a click, 1 star weaker
    assert event_signal(event("rate", value=5)) > event_signal(event("click"))
    assert event_signal(event("rate", value=1)) < event_signal(event("click"))


def test_dislike_is_negative():
    assert event_signal(event("dislike")) < 0
    assert event_signal(event("dislike", weight=3.0)) == pytest.approx(3 * event_signal(event("dislike")))


@pytest.mark.parametrize("etype", ["view", "click", "add_to_cart", "purchase", "dislike"])
@pytest.mark.parametrize("weight", [0.0, 0.5, 2.0, 10.0])
def test_weight_multiplies_signal(etype, weight):
    assert event_signal(event(etype, weight=weight)) == pytest.approx(weight * event_signal(event(etype)))


def test_weight_multiplies_rating_and_search():
    assert event_signal(event("rate", value=4, weight=2.0)) == pytest.approx(2 * event_signal(event("rate", value=4)))
    search = event("search", item_id=None, text="q", weight=0.5)
    assert event_signal(search) == pytest.approx(0.5 * DEFAULT_PARAMS.search)


def test_signal_uses_params():
    params = InterestParams(click=7.0)
    assert event_signal(event("click"), params) == 7.0


def test_decay_halves_at_half_life():
    hl = DEFAULT_PARAMS.half_life_ms
    assert decay_factor(hl, hl) == pytest.approx(0.5)
    assert decay_factor(2 * hl, hl) == pytest.approx(0.25)
    assert decay_factor(hl / 2, hl) == pytest.approx(2**-0.5)
    assert decay_factor(0, hl) == 1.0
    assert decay_factor(-hl, hl) == 1.0  # never amplifies
    assert decay_factor(1000, 2000) == pytest.approx(2**-0.5)


# --------------------------------------------------------------------------
# apply_event
# --------------------------------------------------------------------------


def test_first_event_sets_taste_to_item_direction():
    state = UserState()
    v = unit([1, 2, 0, 0, 0, 0, 0, 0])
    apply_event(state, event("purchase", ts=T0), v)
    taste = state.taste(DIM)
    assert cosine(taste, v) == pytest.approx(1.0, abs=1e-3)
    assert float(np.linalg.norm(taste)) == pytest.approx(DEFAULT_PARAMS.purchase, rel=1e-3)
    assert state.ref_ts == T0
    assert state.event_count == 1
    assert state.last_event_id == "e-0-%d" % T0 and state.last_event_ts == T0
    assert [h.item_id for h in state.history] == ["i-0"]
    assert state.history[0].folded is True
    assert state.history[0].signal == pytest.approx(DEFAULT_PARAMS.purchase)


def test_taste_moves_toward_item_vector():
    state = UserState()
    a, b = basis(0), basis(1)
    apply_event(state, event("click", "a", T0), a)
    before = cosine(state.taste(DIM), b)
    apply_event(state, event("click", "b", T0 + HOUR), b)
    after = cosine(state.taste(DIM), b)
    assert after > before + 0.3
    apply_event(state, event("purchase", "b", T0 + 2 * HOUR, n=1), b)
    assert cosine(state.taste(DIM), b) > after


def test_dislike_moves_taste_away():
    state = UserState()
    a = unit([1, 1, 0, 0, 0, 0, 0, 0])
    apply_event(state, event("click", "a", T0), a)
    apply_event(state, event("click", "b", T0, n=1), basis(0))
    before = cosine(state.taste(DIM), basis(1))
    apply_event(state, event("dislike", "c", T0 + 1), basis(1))
    assert cosine(state.taste(DIM), basis(1)) < before


def test_old_events_weigh_less():
    hl = DEFAULT_PARAMS.half_life_ms
    state = UserState()
    apply_event(state, event("click", "a", T0), basis(0))
    apply_event(state, event("click", "b", T0 + hl), basis(1))
    taste = state.taste(DIM)
    assert taste[0] == pytest.approx(0.5 * DEFAULT_PARAMS.click, rel=1e-2)
    assert taste[1] == pytest.approx(DEFAULT_PARAMS.click, rel=1e-2)


def test_search_sets_query_and_adds_to_taste():
    state = UserState()
    q = unit([0, 0, 1, 1, 0, 0, 0, 0])
    apply_event(state, event("search", item_id=None, text="q", ts=T0), None, q)
    assert np.allclose(state.query(), q, atol=1e-2)
    assert state.query_ts == T0
    assert cosine(state.taste(DIM), q) == pytest.approx(1.0, abs=1e-3)
    assert state.history == []  # a search names no item
    # an older (late) search does not replace the newer query
    apply_event(state, event("search", item_id=None, text="old", ts=T0 - HOUR), None, basis(7))
    assert np.allclose(state.query(), q, atol=1e-2)
    assert state.query_ts == T0


def _random_events(seed: int, n: int, dim: int = 16):
    rng = np.random.default_rng(seed)
    kinds = ["view", "click", "add_to_cart", "purchase", "dislike", "rate"]
    events, vectors = [], {}
    timestamps = rng.choice(np.arange(0, 60 * 24 * HOUR, HOUR), size=n, replace=False)
    for i in range(n):
        etype = kinds[i % len(kinds)]
        item_id = f"item-{i}"
        vectors[item_id] = unit(rng.normal(size=dim))
        extra = {"value": float(rng.integers(0, 6))} if etype == "rate" else {}
        events.append(event(etype, item_id, T0 + int(timestamps[i]), n=i, **extra))
    return events, vectors


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_late_events_give_same_taste_as_in_order(seed):
    events, vectors = _random_events(seed, 30)
    in_order = UserState()
    for e in sorted(events, key=lambda e: e.ts):
        apply_event(in_order, e, vectors[e.item_id])
    shuffled = UserState()
    order = list(events)
    random.Random(seed).shuffle(order)
    assert order != sorted(events, key=lambda e: e.ts)
    for e in order:
        apply_event(shuffled, e, vectors[e.item_id])

    dim = 16
    assert np.linalg.norm(in_order.taste(dim)) > 0.1
    # the state is kept on its int8 storage grid after every event, so the
    # order of arrival moves the taste by quantisation noise only
    a, b = shuffled.taste(dim), in_order.taste(dim)
    assert float(a @ b) / float(np.linalg.norm(a) * np.linalg.norm(b)) > 0.995
    assert float(np.linalg.norm(a)) == pytest.approx(float(np.linalg.norm(b)), rel=1e-2)
    assert shuffled.ref_ts == in_order.ref_ts == max(e.ts for e in events)
    assert [(h.item_id, h.ts) for h in shuffled.history] == [(h.item_id, h.ts) for h in in_order.history]
    assert shuffled.last_event_id == in_order.last_event_id
    assert shuffled.last_event_ts == in_order.last_event_ts
    assert shuffled.event_count == in_order.event_count == len(events)


def test_history_is_capped_and_ordered_by_ts():
    params = InterestParams(history_size=5)
    state = UserState()
    timestamps = [T0 + HOUR * k for k in (3, 1, 7, 0, 5, 2, 6, 4)]
    for n, ts in enumerate(timestamps):
        apply_event(state, event("view", f"i-{n}", ts, n=n), basis(n % DIM), params=params)
    assert len(state.history) == 5
    kept = [h.ts for h in state.history]
    assert kept == sorted(kept)
    assert kept == sorted(timestamps)[-5:]  # the newest five survive
    assert state.event_count == 8


def test_default_history_cap():
    state = UserState()
    for n in range(DEFAULT_PARAMS.history_size + 20):
        apply_event(state, event("view", f"i-{n}", T0 + n, n=n), basis(n % DIM))
    assert len(state.history) == DEFAULT_PARAMS.history_size
    assert state.history[0].item_id == "i-20"
    assert state.history[-1].item_id == f"i-{DEFAULT_PARAMS.history_size + 19}"


def test_unknown_item_is_in_history_but_not_taste():
    state = UserState()
    apply_event(state, event("purchase", "unknown", T0), None)
    assert [(h.item_id, h.folded) for h in state.history] == [("unknown", False)]
    assert state.taste_norm == 0.0
    assert not np.any(state.taste(DIM))
    assert "unknown" in state.seen_items()


def test_fold_pending_matches_known_from_start():
    events, vectors = _random_events(7, 12)
    unknown = {f"item-{i}" for i in (0, 3, 4, 9)}
    dim = 16

    reference = UserState()
    for e in events:
        apply_event(reference, e, vectors[e.item_id])

    state = UserState()
    for e in events:
        apply_event(state, e, None if e.item_id in unknown else vectors[e.item_id])
    pending = {h.item_id for h in state.history if not h.folded}
    assert pending == unknown
    assert not np.allclose(state.taste(dim), reference.taste(dim), atol=1e-2)

    # nothing known yet: nothing folds
    assert fold_pending(state, lambda item_id: None) == 0
    assert {h.item_id for h in state.history if not h.folded} == unknown

    # vectors arrive for two of them, then the rest
    first = {"item-0", "item-9"}
    assert fold_pending(state, lambda i: vectors[i] if i in first else None) == 2
    assert {h.item_id for h in state.history if not h.folded} == unknown - first
    assert fold_pending(state, vectors.get) == 2
    assert all(h.folded for h in state.history)
    # equal up to int8 quantisation noise (the state's storage grid)
    a, b = state.taste(dim), reference.taste(dim)
    assert float(a @ b) / float(np.linalg.norm(a) * np.linalg.norm(b)) > 0.995
    assert state.ref_ts == reference.ref_ts
    # already folded entries are not folded twice
    before = encode_state(state)
    assert fold_pending(state, vectors.get) == 0
    assert encode_state(state) == before


# --------------------------------------------------------------------------
# encode_state / decode_state
# --------------------------------------------------------------------------


def _rich_state() -> UserState:
    state = UserState()
    for n in range(6):
        apply_event(state, event("click", f"i-{n}", T0 + n * HOUR, n=n), unit(np.arange(DIM) + n))
    apply_event(state, event("view", "not-yet", T0 + 7 * HOUR), None)
    apply_event(state, event("search", None, T0 + 8 * HOUR, text="x"), None, basis(3))
    state.last_offset = 41
    return state


def test_state_round_trip():
    state = _rich_state()
    data = encode_state(state)
    assert isinstance(data, bytes)
    back = decode_state(data)
    # vectors are stored as int8 and signals to 0.01: close, not identical
    assert [(h.item_id, h.ts) for h in back.history] == [(h.item_id, h.ts) for h in state.history]
    assert np.allclose([h.signal for h in back.history], [h.signal for h in state.history], atol=0.005)
    assert np.allclose(back.taste(DIM), state.taste(DIM), atol=0.02 * state.taste_norm)
    assert np.allclose(back.query(), state.query(), atol=0.01)
    assert [h.folded for h in back.history] == [True] * 6 + [False]
    assert back.last_offset == 41
    assert (back.event_count, back.last_event_id, back.ref_ts) == (state.event_count, state.last_event_id, state.ref_ts)
    assert encode_state(back) == data  # stable after the first quantisation


def test_full_history_state_is_small():
    dim = 384
    rng = np.random.default_rng(3)
    state = UserState()
    for n in range(DEFAULT_PARAMS.history_size + 10):
        apply_event(state, event("add_to_cart", str(10_000 + n), T0 + n * 60_000, n=n), unit(rng.normal(size=dim)))
    state.last_offset = 123_456_789
    assert len(state.history) == 100
    assert all(len(h.item_id) == 5 for h in state.history)
    size = len(encode_state(state))
    assert size < 4096, f"encoded state is {size} bytes"


def test_decode_missing_state_is_fresh():
    for data in (None, b""):
        state = decode_state(data)
        assert state == UserState()
        assert state.version == STATE_VERSION
        assert state.last_offset == -1 and state.history == [] and state.query() is None
        assert not np.any(state.taste(DIM))


@pytest.mark.parametrize(
    "data",
    [
        b"garbage, not msgpack",
        b"\xc1",  # never-used msgpack byte
        b"\x92\x01\x02",  # an array, not a map
        b"\x81\xa7history\xa3bad",  # history of the wrong type
        msgspec.msgpack.encode({"version": "one"}),
        msgspec.msgpack.encode({"history": [["i", "not-a-ts", 1.0, True]]}),
        encode_state(UserState()) + b"trailing",
    ],
)
def test_decode_garbage_raises_state_error(data):
    with pytest.raises(StateError):
        decode_state(data)


def test_decode_other_version_raises_state_error():
    data = encode_state(UserState(version=STATE_VERSION + 1))
    with pytest.raises(StateError, match="version"):
        decode_state(data)


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(min_size=1, max_size=200))
def test_decode_state_raises_only_state_error(data):
    try:
        state = decode_state(data)
    except StateError:
        return
    assert isinstance(state, UserState)
    assert state.version == STATE_VERSION


def test_history_entry_is_compact_array():
    entry = HistoryEntry("i-1", T0, 0.6)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(entry)) == ["i-1", T0, 0.6, True, -1]
