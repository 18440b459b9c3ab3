"""Slow reference of ``models.ranking``'s scoring (numpy per user, as it
was before the compiled blend, ``models.kernels.blend``): the oracle of
``tests/test_ranking_kernels.py``. Everything the kernel did not replace is
imported from ``models.ranking`` itself."""

from __future__ import annotations

import numpy as np

from models.ann import AnnIndex
from models.catalog import ItemCatalog
from models.interest import DEFAULT_PARAMS, InterestParams
from models.ranking import (
    DEFAULT_RANKING,
    SIM_CELLS,
    RankingParams,
    RankRequest,
    ScoredItem,
    _diverse_top_k,
    _explain_all,
    _Parts,
    _Query,
    _user_vectors,
    similarities,
)

def _scaled(scores: np.ndarray) -> np.ndarray:
    top = float(scores.max()) if scores.size else 0.0
    return scores / top if top > 1e-12 else np.zeros_like(scores)


def _semantic(query: _Query, sims: np.ndarray, n: int, params: RankingParams):
    semantic = np.zeros(n, dtype=np.float32)
    owner = np.full(n, -1, dtype=np.int64)
    if query.clusters is not None:
        cluster_sims = sims[query.clusters]  # (clusters, items)
        owner = np.argmax(cluster_sims, axis=0)
        semantic = params.long_term * np.max(cluster_sims * query.share[:, None], axis=0)
    elif query.taste >= 0:
        semantic = params.long_term * sims[query.taste]
    if query.short >= 0:
        semantic = semantic + params.short_term * sims[query.short]
    search_sims = None
    if query.search >= 0:
        search_sims = sims[query.search]
        semantic = semantic + params.search * search_sims
    if query.disliked is not None:
        semantic = semantic - params.dislike_penalty * np.clip(sims[query.disliked], 0, None).max(axis=0)
    return np.clip(semantic, 0, None), search_sims, owner


def rank_requests(
    requests: list[RankRequest],
    catalog: ItemCatalog,
    k: int,
    *,
    params: RankingParams = DEFAULT_RANKING,
    interest: InterestParams = DEFAULT_PARAMS,
) -> list[list[ScoredItem]]:
    """Top-``k`` lists for prepared users: the semantic part of all of them
    from one blocked matrix product against the catalog, then per user the
    blend, the masks, the diverse top-k and the reasons. A catalog with an
    ANN index (``ItemCatalog.ann_index``) scores candidates instead."""
    if len(catalog) == 0 or k <= 0:
        return [[] for _ in requests]
    index = catalog.ann_index()
    if index is not None:
        return _rank_candidates(requests, catalog, index, k, params, interest)
    n = catalog.size()
    quantised_t, inverse_norms = catalog.quantised_t, catalog.inverse_norms
    out: list[list[ScoredItem]] = []
    start = 0
    while start < len(requests):
        vectors: list[np.ndarray] = []
        queries: list[_Query] = []
        end = start
        # users in chunks of at most SIM_CELLS similarities (a big catalog)
        while end < len(requests) and (not queries or len(vectors) * n < SIM_CELLS):
            request = requests[end]
            queries.append(_user_vectors(request.state, catalog, request.at_ts, interest, params, vectors))
            end += 1
        sims = similarities(quantised_t, inverse_norms, np.asarray(vectors, dtype=np.float32).reshape(len(vectors), catalog.dim))
        for request, query in zip(requests[start:end], queries):
            out.append(_rank_one(request, query, sims, catalog, k, params, interest))
        start = end
    return out


def _rank_candidates(
    requests: list[RankRequest], catalog: ItemCatalog, index: AnnIndex, k: int, params: RankingParams, interest: InterestParams
) -> list[list[ScoredItem]]:
    """Ranking over a large catalog: each user is scored exactly, with the
    same blend as the full ranking, but only over candidates: the items
    with the best semantic scores (one ANN query per interest, batched for
    all users; ``_Query.nominators``), every item the graph scores, and the
    top trending items. The parts are scaled over the candidates, which hold
    each part's best items (the graph's all of them). Lists can differ from
    the full ranking where the index misses a near item (recall@10 ~0.97,
    README, Performance), and from run to run of a restarted worker (the
    index is rebuilt in another order): exact replays need the full ranking
    (``ann_min_items`` = 0)."""
    per_vector = catalog.candidates.per_vector
    queries: list[_Query] = []
    vectors: list[list[np.ndarray]] = []
    for request in requests:
        own: list[np.ndarray] = []
        queries.append(_user_vectors(request.state, catalog, request.at_ts, interest, params, own))
        vectors.append(own)
    # one query per interest (see _Query.nominators); disliked items push
    # scores down and nominate nothing
    nominators = [(u, q) for u, (query, own) in enumerate(zip(queries, vectors)) for q in query.nominators(own, params)]
    seen = [catalog.rows_of(request.state.seen_items()) for request in requests]
    found = np.empty((0, per_vector), dtype=np.int64)
    if nominators:
        # an interest's nearest items are mostly the user's own (seen) ones:
        # they are fetched past, so each query brings per_vector new items
        found, _ = index.search(np.asarray([q for _, q in nominators], dtype=np.float32), per_vector, exclude=[seen[u] for u, _ in nominators])
    by_user: list[list[np.ndarray]] = [[] for _ in requests]
    for (u, _), rows in zip(nominators, found):
        by_user[u].append(rows)
    out: list[list[ScoredItem]] = []
    for request, query, own, nominated, user_seen in zip(requests, queries, vectors, by_user, seen):
        trending = request.trending
        top_trending = np.argpartition(-trending, per_vector - 1)[:per_vector] if len(trending) > per_vector else np.arange(len(trending))
        rows = np.unique(np.concatenate([*nominated, np.flatnonzero(request.graph > 0), top_trending]))
        rows = rows[rows >= 0]
        if not len(rows) or not own:
            sims = np.zeros((len(own), len(rows)), dtype=np.float32)
        else:
            sims = similarities(np.ascontiguousarray(catalog.quantised[rows].T), catalog.inverse_norms[rows], np.asarray(own, dtype=np.float32))
        out.append(_rank_one(request, query, sims, catalog, k, params, interest, rows=rows, seen=user_seen))
    return out


def _rank_one(
    request: RankRequest,
    query: _Query,
    sims: np.ndarray,
    catalog: ItemCatalog,
    k: int,
    params: RankingParams,
    interest: InterestParams,
    rows: np.ndarray | None = None,
    seen: list[int] | None = None,
) -> list[ScoredItem]:
    """One user's list from their similarities; ``rows``: the catalog rows
    the columns of ``sims`` are (candidates), ``None`` for every row;
    ``seen``: the catalog rows of the user's seen items, if known already."""
    state, at_ts = request.state, request.at_ts
    graph, because, trending, active = request.graph, request.graph_because, request.trending, catalog.active
    if rows is not None:
        graph, because, trending, active = graph[rows], because[rows], trending[rows], active[rows]
    semantic, search_sims, owner = _semantic(query, sims, len(graph), params)
    sem_part = params.semantic * _scaled(semantic)
    graph_part = params.graph * _scaled(graph)
    half = params.trending_half_events  # trending halves at this many events of the user
    trend_weight = params.trending if half <= 0 else params.trending * half / (half + state.event_count)
    trend_part = trend_weight * _scaled(trending)
    scores = sem_part + graph_part + trend_part
    if not np.any(scores > 0):
        return []
    scores[~active] = -np.inf
    seen = catalog.rows_of(state.seen_items()) if seen is None else seen
    if seen:
        if rows is None:
            scores[seen] = -np.inf
        else:
            scores[np.isin(rows, seen)] = -np.inf
    top = _diverse_top_k(scores, owner, state, at_ts, interest, params, k)
    parts = _Parts(sem_part, graph_part, trend_part, search_sims, owner, because, request.graph_seeds)
    return _explain_all(top, scores, state, catalog, parts, rows)
