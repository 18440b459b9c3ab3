"""Ranking over a large catalog from ANN candidates (``ItemCatalog.ann_index``,
``models.ranking._rank_candidates``) against the full ranking of the same
users, on a synthetic catalog of clustered unit vectors."""

from __future__ import annotations

import numpy as np
import pytest

from models.catalog import CandidateSearch, ItemCatalog, ItemMeta
from models.graph import ItemGraph
from models.interest import UserState, apply_event
from models.ranking import prepare_rank, rank_requests
from schemas.records import Event, EventType

T0 = 1_700_000_000_000
DIM = 48
TOPICS = 30
ITEMS = 3_000


def build_catalog(min_items: int, seed: int = 7) -> ItemCatalog:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(TOPICS, DIM)).astype(np.float32)
    catalog = ItemCatalog(candidates=CandidateSearch(min_items=min_items, per_vector=100))
    for i in range(ITEMS):
        topic = i % TOPICS
        v = centres[topic] + 0.6 * rng.normal(size=DIM).astype(np.float32)
        catalog.upsert(f"item-{i}", v / np.linalg.norm(v), ItemMeta(f"item {i}", (f"topic-{topic}",)))
    return catalog


def user_events(rng: np.random.Generator, user: str, count: int) -> list[Event]:
    topics = rng.choice(TOPICS, size=2, replace=False)
    events = []
    for n in range(count):
        topic = int(topics[0] if rng.random() < 0.7 else topics[1])
        item = int(rng.integers(0, ITEMS // TOPICS)) * TOPICS + topic
        kind = EventType.DISLIKE if rng.random() < 0.05 else EventType.VIEW
        events.append(Event(event_id=f"{user}-{n}", user_id=user, type=kind, item_id=f"item-{item}", ts=T0 + n * 60_000))
    return events


def rank_all(catalog: ItemCatalog, users: int = 60, seed: int = 11) -> dict[str, list]:
    """Users built from events on one shared graph, ranked in one call."""
    rng = np.random.default_rng(seed)
    graph = ItemGraph()
    requests = []
    offset = 0
    for u in range(users):
        state = UserState()
        for event in user_events(rng, f"u{u}", int(rng.integers(3, 25))):
            if event.type is EventType.VIEW:
                graph.observe([(h.item_id, h.ts, h.signal) for h in state.history], event.item_id, event.ts, offset)
            apply_event(state, event, catalog.vector(event.item_id), offset=offset)
            offset += 1
        requests.append((f"u{u}", prepare_rank(state, catalog, graph, state.last_event_ts)))
    lists = rank_requests([r for _, r in requests], catalog, 10)
    return {user: ranked for (user, _), ranked in zip(requests, lists)}


def test_candidate_ranking_agrees_with_the_full_ranking():
    full = rank_all(build_catalog(min_items=0))
    ann_catalog = build_catalog(min_items=1_000)
    candidates = rank_all(ann_catalog)
    assert ann_catalog.ann_index() is not None and len(ann_catalog.ann_index()) == ITEMS
    overlaps = []
    for user, ranked in full.items():
        got = candidates[user]
        assert len(got) == len(ranked) == 10
        overlaps.append(len({s.item_id for s in got} & {s.item_id for s in ranked}) / 10)
        # an item both lists hold has the same score: scaling over the
        # candidates finds each part's maximum
        by_id = {s.item_id: s.score for s in ranked}
        for s in got:
            if s.item_id in by_id:
                assert s.score == pytest.approx(by_id[s.item_id], abs=1e-5)
    assert np.mean(overlaps) >= 0.95, np.mean(overlaps)


def test_candidate_ranking_follows_catalog_changes():
    catalogs = {"full": build_catalog(min_items=0), "candidates": build_catalog(min_items=1_000)}
    before = rank_all(catalogs["candidates"], users=20)
    gone = {s.item_id for ranked in before.values() for s in ranked[:3]}
    target = before["u0"][0].item_id
    vector = _vector_of(catalogs["full"], target)
    for catalog in catalogs.values():
        for item_id in gone:
            catalog.remove(item_id)
        catalog.upsert("newcomer", vector, ItemMeta("new", ()))  # where a listed item was
    index = catalogs["candidates"].ann_index()
    assert len(index) == ITEMS - len(gone) + 1
    rows, _ = index.search(vector[None, :], 5)
    assert catalogs["candidates"].item_id(int(rows[0, 0])) == "newcomer"
    assert not {catalogs["candidates"].item_id(int(r)) for r in rows[0]} & gone
    full, candidates = rank_all(catalogs["full"], users=20), rank_all(catalogs["candidates"], users=20)
    assert not {s.item_id for ranked in candidates.values() for s in ranked} & gone
    overlap = np.mean([len({s.item_id for s in candidates[u]} & {s.item_id for s in full[u]}) / 10 for u in full])
    assert overlap >= 0.95, overlap


def _vector_of(catalog: ItemCatalog, item_id: str) -> np.ndarray:
    vector = catalog.vector(item_id)
    assert vector is not None
    return vector.copy()


def test_small_catalog_never_builds_an_index():
    catalog = build_catalog(min_items=5_000)
    assert catalog.ann_index() is None
    assert build_catalog(min_items=0).ann_index() is None
