"""Explanations: interest labels, shares and the weight timeline."""

from __future__ import annotations

from collections import defaultdict

from models.explain import interests, weight_timeline
from models.graph import ItemGraph
from models.interest import UserState
from models.recommend import process_partition_events
from schemas import Event, EventType
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
