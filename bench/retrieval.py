"""Exact top-k vs the ANN index on synthetic catalogs of unit vectors.

Vectors are clustered *and* of low intrinsic dimension (a cluster centre plus
a random 24-d subspace, plus a little isotropic noise): sentence embeddings
look like that, while i.i.d. Gaussian points in 384-d make every neighbour
search pathologically hard and would measure the wrong thing.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable

import numpy as np

from bench.sysinfo import rss_mb
from models.ann import AnnIndex, AnnParams, exact_top_k, recall_at_k

DIM = 384
K = 10
BATCH = 500  # at most one query per touched user in a 500-event batch
SINGLE_QUERIES = 50
EF_SWEEP = (16, 32, 64, 128)


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def clustered_vectors(n: int, seed: int, dim: int = DIM, clusters: int | None = None, rank: int = 24) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clusters = clusters or max(8, min(1024, n // 500))
    centres = _unit(rng.standard_normal((clusters, dim)).astype(np.float32))
    label = rng.integers(0, clusters, n)
    out = np.empty((n, dim), dtype=np.float32)
    for c in range(clusters):  # per cluster: no (n, rank, dim) temporary
        rows = np.flatnonzero(label == c)
        basis = rng.standard_normal((rank, dim)).astype(np.float32) * (0.7 / np.sqrt(dim))
        out[rows] = centres[c] + rng.standard_normal((len(rows), rank)).astype(np.float32) @ basis
    out += 0.02 * rng.standard_normal((n, dim)).astype(np.float32)
    return _unit(out)


def user_queries(vectors: np.ndarray, n: int, seed: int) -> np.ndarray:
    """User-like vectors: a blend of a few engaged items (a taste centroid)."""
    rng = np.random.default_rng(seed)
    picks = vectors[rng.integers(0, len(vectors), (n, 3))]
    weights = rng.dirichlet(np.ones(3), n).astype(np.float32)[:, :, None]
    return _unit((picks * weights).sum(axis=1))


def _ms(fn: Callable[[], Any], repeat: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) * 1000 / repeat


def bench_size(n: int, seed: int, params: AnnParams, log: Callable[[str], None], sweep: bool = True) -> dict[str, Any]:
    vectors = clustered_vectors(n, seed)
    queries = user_queries(vectors, BATCH, seed + 1)
    truth, _ = exact_top_k(queries, vectors, K)
    exact_batch_ms = min(_ms(lambda: exact_top_k(queries, vectors, K)) for _ in range(2))
    singles = [queries[i : i + 1] for i in range(min(SINGLE_QUERIES, BATCH))]
    exact_query_ms = _ms(lambda: [exact_top_k(q, vectors, K) for q in singles]) / len(singles)

    gc.collect()
    rss_before = rss_mb() or 0.0
    started = time.perf_counter()
    index = AnnIndex(DIM, params)
    index.add(np.arange(n), vectors)
    build_s = time.perf_counter() - started
    index_mb = max(0.0, (rss_mb() or 0.0) - rss_before)
    rows, _ = index.search(queries, K)
    recall = recall_at_k(rows, truth)
    ann_batch_ms = min(_ms(lambda: index.search(queries, K)) for _ in range(3))
    ann_query_ms = _ms(lambda: [index.search(q, K) for q in singles]) / len(singles)
    result: dict[str, Any] = {
        "exact_ms": round(exact_batch_ms, 2),
        "ann_ms": round(ann_batch_ms, 2),
        "exact_query_ms": round(exact_query_ms, 3),
        "ann_query_ms": round(ann_query_ms, 3),
        "recall_at_10": round(recall, 4),
        "build_s": round(build_s, 2),
        "matrix_mb": round(vectors.nbytes / 2**20, 1),
        "index_rss_mb": round(index_mb, 1),
        "ef_search": params.ef_search,
        "batch": BATCH,
    }
    if sweep:
        result["ef_sweep"] = {}
        for ef in EF_SWEEP:
            rows, _ = index.search(queries, K, ef_search=ef)
            result["ef_sweep"][str(ef)] = {
                "recall_at_10": round(recall_at_k(rows, truth), 4),
                "ann_ms": round(min(_ms(lambda: index.search(queries, K, ef_search=ef)) for _ in range(2)), 2),
            }
    log(
        f"retrieval n={n:,}: exact {exact_batch_ms:.1f} ms/batch, ANN {ann_batch_ms:.1f} ms/batch "
        f"({ann_query_ms:.2f} ms/query), recall@10 {recall:.3f}, build {build_s:.1f}s"
    )
    return result


def compare_libraries(n: int, seed: int, params: AnnParams, log: Callable[[str], None]) -> dict[str, Any]:
    """The chosen faiss HNSW beside faiss IVF-Flat and usearch HNSW (when
    installed) at the same size and comparable settings: the evidence for the
    choice in the README."""
    import faiss

    vectors = clustered_vectors(n, seed)
    queries = user_queries(vectors, BATCH, seed + 1)
    truth, _ = exact_top_k(queries, vectors, K)
    out: dict[str, Any] = {"n": n}

    def record(name: str, build: Callable[[], Any], search: Callable[[Any], np.ndarray]) -> None:
        started = time.perf_counter()
        index = build()
        build_s = time.perf_counter() - started
        rows = search(index)
        out[name] = {
            "build_s": round(build_s, 2),
            "ann_ms": round(min(_ms(lambda: search(index)) for _ in range(2)), 2),
            "recall_at_10": round(recall_at_k(rows, truth), 4),
        }
        log(f"  {name}: {out[name]}")

    def faiss_hnsw() -> AnnIndex:
        index = AnnIndex(DIM, params)
        index.add(np.arange(n), vectors)
        return index

    record("faiss_hnsw", faiss_hnsw, lambda index: index.search(queries, K)[0])

    def faiss_ivf() -> Any:
        lists = max(16, int(2 * np.sqrt(n)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[np.random.default_rng(seed).choice(n, min(n, 50 * lists), replace=False)])
        index.add(vectors)
        index.nprobe = max(8, lists // 32)
        return index

    record("faiss_ivf_flat", faiss_ivf, lambda index: index.search(queries, K)[1])
    try:
        from usearch.index import Index
    except ImportError:
        out["usearch_hnsw"] = {"skipped": "usearch not installed (pip install '.[bench]')"}
        return out

    def usearch_hnsw() -> Any:
        index = Index(ndim=DIM, metric="ip", dtype="f32", connectivity=params.m // 2, expansion_add=params.ef_construction, expansion_search=params.ef_search)
        index.add(np.arange(n), vectors)
        return index

    record("usearch_hnsw", usearch_hnsw, lambda index: index.search(queries, K).keys)
    return out


def run_retrieval_bench(sizes: list[int], seed: int = 7, compare_at: int | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    params = AnnParams()
    result: dict[str, Any] = {"retrieval": {}}
    for n in sizes:
        result["retrieval"][str(n)] = bench_size(n, seed, params, log, sweep=n <= 100_000)
        gc.collect()
    if compare_at:
        log(f"ANN libraries at n={compare_at:,}:")
        result["retrieval_libraries"] = compare_libraries(compare_at, seed, params, log)
    return result
