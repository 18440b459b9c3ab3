"""The compiled blend (``models.kernels.blend`` in ``models.ranking``)
against the slow numpy reference it replaced (``tests/reference/ranking.py``):
the same lists, scores and reasons, bit for bit, on random streams with
searches, dislikes, unknown items, duplicates and forgets, ranked over every
item and over ANN candidates."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from models import ranking
from models.catalog import CandidateSearch
from models.graph import ItemGraph
from models.interest import UserState
from models.recommend import process_partition_events
from tests.reference import ranking as reference
from tests.test_exactly_once import QUERIES, make_catalog, make_stream


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(5, 150), k=st.sampled_from([1, 5, 10]), candidates=st.booleans())
def test_the_kernel_ranks_like_the_reference(seed, n, k, candidates):
    catalog = make_catalog()
    if candidates:
        catalog.candidates = CandidateSearch(min_items=1, per_vector=6)
    graph = ItemGraph()
    states: dict[str, UserState] = {}
    events = [(offset, event) for offset, event in enumerate(make_stream(seed, n))]
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
