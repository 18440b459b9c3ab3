"""Hybrid top-k ranking: semantic interests + interest graph + trending.

For one user at event time ``t`` every catalog item gets one blended score:

* **semantic** — the best of the user's interest clusters (cosine to the
  centroid, scaled by the cluster's share of decayed weight) and of their
  short-term intent (the last few engaged items, most recent strongest) and
  latest search; items close to something the user disliked are pushed down;
* **graph** — co-engagement neighbours of the user's recent items
  (``often_after``), most recent items weighing most;
* **trending** — decayed popularity in event time, the cold-start fallback.

Each part is scaled to [0, 1] per user before blending, seen and deleted
items are removed, the list is spread across the user's interests, and every
item carries the reason that contributed most to its score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.catalog import ItemCatalog
from models.graph import ItemGraph
from models.interest import DEFAULT_PARAMS, InterestParams, UserState


@dataclass(frozen=True)
class RankingParams:
    """Blend weights and windows (tuned on each user's second-to-last item)."""

    semantic: float = 0.3
    graph: float = 1.0
    trending: float = 0.3
    # inside the semantic part
    long_term: float = 0.5
    short_term: float = 1.0
    search: float = 1.0
    dislike_penalty: float = 0.5
    cluster_share_power: float = 0.5
    # Short-term intent: how many of the latest engaged items count.
    short_term_events: int = 5
    # Interest graph: how many recent items seed it and how fast older ones fade.
    graph_seeds: int = 20
    graph_recency: float = 0.85
    # A search older than this many events of the user no longer steers.
    search_memory_events: int = 10
    # Diversity: an interest with at least this share gets a slot in the list.
    diversity_min_share: float = 0.2


DEFAULT_RANKING = RankingParams()


@dataclass(frozen=True)
class ScoredItem:
    """One ranked item with why it is there."""

    item_id: str
    score: float
    reason: str
    because: str | None


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-12 else vector


def _scaled(scores: np.ndarray) -> np.ndarray:
    top = float(scores.max()) if scores.size else 0.0
    return scores / top if top > 1e-12 else np.zeros_like(scores)


def short_term_vector(state: UserState, catalog: ItemCatalog, params: RankingParams = DEFAULT_RANKING) -> np.ndarray | None:
    recent = [h for h in state.history if h.signal > 0][-params.short_term_events :]
    rows = catalog.rows_of(h.item_id for h in recent)
    if not rows:
        return None
    ramp = np.arange(1, len(rows) + 1, dtype=np.float32)
    return _unit(ramp @ catalog.matrix[rows])


def user_query(state: UserState, catalog: ItemCatalog, params: RankingParams = DEFAULT_RANKING) -> np.ndarray | None:
    """One vector summarising the user (long-term taste + short-term intent +
    search), or ``None`` with no signal yet. Used for the semantic part when
    the user has no clusters, and by explanations."""
    query = np.zeros(catalog.dim, dtype=np.float32)
    if state.taste_norm > 0:
        query += params.long_term * _unit(state.taste(catalog.dim))
    short = short_term_vector(state, catalog, params)
    if short is not None:
        query += params.short_term * short
    search = _recent_search(state, params)
    if search is not None:
        query += params.search * search
    return _unit(query) if np.any(query) else None


def _recent_search(state: UserState, params: RankingParams) -> np.ndarray | None:
    search = state.query()
    if search is None:
        return None
    later = sum(1 for h in state.history if h.ts > state.query_ts)
    return search if later < params.search_memory_events else None


@dataclass
class _Parts:
    semantic: np.ndarray
    graph: np.ndarray
    trending: np.ndarray
    search: np.ndarray | None
    owner: np.ndarray  # index of the interest each item is closest to (-1: none)
    graph_because: dict[int, str]


def _semantic(state: UserState, catalog: ItemCatalog, at_ts: int, interest: InterestParams, params: RankingParams):
    matrix = catalog.matrix
    n = len(matrix)
    semantic = np.zeros(n, dtype=np.float32)
    owner = np.full(n, -1, dtype=np.int64)
    clusters = [c for c in state.clusters if c.weight > 0]
    if clusters:
        centroids = np.stack([c.vector() for c in clusters])
        weights = np.array([c.weight_at(max(at_ts, c.ts), interest.half_life_ms) for c in clusters], dtype=np.float32)
        share = (weights / max(float(weights.sum()), 1e-12)) ** params.cluster_share_power
        sims = matrix @ centroids.T  # (items, clusters)
        owner = np.argmax(sims, axis=1)
        semantic = params.long_term * np.max(sims * share[None, :], axis=1)
    elif state.taste_norm > 0:
        semantic = params.long_term * (matrix @ _unit(state.taste(catalog.dim)))
    short = short_term_vector(state, catalog, params)
    if short is not None:
        semantic = semantic + params.short_term * (matrix @ short)
    search = _recent_search(state, params)
    search_sims = None
    if search is not None:
        search_sims = matrix @ search
        semantic = semantic + params.search * search_sims
    disliked = catalog.rows_of(h.item_id for h in state.history[-20:] if h.signal < 0)
    if disliked:
        semantic = semantic - params.dislike_penalty * np.clip(matrix @ matrix[disliked].T, 0, None).max(axis=1)
    return np.clip(semantic, 0, None), search_sims, owner


def _graph(state: UserState, catalog: ItemCatalog, graph: ItemGraph | None, at_ts: int, params: RankingParams):
    n = len(catalog.matrix)
    scores = np.zeros(n, dtype=np.float32)
    because: dict[int, str] = {}
    if graph is None:
        return scores, because
    best = np.zeros(n, dtype=np.float32)
    seeds = [h for h in state.history if h.signal > 0][-params.graph_seeds :]
    for age, entry in enumerate(reversed(seeds)):
        rows, neighbour_scores = graph.neighbour_rows(entry.item_id, at_ts, catalog)
        if not len(rows):
            continue
        contribution = (params.graph_recency**age) * neighbour_scores
        np.add.at(scores, rows, contribution)
        better = contribution > best[rows]
        best[rows[better]] = contribution[better]
        for row in rows[better]:
            because[int(row)] = entry.item_id
    return scores, because


def _trending(catalog: ItemCatalog, graph: ItemGraph | None, at_ts: int) -> np.ndarray:
    if graph is None:
        return np.zeros(len(catalog.matrix), dtype=np.float32)
    return graph.trending_over(catalog, at_ts)


def rank_user(
    state: UserState,
    catalog: ItemCatalog,
    k: int,
    *,
    graph: ItemGraph | None = None,
    at_ts: int | None = None,
    params: RankingParams = DEFAULT_RANKING,
    interest: InterestParams = DEFAULT_PARAMS,
) -> list[ScoredItem]:
    """Top-``k`` for one user at event time ``at_ts`` (default: their last event)."""
    if len(catalog) == 0 or k <= 0:
        return []
    at_ts = at_ts if at_ts is not None else state.last_event_ts
    semantic, search_sims, owner = _semantic(state, catalog, at_ts, interest, params)
    graph_scores, graph_because = _graph(state, catalog, graph, at_ts, params)
    trending = _trending(catalog, graph, at_ts)
    sem_part = params.semantic * _scaled(semantic)
    graph_part = params.graph * _scaled(graph_scores)
    trend_part = params.trending * _scaled(trending)
    scores = sem_part + graph_part + trend_part
    if not np.any(scores > 0):
        return []
    scores[~catalog.active] = -np.inf
    seen = catalog.rows_of(state.seen_items())
    if seen:
        scores[seen] = -np.inf
    rows = _diverse_top_k(scores, owner, state, at_ts, interest, params, k)
    parts = _Parts(sem_part, graph_part, trend_part, search_sims, owner, graph_because)
    return [_explain(int(row), float(scores[row]), state, catalog, parts) for row in rows]


def rank_users(
    states: list[UserState],
    catalog: ItemCatalog,
    k: int,
    params: RankingParams = DEFAULT_RANKING,
    graph: ItemGraph | None = None,
) -> list[list[ScoredItem]]:
    """Top-``k`` lists for ``states`` (same order), each at its last event."""
    return [rank_user(state, catalog, k, graph=graph, params=params) for state in states]


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    finite = int(np.isfinite(scores).sum())
    k = min(k, finite)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def _diverse_top_k(scores, owner, state, at_ts, interest, params, k) -> list[int]:
    """Top-k, but every interest with a real share gets at least one slot."""
    ranked = list(_top(scores, k))
    clusters = state.clusters
    if len(clusters) < 2 or len(ranked) < k:
        return ranked
    weights = np.array([c.weight_at(max(at_ts, c.ts), interest.half_life_ms) for c in clusters])
    total = float(weights.sum())
    if total <= 0:
        return ranked
    present = {int(owner[r]) for r in ranked}
    for index in np.argsort(-weights):
        if weights[index] / total < params.diversity_min_share or int(index) in present:
            continue
        candidates = np.where((owner == index) & np.isfinite(scores))[0]
        candidates = [c for c in candidates[np.argsort(-scores[candidates])] if c not in ranked]
        if not candidates:
            continue
        # replace the lowest-ranked item of the most represented interest
        counts = {o: sum(1 for r in ranked if owner[r] == o) for o in {int(owner[r]) for r in ranked}}
        crowded = max(counts, key=counts.get)
        for position in range(len(ranked) - 1, -1, -1):
            if owner[ranked[position]] == crowded and counts[crowded] > 1:
                ranked[position] = candidates[0]
                present.add(int(index))
                break
    return sorted(ranked, key=lambda r: -scores[r])


def _explain(row: int, score: float, state: UserState, catalog: ItemCatalog, parts: _Parts) -> ScoredItem:
    item_id = catalog.item_id(row)
    contributions = {
        "semantic": float(parts.semantic[row]),
        "often_after": float(parts.graph[row]),
        "trending": float(parts.trending[row]),
    }
    kind = max(contributions, key=contributions.get)
    if kind == "often_after" and row in parts.graph_because:
        return ScoredItem(item_id, round(score, 6), "often_after", parts.graph_because[row])
    if kind == "trending" or contributions["semantic"] <= 0:
        return ScoredItem(item_id, round(score, 6), "trending", None)
    return _semantic_reason(item_id, row, score, state, catalog, parts)


def _semantic_reason(item_id: str, row: int, score: float, state: UserState, catalog: ItemCatalog, parts: _Parts) -> ScoredItem:
    recent = [h.item_id for h in state.history[-10:] if h.signal > 0 and h.item_id in catalog]
    best_sim, because = -np.inf, None
    if recent:
        sims = catalog.matrix[catalog.rows_of(recent)] @ catalog.matrix[row]
        j = int(np.argmax(sims))
        best_sim, because = float(sims[j]), recent[j]
    if parts.search is not None and float(parts.search[row]) > best_sim:
        return ScoredItem(item_id, round(score, 6), "matches_search", None)
    if because is None:
        return ScoredItem(item_id, round(score, 6), "similar_to_interest", None)
    return ScoredItem(item_id, round(score, 6), "similar_to", because)
