"""Interest drift and robustness of the ranking (models code, real encoder).

The same function the events agent runs per partition
(``models.recommend.process_partition_events``) is driven event by event, so
these are the lists a user would see on the topic.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from models.catalog import ItemCatalog, ItemMeta, item_text
from models.graph import ItemGraph
from models.interest import UserState
from models.recommend import process_partition_events
from schemas import Event, EventType, Item
from tests.topic_catalog import large_catalog_items, topic_of

T0 = 1_700_000_000_000
MINUTE = 60_000
K = 10


@pytest.fixture(scope="module")
def catalog(encoder) -> ItemCatalog:
    items = [Item(**i) for i in large_catalog_items(36)]
    vectors = encoder.encode([item_text(i) for i in items])
    catalog = ItemCatalog()
    for item, vector in zip(items, vectors):
        catalog.upsert(item.item_id, vector, ItemMeta(item.title, tuple(item.categories)))
    return catalog


class Session:
    """One user's stream through the per-partition pipeline code."""

    def __init__(self, catalog: ItemCatalog, user: str = "u") -> None:
        self.catalog, self.user = catalog, user
        self.states: dict[str, UserState] = defaultdict(UserState)
        self.graph = ItemGraph()
        self.offset = 0
        self.lists: list[list[str]] = []

    def do(self, kind: str, item: str, **extra) -> list[str]:
        event = Event(event_id=f"e{self.offset}", user_id=self.user, type=EventType(kind), item_id=item, ts=T0 + self.offset * MINUTE, **extra)
        [update] = process_partition_events([(self.offset, event)], self.states, self.graph, self.catalog, {}, K)
        self.offset += 1
        self.lists.append([s.item_id for s in update.ranked])
        self.last = update.ranked
        return self.lists[-1]


def share(items: list[str], topic: str) -> float:
    return sum(topic_of(i) == topic for i in items) / len(items)


def test_list_follows_a_topic_switch_within_three_events(catalog):
    session = Session(catalog)
    for i in range(20):
        listed = session.do("click", f"space-{i}")
    assert share(listed, "space") == 1.0
    for i in range(3):
        listed = session.do("click", f"baking-{i}")
    assert share(listed, "baking") > 0.5, listed


def test_one_stray_click_does_not_erase_the_main_interest(catalog):
    session = Session(catalog)
    for i in range(20):
        session.do("click", f"space-{i}")
    listed = session.do("click", "football-0")
    assert share(listed, "space") >= 0.5, listed


def test_dislike_lowers_the_item_and_its_close_neighbours(catalog):
    plain, disliking = Session(catalog), Session(catalog)
    for i in range(3):
        for session in (plain, disliking):
            session.do("click", f"space-{i}")
            session.do("click", f"baking-{i}")
    plain.do("view", "baking-9")
    disliking.do("dislike", "baking-9")
    before = [s.item_id for s in plain.last]
    after = [s.item_id for s in disliking.last]
    assert share(before, "baking") > 0, before
    assert share(after, "baking") < share(before, "baking"), (before, after)
    # the disliked item's nearest neighbours lose their places
    target = catalog.vector("baking-9")
    baking = [f"baking-{i}" for i in range(3, 36) if i != 9]
    nearest = sorted(baking, key=lambda i: -float(catalog.vector(i) @ target))[:3]
    assert set(nearest) & set(before), (nearest, before)
    assert not set(nearest) & set(after), (nearest, after)


def test_new_item_close_to_the_interest_appears_in_the_next_list(encoder):
    items = [Item(**i) for i in large_catalog_items(36)]
    catalog = ItemCatalog()
    for item, vector in zip(items, encoder.encode([item_text(i) for i in items])):
        catalog.upsert(item.item_id, vector, ItemMeta(item.title, tuple(item.categories)))
    session = Session(catalog)
    for i in range(6):
        session.do("click", f"football-{i}")
    # the user watched "<competition> soccer match highlights"; a new item of that kind arrives
    fresh = Item(item_id="new-1", title="Women's league soccer match highlights", categories=["football"])
    catalog.upsert(fresh.item_id, encoder.encode([item_text(fresh)])[0], ItemMeta(fresh.title, ("football",)))
    listed = session.do("click", "football-6")
    assert "new-1" in listed, listed


def test_replaying_the_same_events_from_scratch_gives_identical_lists(catalog):
    script = [("click", f"space-{i}") for i in range(6)] + [("purchase", "baking-3"), ("dislike", "space-9"), ("view", "football-2")]
    first, second = Session(catalog), Session(catalog)
    for kind, item in script:
        first.do(kind, item)
    for kind, item in script:
        second.do(kind, item)
    assert first.lists == second.lists
    assert [s.score for s in first.last] == [s.score for s in second.last]


def test_batching_does_not_change_the_lists(catalog):
    """One batch of many events or one event per batch: same final lists."""
    events = []
    for n in range(30):
        user = f"u{n % 3}"
        topic = ["space", "baking", "football"][n % 3]
        events.append((n, Event(event_id=f"e{n}", user_id=user, type=EventType.CLICK, item_id=f"{topic}-{n}", ts=T0 + n * MINUTE)))
    states_a, graph_a = defaultdict(UserState), ItemGraph()
    batched = {u.user_id: [s.item_id for s in u.ranked] for u in process_partition_events(events, states_a, graph_a, catalog, {}, K)}
    states_b, graph_b = defaultdict(UserState), ItemGraph()
    single = {}
    for pair in events:
        for u in process_partition_events([pair], states_b, graph_b, catalog, {}, K):
            single[u.user_id] = [s.item_id for s in u.ranked]
    assert batched == single
