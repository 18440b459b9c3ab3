"""Unit tests of ``models.ranking`` and ``models.recommend`` on a synthetic
catalog: three clearly separated topics of unit vectors in 10 dimensions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import jsonschema

from models.catalog import ItemCatalog, ItemMeta
from models.interest import UserState, apply_event, decode_state, encode_state
from models.ranking import RankingParams, ScoredItem, rank_users, user_query
from models.recommend import FoldResult, build_recommendation, fold_events, interest_summary
from schemas import encode_record
from schemas.json_schema import render
from schemas.records import Event, EventType, Recommendation

T0 = 1_700_000_000_000
MINUTE = 60_000
DIM = 10
TOPICS = ("space", "baking", "football")
PER_TOPIC = 6


def unit(vector) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32)
    return v / np.linalg.norm(v)


def item_vector(topic_index: int, j: int) -> np.ndarray:
    """Topic axis 0..2 plus a small item-specific axis 3..8: items of one
    topic have cosine ~0.86, of different topics <= ~0.14."""
    v = np.zeros(DIM, dtype=np.float32)
    v[topic_index] = 1.0
    v[3 + j] = 0.4
    return unit(v)


def topic_of(item_id: str) -> str:
    return item_id.rsplit("-", 1)[0]


def make_catalog() -> ItemCatalog:
    catalog = ItemCatalog()
    for t, topic in enumerate(TOPICS):
        for j in range(PER_TOPIC):
            catalog.upsert(f"{topic}-{j}", item_vector(t, j), ItemMeta(f"{topic} item {j}", (topic,)))
    return catalog


@pytest.fixture
def catalog() -> ItemCatalog:
    return make_catalog()


_counter = iter(range(10**9))


def event(etype: str, item_id: str | None, ts: int, **fields) -> Event:
    return Event(event_id=f"e-{next(_counter)}", user_id="u-1", type=EventType(etype), ts=ts, item_id=item_id, **fields)


def user_with(catalog: ItemCatalog, *actions: tuple[str, str], start: int = T0) -> UserState:
    state = UserState()
    for n, (etype, item_id) in enumerate(actions):
        apply_event(state, event(etype, item_id, start + n * MINUTE), catalog.vector(item_id))
    return state


def scores_of(ranked: list[ScoredItem]) -> dict[str, float]:
    return {s.item_id: s.score for s in ranked}


# --------------------------------------------------------------------------
# rank_users
# --------------------------------------------------------------------------


def test_ranking_follows_dominant_topic(catalog):
    state = user_with(
        catalog,
        ("click", "space-0"),
        ("purchase", "baking-0"),
        ("add_to_cart", "baking-1"),
        ("click", "baking-2"),
    )
    [ranked] = rank_users([state], catalog, k=5)
    assert len(ranked) == 5
    topics = [topic_of(s.item_id) for s in ranked]
    # the three unseen baking items come first, football never before space
    assert topics[:3] == ["baking"] * 3
    assert "football" not in topics[:4]


def test_ranking_switches_with_the_user(catalog):
    space_fan = user_with(catalog, ("purchase", "space-1"), ("click", "space-2"))
    football_fan = user_with(catalog, ("purchase", "football-1"), ("click", "football-2"))
    space_list, football_list = rank_users([space_fan, football_fan], catalog, k=4)
    assert {topic_of(s.item_id) for s in space_list} == {"space"}
    assert {topic_of(s.item_id) for s in football_list} == {"football"}


def test_rank_excludes_seen_items(catalog):
    seen = [("view", f"space-{j}") for j in range(4)] + [("dislike", "football-0")]
    state = user_with(catalog, *seen)
    [ranked] = rank_users([state], catalog, k=len(TOPICS) * PER_TOPIC)
    ids = [s.item_id for s in ranked]
    assert not set(ids) & {item for _, item in seen}
    assert len(ids) == len(TOPICS) * PER_TOPIC - len(seen)
    assert len(ids) == len(set(ids))


def test_rank_excludes_deleted_items(catalog):
    state = user_with(catalog, ("click", "space-0"))
    [before] = rank_users([state], catalog, k=3)
    top = before[0].item_id
    assert topic_of(top) == "space"
    catalog.remove(top)
    catalog.remove("space-5")
    assert top not in catalog
    [after] = rank_users([state], catalog, k=len(TOPICS) * PER_TOPIC)
    ids = {s.item_id for s in after}
    assert top not in ids and "space-5" not in ids
    assert len(after) == len(TOPICS) * PER_TOPIC - 3  # seen + two deleted
    # re-publishing the item brings it back
    catalog.upsert(top, item_vector(0, int(top[-1])), ItemMeta("back", ("space",)))
    [again] = rank_users([state], catalog, k=3)
    assert top in {s.item_id for s in again}


@pytest.mark.parametrize("k", [0, 1, 3, 7, 100])
def test_rank_returns_at_most_k_sorted_by_score(catalog, k):
    state = user_with(catalog, ("click", "space-0"), ("view", "baking-3"), ("purchase", "football-4"))
    [ranked] = rank_users([state], catalog, k=k)
    available = len(TOPICS) * PER_TOPIC - 3
    assert len(ranked) == min(k, available)
    scores = [s.score for s in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(np.isfinite(scores))


def test_user_without_signal_gets_empty_list(catalog):
    fresh = UserState()
    only_unknown = UserState()
    apply_event(only_unknown, event("purchase", "not-in-catalog", T0), None)
    active = user_with(catalog, ("click", "space-0"))
    results = rank_users([fresh, active, only_unknown], catalog, k=5)
    assert results[0] == []
    assert len(results[1]) == 5
    assert results[2] == []
    assert user_query(fresh, catalog) is None


def test_empty_catalog_gives_empty_lists():
    state = user_with(make_catalog(), ("click", "space-0"))
    assert rank_users([state, UserState()], ItemCatalog(), k=5) == [[], []]


def test_batch_ranking_equals_single_ranking(catalog):
    users = [
        user_with(catalog, ("click", "space-0")),
        UserState(),
        user_with(catalog, ("purchase", "baking-2"), ("view", "football-1")),
    ]
    together = rank_users(users, catalog, k=6)
    for state, ranked in zip(users, together):
        assert rank_users([state], catalog, k=6) == [ranked]


def test_dislike_lowers_neighbourhood_score(catalog):
    # a near-twin of space-0
    twin = unit(item_vector(0, 0) + 0.15 * np.eye(DIM, dtype=np.float32)[9])
    catalog.upsert("space-twin", twin, ItemMeta("twin", ("space",)))
    likes = [("click", "space-1"), ("click", "space-2"), ("purchase", "space-3")]
    plain = user_with(catalog, ("view", "space-0"), *likes)
    disliking = user_with(catalog, ("dislike", "space-0"), *likes)

    [plain_list] = rank_users([plain], catalog, k=30)
    [dislike_list] = rank_users([disliking], catalog, k=30)
    plain_scores, dislike_scores = scores_of(plain_list), scores_of(dislike_list)
    assert "space-0" not in plain_scores and "space-0" not in dislike_scores  # seen either way
    assert dislike_scores["space-twin"] < plain_scores["space-twin"]
    # the twin falls below the other unseen space items only when disliked
    others = ["space-4", "space-5"]
    assert all(dislike_scores["space-twin"] < dislike_scores[o] for o in others)
    assert not all(plain_scores["space-twin"] < plain_scores[o] for o in others)


def test_search_steers_the_list(catalog):
    state = user_with(catalog, ("click", "space-0"))
    [before] = rank_users([state], catalog, k=3)
    assert all(topic_of(s.item_id) == "space" for s in before)

    query = unit(item_vector(2, 0) + item_vector(2, 1))  # "football"
    apply_event(state, event("search", None, T0 + 10 * MINUTE, text="football"), None, query)
    [after] = rank_users([state], catalog, k=3)
    assert topic_of(after[0].item_id) == "football"
    football = [s for s in after if topic_of(s.item_id) == "football"]
    assert football and all(s.reason == "matches_search" for s in football)
    assert all(s.because is None for s in football)
    # the space items still there are explained by the clicked item
    for s in after:
        if topic_of(s.item_id) == "space":
            assert (s.reason, s.because) == ("similar_to", "space-0")


def test_old_search_stops_steering(catalog):
    params = RankingParams(search_memory_events=3)
    state = UserState()
    query = unit(item_vector(2, 0))
    apply_event(state, event("search", None, T0, text="football"), None, query)
    steered = user_query(state, catalog, params)
    assert steered is not None and float(steered @ query) > 0.99
    for n in range(3):
        apply_event(state, event("click", f"space-{n}", T0 + (n + 1) * MINUTE), catalog.vector(f"space-{n}"))
    q = user_query(state, catalog, params)
    without_search = user_query(state, catalog, RankingParams(search_memory_events=3, search=0.0))
    assert np.allclose(q, without_search, atol=1e-6)


def test_explanations_name_recent_positive_items(catalog):
    state = user_with(catalog, ("purchase", "baking-0"), ("click", "football-0"), ("dislike", "space-0"))
    [ranked] = rank_users([state], catalog, k=10)
    assert ranked
    for s in ranked:
        assert s.reason == "similar_to"
        assert s.because in {"baking-0", "football-0"}  # never the disliked item
        assert topic_of(s.because) == topic_of(s.item_id)


# --------------------------------------------------------------------------
# fold_events / build_recommendation
# --------------------------------------------------------------------------


def _batch(start_offset: int = 10) -> list[tuple[int, Event]]:
    return [
        (start_offset, event("click", "space-0", T0)),
        (start_offset + 1, event("view", "not-yet", T0 + MINUTE)),
        (start_offset + 2, event("search", None, T0 + 2 * MINUTE, text="football")),
        (start_offset + 3, event("purchase", "space-1", T0 + 3 * MINUTE)),
    ]


QUERIES = {"football": unit(item_vector(2, 0))}


def test_fold_events_applies_and_sets_watermark(catalog):
    state = UserState()
    result = fold_events(state, _batch(), catalog, QUERIES)
    assert result == FoldResult(applied=4, late_items=0)
    assert result.changed
    assert state.last_offset == 13
    assert state.event_count == 4
    assert [h.item_id for h in state.history] == ["space-0", "not-yet", "space-1"]
    assert [h.folded for h in state.history] == [True, False, True]
    assert np.allclose(state.query(), QUERIES["football"], atol=1e-2)


def test_fold_events_redelivery_changes_nothing(catalog):
    batch = _batch()
    state = UserState()
    fold_events(state, batch, catalog, QUERIES)
    data = encode_state(state)
    again = decode_state(data)
    result = fold_events(again, list(reversed(batch)), catalog, QUERIES)
    assert result == FoldResult(applied=0, late_items=0)
    assert not result.changed
    assert encode_state(again) == data


def test_fold_events_partial_redelivery_applies_only_new(catalog):
    batch = _batch()
    state = UserState()
    fold_events(state, batch[:2], catalog, QUERIES)
    assert state.last_offset == 11
    result = fold_events(state, batch, catalog, QUERIES)
    assert result.applied == 2
    assert state.last_offset == 13
    assert state.event_count == 4

    reference = UserState()
    fold_events(reference, batch, catalog, QUERIES)
    assert encode_state(state) == encode_state(reference)


def test_fold_events_applies_in_offset_order(catalog):
    # same event time: the later offset decides the latest event and query
    ts = T0 + 5 * MINUTE
    first = event("search", None, ts, text="football")
    second = event("search", None, ts, text="space")
    queries = {"football": unit(item_vector(2, 0)), "space": unit(item_vector(0, 0))}
    state = UserState()
    fold_events(state, [(8, second), (7, first)], catalog, queries)
    assert state.last_offset == 8
    assert state.last_event_id == second.event_id
    assert np.allclose(state.query(), queries["space"], atol=1e-2)

    shuffled = UserState()
    batch = _batch()
    fold_events(shuffled, [batch[2], batch[0], batch[3], batch[1]], catalog, QUERIES)
    in_order = UserState()
    fold_events(in_order, batch, catalog, QUERIES)
    assert encode_state(shuffled) == encode_state(in_order)


def test_fold_events_folds_late_item_vectors(catalog):
    state = UserState()
    fold_events(state, _batch(), catalog, QUERIES)
    taste_before = state.taste(DIM)
    catalog.upsert("not-yet", item_vector(1, 5), ItemMeta("arrived", ("baking",)))
    result = fold_events(state, [], catalog, QUERIES)
    assert result == FoldResult(applied=0, late_items=1)
    assert result.changed
    assert all(h.folded for h in state.history)
    assert not np.allclose(state.taste(DIM), taste_before, atol=1e-3)


def test_build_recommendation_fields(catalog):
    state = UserState()
    batch = _batch()
    fold_events(state, batch, catalog, QUERIES)
    [ranked] = rank_users([state], catalog, k=5)
    trigger = batch[-1][1]
    record = build_recommendation(
        "u-1", state, ranked, catalog, trigger=trigger, model_version="all-MiniLM-L6-v2", generated_at=T0 + 999
    )
    assert isinstance(record, Recommendation)
    assert record.user_id == "u-1"
    assert record.trigger_event_id == trigger.event_id
    assert record.event_ts == trigger.ts
    assert record.generated_at == T0 + 999
    assert record.model_version == "all-MiniLM-L6-v2"
    assert [i.item_id for i in record.items] == [s.item_id for s in ranked]
    assert len(record.items) == 5
    reasons = {i.reason for i in record.items}
    assert reasons <= {"similar_to", "matches_search", "similar_to_interest"}
    for entry, scored in zip(record.items, ranked):
        assert entry.score == scored.score
        assert entry.reason == scored.reason
        assert entry.because == scored.because
        if entry.reason == "similar_to":
            assert entry.because in {"space-0", "space-1"}
    assert any(i.reason == "similar_to" for i in record.items)
    assert any(i.reason == "matches_search" for i in record.items)
    # one interest per cluster: the space items (labelled by their category)
    # and the search, which opened an interest of its own
    assert [s.label for s in record.interests] == ["space", "search"]
    assert sum(s.weight for s in record.interests) == pytest.approx(1.0, abs=1e-3)
    assert record.interests[0].weight > record.interests[1].weight
    # the wire form is valid against the published JSON Schema
    validator = jsonschema.Draft202012Validator(json.loads(render("recommendation.schema.json")))
    validator.validate(json.loads(encode_record(record)))


def test_interest_summary_weights(catalog):
    state = user_with(
        catalog, ("purchase", "baking-0"), ("click", "space-0"), ("dislike", "football-0"), ("view", "unknown-1")
    )
    summary = interest_summary(state, catalog)
    assert [s.label for s in summary] == ["baking", "space"]
    assert sum(s.weight for s in summary) == pytest.approx(1.0, abs=1e-3)
    assert summary[0].weight > summary[1].weight
    assert interest_summary(UserState(), catalog) == []


def test_similarities_of_a_vector_do_not_depend_on_the_batch_around_it():
    """BLAS rounds by shape and kernel; the quantised product is exact, so
    each user's scores are the same bits alone or among others (lists
    independent of batching)."""
    from models.exact import inverse, quantise_rows
    from models.ranking import similarities

    rng = np.random.default_rng(3)
    for n, dim in [(5, 16), (200, 384), (1000, 384)]:
        matrix = rng.normal(size=(n, dim)).astype(np.float32)
        vectors = rng.normal(size=(70, dim)).astype(np.float32)
        quantised, norms = quantise_rows(matrix)
        matrix_t = np.ascontiguousarray(quantised.T)
        alone = similarities(matrix_t, inverse(norms), vectors[:1])[0]
        for count in (2, 15, 16, 17, 31, 32, 33, 70):
            for position in (0, count // 2, count - 1):
                batch = vectors[:count].copy()
                batch[[0, position]] = batch[[position, 0]]
                assert np.array_equal(similarities(matrix_t, inverse(norms), batch)[position], alone)
