"""The compiled interest-label vote (``models.kernels.interest_votes`` in
``models.explain.interest_labels``) against the ``Counter`` reference it
replaced (``tests/reference/labels.py``): the same labels on random streams
with searches, dislikes, unknown and removed items, duplicates and forgets,
and items labelled by several categories, by title words, or by nothing."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from models.catalog import ItemCatalog, ItemMeta
from models.explain import interest_labels
from models.graph import ItemGraph
from models.interest import UserState
from models.recommend import process_partition_events
from tests.reference import labels as reference
from tests.test_exactly_once import DIM, QUERIES, make_stream

WORDS = ["drama", "comedy", "noir", "space", "western", "heist"]
TITLE_WORDS = ["the", "long", "night", "of", "blue", "river", "city", "lights"]


def varied_catalog(seed: int, n_items: int = 24) -> ItemCatalog:
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    catalog = ItemCatalog()
    for i in range(n_items):
        vector = rng.normal(size=DIM).astype(np.float32)
        categories = tuple(pick.sample(WORDS, pick.choice([0, 1, 1, 2, 3])))
        title = " ".join(pick.choice(TITLE_WORDS) for _ in range(pick.randrange(1, 5)))
        catalog.upsert(f"i{i}", vector / np.linalg.norm(vector), ItemMeta(title, categories))
    for i in pick.sample(range(n_items), 2):
        catalog.remove(f"i{i}")
    return catalog


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(5, 200), top=st.sampled_from([1, 2, 3]))
@example(seed=172, n=5, top=1)  # found by hypothesis (1eae47e): 5 events, none with a known item, no interest to label
def test_the_kernel_labels_like_the_reference(seed, n, top):
    catalog = varied_catalog(seed)
    states: dict[str, UserState] = {}
    events = list(enumerate(make_stream(seed, n)))
    for _, event in events:
        states.setdefault(event.user_id, UserState())
    compared = 0
    for start in range(0, n, 7):  # labels after every few events, not only at the end
        process_partition_events(events[start : start + 7], states, ItemGraph(), catalog, QUERIES, 0)
        for state in states.values():
            assert interest_labels(state, catalog, top) == reference.interest_labels(state, catalog, top)
            compared += bool(state.clusters)
    assume(compared)  # a stream of only unknown items, forgets or dislikes has no interest to label


def test_ties_go_to_the_word_voted_for_first():
    catalog = ItemCatalog()
    vector = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    catalog.upsert("a", vector, ItemMeta("A", ("noir", "drama")))
    catalog.upsert("b", vector, ItemMeta("B", ("drama", "space")))
    state = UserState()
    from models.interest import apply_event
    from schemas.records import Event, EventType

    for k, item in enumerate(["a", "b"]):
        apply_event(state, Event(event_id=f"e{k}", user_id="u", type=EventType.CLICK, ts=1_000 + k, item_id=item), catalog.vector(item))
    # drama has two votes; noir and space one each, noir first
    assert interest_labels(state, catalog) == ["drama · noir"] == reference.interest_labels(state, catalog)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), dim=st.sampled_from([3, 16, 384, 1100]), a=st.integers(0, 12), b=st.integers(0, 12))
def test_row_cosines_are_the_exact_cosines(seed, dim, a, b):
    """The explanations' few-by-few product (``models.kernels.row_cosines``)
    gives the bits of :func:`models.exact.cosines`, wide vectors included."""
    from models import exact, kernels

    rng = np.random.default_rng(seed)
    catalog = ItemCatalog()
    for i in range(20):
        catalog.upsert(f"i{i}", rng.normal(size=dim).astype(np.float32), ItemMeta(f"i{i}"))
    catalog.remove("i3")  # a zero row: inverse norm 0
    rows_a, rows_b = rng.integers(0, 20, size=a), rng.integers(0, 20, size=b)
    want = exact.cosines(catalog.quantised[rows_a], catalog.inverse_norms[rows_a], np.ascontiguousarray(catalog.quantised[rows_b].T), catalog.inverse_norms[rows_b])
    got = kernels.row_cosines(catalog.quantised, catalog.inverse_norms, rows_a.astype(np.int64), rows_b.astype(np.int64))
    assert got.dtype == np.float32 and got.shape == want.shape
    assert got.tobytes() == want.astype(np.float32).tobytes()


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-1.5, 1.5, width=32) | st.sampled_from([0.5 / 127, 1.5 / 127, -2.5 / 127, 1.0, -1.0]), min_size=1, max_size=40))
def test_the_int8_quantiser_gives_numpys_bytes(values):
    """``models.kernels.quantise_int8`` (the stored form of every vector of a
    state) against the numpy expression it replaced, halves included."""
    from models import kernels

    unit = np.array(values, dtype=np.float32)
    assert kernels.quantise_int8(unit).tobytes() == np.clip(np.round(unit * 127.0), -127, 127).astype(np.int8).tobytes()
    assert len(kernels.quantise_int8(np.array([0.1, np.nan], dtype=np.float32))) == 0
