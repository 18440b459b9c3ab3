"""The compiled blend (``models.kernels.blend`` in ``models.ranking``)
against the slow numpy reference it replaced (``tests/reference/ranking.py``):
the same lists, scores and reasons, bit for bit, on random streams with
searches, dislikes, unknown items, duplicates and forgets, ranked over every
item and over ANN candidates."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models import exact, ranking, ranking_kernel
from models.catalog import CandidateSearch, ItemCatalog, ItemMeta
from models.graph import ItemGraph
from models.interest import UserState
from models.recommend import process_partition_events
from tests.reference import ranking as reference
from tests.test_exactly_once import DIM, QUERIES, make_catalog, make_stream


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(5, 150), k=st.sampled_from([1, 5, 10]), candidates=st.booleans())
def test_the_kernel_ranks_like_the_reference(seed, n, k, candidates):
    catalog = make_catalog()
    if candidates:
        catalog.candidates = CandidateSearch(min_items=1, per_vector=6)
    assert_ranks_like_the_reference(catalog, make_stream(seed, n), k)


def assert_ranks_like_the_reference(catalog: ItemCatalog, stream: list, k: int) -> None:
    """Fold ``stream`` into states and a graph, then rank every user with
    ``models.ranking`` and with the reference: the same items, scores,
    reasons and ``because``, in the same order."""
    graph = ItemGraph()
    states: dict[str, UserState] = {}
    events = list(enumerate(stream))
    for _, event in events:
        states.setdefault(event.user_id, UserState())
    updates = process_partition_events(events, states, graph, catalog, QUERIES, 0)
    live = [u for u in updates if not u.forgotten]
    requests = [ranking.prepare_rank(u.state, catalog, graph, u.trigger.ts) for u in live]
    got = ranking.rank_requests(requests, catalog, k)
    want = reference.rank_requests(requests, catalog, k)
    assert [[(s.item_id, s.score, s.reason, s.because) for s in ranked] for ranked in got] == [
        [(s.item_id, s.score, s.reason, s.because) for s in ranked] for ranked in want
    ]


def clustered_catalog(items: int, seed: int) -> "ItemCatalog":
    """Items around a few topic centres (as the encoder's vectors are), so
    users open several interests and the diversity pass has work to do;
    copies of items make equal scores, which only the index may order."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, DIM)).astype(np.float32)
    catalog = ItemCatalog()
    vector = centres[0]
    for i in range(items):
        if i % 5 != 4:  # every fifth item is a copy of the one before: equal scores
            vector = centres[i % 4] + 0.6 * rng.normal(size=DIM).astype(np.float32)
        catalog.upsert(f"i{i}", vector / np.linalg.norm(vector), ItemMeta(f"Item {i}", (f"c{i % 4}",)))
    return catalog


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(20, 300), k=st.sampled_from([1, 3, 10, 20]), items=st.sampled_from([12, 40, 120]),
       users=st.integers(1, 8))
def test_one_call_ranks_every_user_like_the_reference(seed, n, k, items, users):
    # a catalog smaller than k, items the catalog lacks, ties between equal
    # scores, users with one interest and with four, dislikes and searches
    assert_ranks_like_the_reference(clustered_catalog(items, seed), make_stream(seed, n, users=users, items=items + 5), k)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.sampled_from([-np.inf, 0.0, 0.25, 0.5, 1.0, 2.0]), min_size=0, max_size=40), k=st.integers(1, 12))
def test_top_k_takes_equal_scores_in_index_order_like_exact_top_k(values, k):
    scores = np.array(values, dtype=np.float32)
    out = np.zeros(k, dtype=np.int64)
    count = ranking_kernel._top_k_into(scores, k, out)
    assert out[:count].tolist() == exact.top_k(scores, k).tolist()
