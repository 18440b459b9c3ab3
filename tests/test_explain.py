"""Explanations: interest labels, shares and the weight timeline."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.catalog import ItemCatalog, ItemMeta
from models.explain import interest_labels, interests, weight_timeline
from models.graph import ItemGraph
from models.interest import UserState
from models.recommend import process_partition_events
from schemas import Event, EventType
from tests.reference.explain import interest_labels as reference_labels
from tests.test_drift import catalog  # noqa: F401  (module fixture: real vectors)

T0 = 1_700_000_000_000


def run(catalog, items: list[str]) -> UserState:
    states: dict[str, UserState] = defaultdict(UserState)
    events = [(n, Event(event_id=f"e{n}", user_id="u", type=EventType.CLICK, item_id=item, ts=T0 + n * 60_000)) for n, item in enumerate(items)]
    process_partition_events(events, states, ItemGraph(), catalog, {}, 10)
    return states["u"]


def test_interests_are_labelled_by_their_items_categories_and_share_the_weight(catalog):
    state = run(catalog, [f"space-{i}" for i in range(8)] + [f"baking-{i}" for i in range(3)])
    views = interests(state, catalog)
    assert views[0].label.startswith("space")
    assert any(v.label.startswith("baking") for v in views[1:])
    assert abs(sum(v.weight for v in views) - 1.0) < 1e-6
    assert views[0].weight > 0.5
    assert views[0].representative.startswith("space-")


def test_weight_timeline_has_one_point_per_known_event_and_grows_the_active_interest(catalog):
    state = run(catalog, [f"football-{i}" for i in range(6)] + ["not-in-catalog"])
    times, series, labels = weight_timeline(state, catalog)
    assert len(times) == 6  # the unknown item has no vector yet
    assert labels[0].startswith("football")
    assert series[0] == sorted(series[0]) and series[0][-1] > series[0][0]


WORDS = ["space", "baking", "football", "jazz", "noir"]


def _labelled_catalog(seed: int):
    """Items in a few directions, with 0-3 categories each (shared words, so
    votes tie often), some with titles only."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 16)).astype(np.float32)
    catalog = ItemCatalog()
    for n in range(30):
        vector = centres[n % 3] + 0.6 * rng.normal(size=16).astype(np.float32)
        categories = tuple(rng.choice(WORDS, size=int(rng.integers(0, 4)), replace=False).tolist())
        title = " ".join(rng.choice(["The", "Night", "Orbit", "Bread", "Goal", "Blue", "Kind"], size=3).tolist())
        catalog.upsert(f"i{n}", vector / np.linalg.norm(vector), ItemMeta(title, categories))
    return catalog


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), picks=st.lists(st.tuples(st.integers(0, 33), st.sampled_from(["click", "view", "purchase", "dislike", "rate"]), st.integers(1, 5)), min_size=1, max_size=60))
def test_array_votes_label_interests_as_the_counter_reference(seed, picks):
    catalog = _labelled_catalog(seed)
    states: dict[str, UserState] = defaultdict(UserState)
    events = [
        (n, Event(event_id=f"e{n}", user_id="u", type=EventType(kind), item_id=f"i{item}", ts=T0 + n * 60_000, value=float(stars) if kind == "rate" else None))
        for n, (item, kind, stars) in enumerate(picks)
    ]  # i30-i33 are not in the catalog
    process_partition_events(events, states, ItemGraph(), catalog, {}, 5)
    state = states["u"]
    for top in (1, 2, 3):
        assert interest_labels(state, catalog, top) == reference_labels(state, catalog, top)
