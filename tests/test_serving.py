"""The serving API's math (models.serving): re-ranking a caller's
candidates puts the user's interest first and unknown items last; the
interests view; the cold-start list."""

from __future__ import annotations

from models.graph import ItemGraph
from models.interest import UserState
from models.serving import UNKNOWN_ITEM, cold_start_list, interests_view, rank_candidates
from tests.test_drift import catalog  # noqa: F401  (module fixture: real vectors)
from tests.test_explain import run


def test_rank_puts_the_users_interest_first_and_unknown_items_last(catalog):
    state = run(catalog, [f"space-{i}" for i in range(6)])
    candidates = ["baking-1", "nope-1", "football-2", "space-8", "baking-1", "space-9", "nope-2"]
    ranked = rank_candidates(state, catalog, ItemGraph(), candidates, state.last_event_ts)
    ids = [r.item_id for r in ranked]
    assert ids[:2] == ["space-8", "space-9"] or ids[:2] == ["space-9", "space-8"]
    assert ids[-2:] == ["nope-1", "nope-2"]  # unknown last, in the caller's order
    assert len(ids) == 6  # the duplicate once
    assert all(r.score is None and r.reason == UNKNOWN_ITEM for r in ranked[-2:])
    known = [r.score for r in ranked[:-2]]
    assert known == sorted(known, reverse=True)
    assert ranked[0].reason in ("similar_to_interest", "often_after", "trending")
    seen = rank_candidates(state, catalog, ItemGraph(), ["space-0"], state.last_event_ts)
    assert seen[0].seen and seen[0].as_dict()["seen"] is True


def test_cold_start_user_ranks_by_trending_only(catalog):
    graph = ItemGraph()
    for n in range(5):
        graph.observe([], "baking-3", 1_700_000_000_000 + n, n)
    ranked = rank_candidates(UserState(), catalog, graph, ["space-1", "baking-3"], 1_700_000_000_010)
    assert [r.item_id for r in ranked] == ["baking-3", "space-1"]
    assert ranked[0].reason == "trending" and ranked[1].reason == "no_signal"
    record = cold_start_list("new", catalog, graph, 3, at_ts=1_700_000_000_010, generated_at=1, model_version="m")
    assert record.items and record.items[0].item_id == "baking-3" and record.user_id == "new"


def test_interests_view_names_the_interests_and_their_items(catalog):
    state = run(catalog, [f"space-{i}" for i in range(8)] + [f"baking-{i}" for i in range(3)])
    view = interests_view("u", state, catalog)
    assert view["interests"][0]["label"].startswith("space")
    assert view["interests"][0]["representative"]["item_id"].startswith("space-")
    assert abs(sum(i["weight"] for i in view["interests"]) - 1.0) < 1e-3
    assert view["recent"][0]["item_id"] == "baking-2" and view["event_count"] == 11
