"""Top-k ranking for many users at once.

Each user's query is a blend of long-term taste (the decayed sum), short-term
intent (the last few engaged items, most recent strongest) and the latest
search. All touched users of a batch are scored against the catalog with one
matrix product; seen and deleted items are masked out before the top-k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.catalog import ItemCatalog
from models.interest import UserState


@dataclass(frozen=True)
class RankingParams:
    """Blend weights of the user query."""

    long_term: float = 1.0
    short_term: float = 1.0
    search: float = 1.0
    # Short-term intent: how many of the latest engaged items count.
    short_term_events: int = 5
    # A search older than this many events of the user no longer steers.
    search_memory_events: int = 10


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


def user_query(state: UserState, catalog: ItemCatalog, params: RankingParams = DEFAULT_RANKING) -> np.ndarray | None:
    """The vector a user's list is ranked by, or ``None`` with no signal yet."""
    dim = catalog.dim
    query = np.zeros(dim, dtype=np.float32)
    taste = state.taste(dim)
    if state.taste_norm > 0:
        query += params.long_term * _unit(taste)
    recent = [h for h in state.history[-params.short_term_events:] if h.signal > 0]
    rows = catalog.rows_of(h.item_id for h in recent)
    if rows:
        # most recent strongest: linear ramp over the recent window
        ramp = np.arange(1, len(rows) + 1, dtype=np.float32)
        query += params.short_term * _unit(ramp @ catalog.matrix[rows])
    search = state.query()
    if search is not None and _search_is_recent(state, params):
        query += params.search * search
    if not np.any(query):
        return None
    return _unit(query)


def _search_is_recent(state: UserState, params: RankingParams) -> bool:
    later = sum(1 for h in state.history if h.ts > state.query_ts)
    return later < params.search_memory_events


def rank_users(
    states: list[UserState],
    catalog: ItemCatalog,
    k: int,
    params: RankingParams = DEFAULT_RANKING,
) -> list[list[ScoredItem]]:
    """Top-``k`` lists for ``states`` (same order). Users with no signal yet
    get an empty list."""
    results: list[list[ScoredItem]] = [[] for _ in states]
    if len(catalog) == 0:
        return results
    queries, owners = [], []
    for index, state in enumerate(states):
        query = user_query(state, catalog, params)
        if query is not None:
            queries.append(query)
            owners.append(index)
    if not queries:
        return results
    matrix = catalog.matrix
    scores = np.asarray(queries, dtype=np.float32) @ matrix.T  # (users, items)
    scores[:, ~catalog.active] = -np.inf
    for row, owner in enumerate(owners):
        state = states[owner]
        seen = catalog.rows_of(state.seen_items())
        user_scores = scores[row]
        if seen:
            user_scores[seen] = -np.inf
        top = _top_k(user_scores, k)
        results[owner] = _explain(state, catalog, top, user_scores)
    return results


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    finite = int(np.isfinite(scores).sum())
    k = min(k, finite)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def _explain(state: UserState, catalog: ItemCatalog, rows: np.ndarray, scores: np.ndarray) -> list[ScoredItem]:
    """Attach to each item the recent engaged item (or search) it is closest to."""
    recent = [h.item_id for h in state.history[-10:] if h.signal > 0 and h.item_id in catalog]
    recent_rows = catalog.rows_of(recent)
    items = catalog.matrix[rows]
    anchor_sims = items @ catalog.matrix[recent_rows].T if recent_rows else None
    search = state.query()
    search_sims = items @ search if search is not None else None
    out = []
    for i, row in enumerate(rows):
        reason, because = "similar_to_interest", None
        best = -np.inf
        if anchor_sims is not None:
            j = int(np.argmax(anchor_sims[i]))
            best = float(anchor_sims[i, j])
            reason, because = "similar_to", recent[j]
        if search_sims is not None and float(search_sims[i]) > best:
            reason, because = "matches_search", None
        out.append(ScoredItem(catalog.item_id(int(row)), round(float(scores[row]), 6), reason, because))
    return out
