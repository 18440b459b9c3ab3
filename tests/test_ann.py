"""Unit tests of ``models.ann``: recall against exact search, updates, removals."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss")

from models.ann import AnnIndex, AnnParams, exact_top_k, recall_at_k  # noqa: E402

DIM = 32


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    centers = unit(rng.standard_normal((20, DIM)))
    vectors = unit(centers[rng.integers(0, 20, 3000)] + 0.3 * rng.standard_normal((3000, DIM)))
    queries = unit(centers[rng.integers(0, 20, 100)] + 0.3 * rng.standard_normal((100, DIM)))
    return vectors, queries


def test_exact_top_k_matches_a_full_sort(data):
    vectors, queries = data
    rows, scores = exact_top_k(queries, vectors, 10, block=700)  # several blocks
    full = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    assert recall_at_k(rows, full) == 1.0
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


def test_recall_against_exact(data):
    vectors, queries = data
    index = AnnIndex(DIM, AnnParams(ef_search=64))
    index.add(np.arange(len(vectors)), vectors)
    rows, scores = index.search(queries, 10)
    truth, _ = exact_top_k(queries, vectors, 10)
    assert rows.shape == scores.shape == (100, 10)
    assert recall_at_k(rows, truth) >= 0.95
    np.testing.assert_allclose(scores[:, 0], np.einsum("ij,ij->i", queries, vectors[rows[:, 0]]), atol=1e-5)


def test_update_moves_a_row_and_remove_hides_it(data):
    vectors, queries = data
    index = AnnIndex(DIM, AnnParams(rebuild_fraction=0.9))
    index.add(np.arange(1000), vectors[:1000])
    q = queries[:1]
    # row 7 takes the query's own vector: it must come first
    index.update([7], q)
    rows, scores = index.search(q, 5)
    assert rows[0, 0] == 7 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert len(index) == 1000 and index.nodes == 1001
    # the old vector of row 7 is gone: it never comes back as a second hit
    assert list(rows[0]).count(7) == 1
    index.remove([7])
    rows, _ = index.search(q, 5)
    assert 7 not in rows[0] and 7 not in index


def test_exclude_per_query(data):
    vectors, queries = data
    index = AnnIndex(DIM)
    index.add(np.arange(500), vectors[:500])
    plain, _ = index.search(queries[:2], 5)
    rows, _ = index.search(queries[:2], 5, exclude=[plain[0, :3].tolist(), []])
    assert not set(plain[0, :3]) & set(rows[0])
    assert rows[1].tolist() == plain[1].tolist()


def test_rebuild_after_many_updates_keeps_rows(data):
    vectors, queries = data
    index = AnnIndex(DIM, AnnParams(rebuild_fraction=0.25))
    index.add(np.arange(400), vectors[:400])
    index.update(np.arange(200), vectors[400:600])  # past 25% retired: rebuilt
    assert index.nodes == len(index) == 400
    expected = np.concatenate([vectors[400:600], vectors[200:400]])
    truth, _ = exact_top_k(queries, expected, 10)
    rows, _ = index.search(queries, 10)
    assert recall_at_k(rows, truth) >= 0.95


def test_small_index_pads_missing_results():
    index = AnnIndex(4)
    index.add([5, 9], unit(np.eye(4)[:2]))
    rows, scores = index.search(unit(np.ones((1, 4))), 4)
    assert sorted(rows[0, :2].tolist()) == [5, 9]
    assert rows[0, 2:].tolist() == [-1, -1] and np.isinf(scores[0, 2:]).all()
    empty = AnnIndex(4)
    assert empty.search(np.ones((2, 4)), 3)[0].tolist() == [[-1] * 3] * 2
