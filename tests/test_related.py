"""Related items (models.related) on a small synthetic catalog and graph:
nearest by text, often engaged after, the blend, and what is never listed."""

from __future__ import annotations

import numpy as np
import pytest

from models import exact
from models.ann import AnnParams
from models.catalog import CandidateSearch, ItemCatalog, ItemMeta
from models.graph import ItemGraph
from models.ranking import DEFAULT_RANKING
from models.related import OFTEN_AFTER, SIMILAR, SimilarCache, related_items, similar_rows

TOPICS = ("space", "baking", "football")
DIM = 32
T0 = 1_700_000_000_000


def make_catalog(seed: int = 3, per_topic: int = 12, candidates: CandidateSearch | None = None) -> ItemCatalog:
    """Items scattered around one centroid per topic (so an item's nearest
    items are its topic's)."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(len(TOPICS), DIM))
    catalog = ItemCatalog(candidates=candidates or CandidateSearch(min_items=0))
    for t, topic in enumerate(TOPICS):
        for j in range(per_topic):
            vector = centroids[t] + 0.35 * rng.normal(size=DIM)
            catalog.upsert(f"{topic}-{j}", (vector / np.linalg.norm(vector)).astype(np.float32), ItemMeta(f"{topic} {j}", (topic,)))
    return catalog


def make_graph(pairs: list[tuple[str, str]], users_per_pair: int = 3) -> ItemGraph:
    """Each pair (a, b) engaged as a then b by ``users_per_pair`` users, a
    second apart."""
    graph = ItemGraph()
    ts = T0
    for a, b in pairs:
        for _ in range(users_per_pair):
            graph.observe([], a, ts)
            graph.observe([(a, ts, 1.0)], b, ts + 1000)
            ts += 2000
    return graph


def ids(found) -> list[str]:
    return [r.item_id for r in found]


def test_similar_is_the_exact_nearest_by_text_without_the_item_itself():
    catalog = make_catalog()
    found = related_items(catalog, None, "space-0", 5, T0, kind="similar")
    assert found is not None and len(found) == 5
    assert "space-0" not in ids(found)
    assert all(r.item_id.startswith("space-") and r.reason == SIMILAR for r in found)
    # the reference: every other item's float64 cosine, best first
    matrix = catalog.matrix.astype(np.float64)
    cosines = matrix @ matrix[catalog.row_of("space-0")]
    cosines[catalog.row_of("space-0")] = -np.inf
    expected = [catalog.item_id(r) for r in np.argsort(-cosines, kind="stable")[:5]]
    assert ids(found) == expected
    assert [r.score for r in found] == sorted((r.score for r in found), reverse=True)
    assert all(r.similarity == r.score and r.co_engagements is None for r in found)


def test_often_after_lists_what_users_engaged_next_with_the_count():
    catalog = make_catalog()
    graph = make_graph([("space-0", "baking-3")] * 1 + [("space-0", "football-5")], users_per_pair=3)
    graph.observe([("space-0", T0 + 10**6, 1.0)], "baking-3", T0 + 10**6 + 1000)  # a 4th user for baking-3
    at = T0 + 2 * 10**6
    found = related_items(catalog, graph, "space-0", 10, at, kind="often_after")
    assert found is not None
    assert ids(found)[:2] == ["baking-3", "football-5"]
    # one adjacent co-engagement adds 1 (decayed over minutes of a 30-day half-life)
    assert found[0].co_engagements == pytest.approx(4.0, abs=0.01)
    assert found[1].co_engagements == pytest.approx(3.0, abs=0.01)
    assert all(r.reason == OFTEN_AFTER and r.similarity is None for r in found)
    # nothing for an item without edges, and nothing without a graph
    assert related_items(catalog, graph, "football-9", 10, at, kind="often_after") == []
    assert related_items(catalog, None, "space-0", 10, at, kind="often_after") == []


def test_often_after_decays_to_the_given_event_time():
    catalog = make_catalog()
    graph = make_graph([("space-0", "baking-3")])
    now = related_items(catalog, graph, "space-0", 1, T0 + 10_000, kind="often_after")
    month = related_items(catalog, graph, "space-0", 1, T0 + 10_000 + graph.params.half_life_ms, kind="often_after")
    assert now and month
    assert month[0].co_engagements == pytest.approx(now[0].co_engagements / 2, rel=1e-3)


def test_blend_has_both_reasons_and_equals_a_full_catalog_reference():
    catalog = make_catalog()
    graph = make_graph([("space-0", "baking-3"), ("space-0", "football-5"), ("space-1", "space-0")])
    at = T0 + 60_000
    k = 6
    found = related_items(catalog, graph, "space-0", k, at)
    assert found is not None and len(found) == k
    reasons = {r.item_id: r.reason for r in found}
    assert reasons["baking-3"] == OFTEN_AFTER and reasons["football-5"] == OFTEN_AFTER
    assert SIMILAR in reasons.values()
    assert "space-0" not in reasons
    # the reference: every active item scored, each part scaled by its best
    row = catalog.row_of("space-0")
    cos = exact.cosines(catalog.quantised[row : row + 1], catalog.inverse_norms[row : row + 1], catalog.quantised_t, catalog.inverse_norms)[0].astype(np.float64)
    semantic = np.maximum(cos, 0)
    semantic[row] = 0
    graph_part = np.zeros(catalog.size())
    for target, score in graph.neighbours("space-0", at).items():
        graph_part[catalog.row_of(target)] = score
    graph_part[row] = 0
    scores = DEFAULT_RANKING.semantic * semantic / semantic.max() + DEFAULT_RANKING.graph * graph_part / graph_part.max()
    scores[row] = -np.inf
    expected = [catalog.item_id(r) for r in np.argsort(-scores, kind="stable")[:k]]
    assert ids(found) == expected
    assert [r.score for r in found] == pytest.approx(sorted(scores, reverse=True)[:k], abs=1e-5)


def test_a_new_item_is_similar_before_anyone_engages_it():
    catalog = make_catalog()
    graph = make_graph([("space-0", "baking-3")])
    twin = catalog.vector("baking-3") + 0.01
    catalog.upsert("baking-twin", (twin / np.linalg.norm(twin)).astype(np.float32), ItemMeta("twin", ("baking",)))
    found = related_items(catalog, graph, "baking-3", 3, T0 + 10_000)
    assert found is not None
    # baking-3 has one edge (back to space-0, weaker than forward); the twin leads the text side
    assert [(r.item_id, r.reason) for r in found][:2] == [("space-0", OFTEN_AFTER), ("baking-twin", SIMILAR)]
    # and the new item itself answers (cold start by text)
    cold = related_items(catalog, graph, "baking-twin", 3, T0 + 10_000)
    assert cold is not None and cold[0].item_id == "baking-3"


def test_deleted_and_unknown_items():
    catalog = make_catalog()
    graph = make_graph([("space-0", "baking-3")])
    catalog.remove("baking-3")
    catalog.remove("space-1")
    for kind in ("similar", "often_after", "blend"):
        found = related_items(catalog, graph, "space-0", 50, T0 + 10_000, kind=kind)
        assert found is not None
        assert not {"baking-3", "space-1", "space-0"} & set(ids(found)), kind
    assert related_items(catalog, graph, "baking-3", 5, T0) is None  # deleted: as unknown
    assert related_items(catalog, graph, "no-such-item", 5, T0) is None
    with pytest.raises(ValueError):
        related_items(catalog, graph, "space-0", 5, T0, kind="nearest")  # type: ignore[arg-type]


def test_the_ann_path_finds_the_exact_neighbours_on_a_small_catalog():
    exact_catalog = make_catalog(seed=5, per_topic=40)
    ann_catalog = make_catalog(seed=5, per_topic=40, candidates=CandidateSearch(min_items=20, ann=AnnParams(threads=1)))
    assert ann_catalog.ann_index() is not None and exact_catalog.ann_index() is None
    for item in ("space-0", "baking-7", "football-39"):
        row = exact_catalog.row_of(item)
        want_rows, want = similar_rows(exact_catalog, row, 8)
        got_rows, got = similar_rows(ann_catalog, row, 8)
        assert row not in got_rows.tolist()
        # HNSW on 120 items is exhaustive in practice; the scores are the exact cosines
        assert got_rows.tolist() == want_rows.tolist() and got.tolist() == want.tolist()
    ann_catalog.remove("space-1")
    found = related_items(ann_catalog, None, "space-0", 50, T0, kind="similar")
    assert found is not None and "space-1" not in ids(found)


def test_the_similar_cache_answers_as_without_it_until_the_catalog_changes():
    catalog = make_catalog()
    graph = make_graph([("space-0", "baking-3"), ("space-1", "football-2")])
    cache = SimilarCache(capacity=3, depth=5)
    at = T0 + 60_000
    for item in ("space-0", "space-1", "baking-3", "football-2", "space-0"):
        for kind in ("similar", "blend"):
            for k in (3, 8):  # deeper than the cache's depth too
                assert related_items(catalog, graph, item, k, at, kind, cache=cache) == related_items(catalog, graph, item, k, at, kind)
    assert len(cache) == 3  # the least recently asked went
    # a new item close to space-0: the cached answer must not hide it
    twin = catalog.vector("space-0") + 0.01
    catalog.upsert("space-twin", (twin / np.linalg.norm(twin)).astype(np.float32), ItemMeta("twin", ("space",)))
    found = related_items(catalog, graph, "space-0", 3, at, "similar", cache=cache)
    assert found is not None and found[0].item_id == "space-twin"
    catalog.remove("space-twin")
    found = related_items(catalog, graph, "space-0", 3, at, "similar", cache=cache)
    assert found is not None and "space-twin" not in ids(found)
