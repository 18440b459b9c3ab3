"""What the serving API answers, as plain data: a caller's candidates
re-ranked for one user, the user's interests, and the cold-start list.

Pure functions over a user state, the catalog and a partition's graph (the
worker's HTTP layer passes them in and serialises the dicts). Re-ranking
uses the same parts and blend as :mod:`models.ranking` (semantic interests,
graph neighbours of recent items, trending), scaled over the candidates:
the caller's items are what the user is about to see, so each part's best
candidate scores 1 on that part. Seen items are kept (a search page may show
what the user bought) and marked. Not on the list path: lists on
``recommendations`` never depend on this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from models.catalog import ItemCatalog
from models.explain import interests
from models.graph import ItemGraph
from models.interest import DEFAULT_PARAMS, InterestParams, UserState
from models.ranking import DEFAULT_RANKING, RankingParams, prepare_rank, rank_user, short_term_vector
from schemas.records import Recommendation, RecommendedItem

UNKNOWN_ITEM = "unknown_item"


@dataclass(frozen=True)
class RankedCandidate:
    """One of the caller's candidates: ``score`` is ``None`` for an item the
    catalog does not hold (or deleted), which is listed last."""

    item_id: str
    score: float | None
    reason: str
    because: str | None = None
    seen: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"item_id": self.item_id, "score": self.score, "reason": self.reason, "because": self.because}
        if self.score is None:
            out["unknown"] = True
        if self.seen:
            out["seen"] = True
        return out


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-12 else vector


def _scaled(scores: np.ndarray) -> np.ndarray:
    top = float(scores.max()) if scores.size else 0.0
    return scores / top if top > 1e-12 else np.zeros_like(scores)


def _semantic(state: UserState, catalog: ItemCatalog, rows: list[int], at_ts: int, ranking: RankingParams, interest: InterestParams) -> tuple[np.ndarray, np.ndarray | None]:
    """Semantic score of each candidate row and, when the user searched
    recently, each row's similarity to that search."""
    items = catalog.matrix[rows]  # (candidates, dim)
    semantic = np.zeros(len(rows), dtype=np.float32)
    clusters = [c for c in state.clusters if c.weight > 0]
    if clusters:
        weights = np.array([c.weight_at(max(at_ts, c.ts), interest.half_life_ms) for c in clusters], dtype=np.float32)
        share = (weights / max(float(weights.sum()), 1e-12)) ** ranking.cluster_share_power
        sims = items @ np.stack([c.vector() for c in clusters]).T  # (candidates, clusters)
        semantic = ranking.long_term * np.max(sims * share[None, :], axis=1)
    elif state.taste_norm > 0:
        semantic = ranking.long_term * (items @ _unit(state.taste(catalog.dim)))
    short = short_term_vector(state, catalog, ranking)
    if short is not None:
        semantic = semantic + ranking.short_term * (items @ short)
    search_sims = None
    search = state.query()
    if search is not None and sum(1 for h in state.history if h.ts > state.query_ts) < ranking.search_memory_events:
        search_sims = items @ search
        semantic = semantic + ranking.search * search_sims
    disliked = catalog.rows_of(h.item_id for h in state.history[-20:] if h.signal < 0)
    if disliked:
        semantic = semantic - ranking.dislike_penalty * np.clip(items @ catalog.matrix[disliked].T, 0, None).max(axis=1)
    return np.clip(semantic, 0, None).astype(np.float32), search_sims


def rank_candidates(
    state: UserState,
    catalog: ItemCatalog,
    graph: ItemGraph | None,
    item_ids: Sequence[str],
    at_ts: int,
    *,
    ranking: RankingParams = DEFAULT_RANKING,
    interest: InterestParams = DEFAULT_PARAMS,
) -> list[RankedCandidate]:
    """The caller's ``item_ids`` (duplicates once, first place kept) ordered
    for the user at event time ``at_ts``: best blended score first, ties in
    the caller's order; items the catalog lacks last, in the caller's order."""
    unique = list(dict.fromkeys(item_ids))
    active = catalog.active
    known: list[tuple[str, int]] = []
    unknown: list[str] = []
    for item_id in unique:
        row = catalog.row_of(item_id)
        if row is None or not active[row]:
            unknown.append(item_id)
        else:
            known.append((item_id, row))
    out: list[RankedCandidate] = []
    if known:
        rows = [row for _, row in known]
        request = prepare_rank(state, catalog, graph, at_ts, ranking)
        index = np.asarray(rows, dtype=np.int64)
        semantic, search_sims = _semantic(state, catalog, rows, at_ts, ranking, interest)
        parts = np.stack([
            ranking.semantic * _scaled(semantic),
            ranking.graph * _scaled(request.graph[index].astype(np.float32)),
            ranking.trending * _scaled(request.trending[index].astype(np.float32)),
        ])
        scores = parts.sum(axis=0)
        kinds = np.argmax(parts, axis=0)
        because = request.graph_because[index]
        seen = state.seen_items()
        order = sorted(range(len(known)), key=lambda i: (-float(scores[i]), i))
        for i in order:
            item_id = known[i][0]
            score = round(float(scores[i]), 6)
            kind = int(kinds[i])
            if score <= 0:
                reason, source = "no_signal", None
            elif kind == 1 and because[i] >= 0:
                reason, source = "often_after", request.graph_seeds[int(because[i])]
            elif kind == 2 or parts[0, i] <= 0:
                reason, source = "trending", None
            elif search_sims is not None and ranking.search * float(search_sims[i]) >= 0.5 * float(semantic[i]):
                reason, source = "matches_search", None
            else:
                reason, source = "similar_to_interest", None
            out.append(RankedCandidate(item_id, score, reason, source, seen=item_id in seen))
    out.extend(RankedCandidate(item_id, None, UNKNOWN_ITEM) for item_id in unknown)
    return out


def cold_start_list(user_id: str, catalog: ItemCatalog, graph: ItemGraph | None, k: int, *, at_ts: int, generated_at: int, model_version: str) -> Recommendation:
    """The list of a user recstream holds nothing for: what trends in the
    partition's graph at ``at_ts`` (empty before any event)."""
    ranked = rank_user(UserState(), catalog, k, graph=graph, at_ts=at_ts) if graph is not None else []
    return Recommendation(
        user_id=user_id,
        items=[RecommendedItem(item_id=s.item_id, score=s.score, reason=s.reason, because=s.because) for s in ranked],
        interests=[],
        trigger_event_id="",
        event_ts=at_ts,
        generated_at=generated_at,
        model_version=model_version,
    )


def interests_view(user_id: str, state: UserState, catalog: ItemCatalog, params: InterestParams = DEFAULT_PARAMS, recent: int = 5) -> dict[str, Any]:
    """What ``recstream explain`` prints about a user, as JSON-ready data."""

    def item(item_id: str | None) -> dict[str, Any] | None:
        if item_id is None:
            return None
        meta = catalog.meta(item_id)
        return {"item_id": item_id, "title": meta.title if meta else None, "categories": list(meta.categories) if meta else []}

    views = interests(state, catalog, params) if state.clusters else []
    return {
        "user_id": user_id,
        "event_count": state.event_count,
        "last_event_ts": state.last_event_ts,
        "interests": [
            {"label": v.label, "weight": round(float(v.weight), 4), "last_active": v.last_active, "representative": item(v.representative)}
            for v in views
        ],
        "recent": [item(h.item_id) for h in state.history[-recent:]][::-1],
    }
