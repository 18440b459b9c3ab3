"""The compiled interest update (``models.kernels.fold_taste``,
``nearest_interest``, ``merge_centroid``, ``unit_int8``, called by
``models.interest``) against the numpy arithmetic it replaced: the same
stored state, byte for byte, on random streams with late events, dislikes,
searches, several interests and widths; and numpy's pairwise float64 sum
(``sum_f64``) against ``np.add.reduce``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import exact, interest, kernels
from models.interest import InterestParams, UserState, apply_event, encode_state
from schemas.records import Event, EventType

KINDS = [EventType.VIEW, EventType.CLICK, EventType.PURCHASE, EventType.DISLIKE, EventType.SEARCH, EventType.RATE]


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 1300), seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-30, 1e-3, 1.0, 1e6, 1e150]))
def test_the_pairwise_sum_is_numpys(n, seed, scale):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=n) * scale * 10.0 ** rng.integers(-4, 5, size=n)
    assert kernels.sum_f64(values) == np.add.reduce(values) or (np.isnan(np.add.reduce(values)) and np.isnan(kernels.sum_f64(values)))
    v32 = rng.normal(size=n).astype(np.float32)
    assert kernels.norm_f32(v32) == exact.norm(v32)


def stream(seed: int, n: int, dim: int) -> list[tuple[Event, np.ndarray | None, np.ndarray | None]]:
    """Events with item vectors near a few directions (so interests join
    and merge), a third of them late, with searches and dislikes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)).astype(np.float32)
    out = []
    ts = 1_700_000_000_000
    for i in range(n):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        ts += int(rng.integers(0, 3 * 86_400_000))
        at = ts - int(rng.integers(0, 20 * 86_400_000)) if rng.random() < 0.3 else ts
        vector = (centres[int(rng.integers(3))] + rng.normal(size=dim).astype(np.float32) * np.float32(rng.choice([0.1, 0.5, 2.0])))
        vector = (vector / np.linalg.norm(vector)).astype(np.float32) if rng.random() < 0.8 else vector.astype(np.float32) * np.float32(3.0)
        if kind is EventType.SEARCH:
            event = Event(event_id=f"e{i}", user_id="u", type=kind, ts=at, text=f"q{i}")
            out.append((event, None, vector))
        else:
            event = Event(event_id=f"e{i}", user_id="u", type=kind, ts=at, item_id=f"i{i % 17}", value=3.5 if kind is EventType.RATE else None)
            out.append((event, vector if rng.random() < 0.9 else None, None))
    return out


def fold(events, params: InterestParams) -> list[bytes]:
    state = UserState()
    snapshots = []
    for offset, (event, item_vector, query_vector) in enumerate(events):
        apply_event(state, event, item_vector, query_vector, params, offset)
        snapshots.append(encode_state(state))
    return snapshots


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), dim=st.sampled_from([3, 16, 384, 1100]),
       clusters=st.sampled_from([1, 2, 4, 8]), join=st.sampled_from([0.0, 0.45, 0.9]))
def test_the_kernels_store_the_states_numpy_does(seed, n, dim, clusters, join, monkeypatch_module):
    params = InterestParams(max_clusters=clusters, join_threshold=join)
    events = stream(seed, n, dim)
    compiled = fold(events, params)
    with monkeypatch_module.context() as patch:
        patch.setattr(interest, "_kernel_vector", lambda vector: False)
        reference = fold(events, params)
    assert compiled == reference


def test_a_float64_vector_takes_numpy_and_a_zero_sum_clears_the_taste():
    state = UserState()
    interest.add_to_taste(state, np.ones(4, dtype=np.float64), 1.0, 10)
    assert state.taste_dir and state.ref_ts == 10
    vector = np.frombuffer(state.taste_dir, dtype=np.float16).astype(np.float32) * np.float32(state.taste_norm)
    interest.add_to_taste(state, -vector, 1.0, 10)  # float32: the kernel; the sum is exactly zero
    assert (state.taste_dir, state.taste_norm) == (b"", 0.0)


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def test_equal_interests_go_to_the_first_as_numpy_does(monkeypatch):
    params = InterestParams(max_clusters=4, join_threshold=0.3)
    vector = np.linspace(-1, 1, 16).astype(np.float32)
    vector /= np.linalg.norm(vector)

    def run() -> bytes:
        state = UserState()
        twin = interest.Cluster(interest._quantise(vector), 1.0, 5, "a", 1.0)
        state.clusters = [twin, interest.Cluster(twin.centroid, 1.0, 5, "b", 1.0)]
        interest.update_clusters(state, vector, 2.0, 10, "c", params)
        return encode_state(state)

    compiled = run()
    monkeypatch.setattr(interest, "_kernel_vector", lambda v: False)
    assert compiled == run()
    assert [c.weight for c in interest.decode_state(compiled).clusters] == [3.0, 1.0]
