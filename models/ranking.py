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

from models import exact, kernels, ranking_kernel
from models.ann import AnnIndex
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
    # history items at or below this signal do not seed the graph part
    # (0.75: ratings of 1 and 2 stars do not)
    seed_min_signal: float = 0.0
    # trending fades as a user's own signal grows: its weight is halved at
    # this many events of the user (0 = the same weight for everyone).
    # Validation (bench.tune --signal): 0: 0.2078 / 0.1110, 20: 0.2121 / 0.1163
    trending_half_events: int = 20
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
    norm = exact.norm(vector)
    return vector / norm if norm > 1e-12 else vector


def short_term_vector(state: UserState, catalog: ItemCatalog, params: RankingParams = DEFAULT_RANKING) -> np.ndarray | None:
    recent = [h for h in state.history if h.signal > 0][-params.short_term_events :]
    rows = catalog.rows_of(h.item_id for h in recent)
    if not rows:
        return None
    # weighted in float64 in a fixed order (no BLAS: see models.exact)
    ramp = np.arange(1, len(rows) + 1, dtype=np.float64)
    return _unit(np.add.reduce(ramp[:, None] * catalog.matrix[rows].astype(np.float64), axis=0).astype(np.float32))


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


# Most similarity cells computed at once (users are ranked in chunks below it)
SIM_CELLS = 1 << 23


def similarities(quantised_t: np.ndarray, inverse_norms: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosines (float32, (len(vectors), items)) of ``vectors`` against the
    quantised item matrix, transposed and C-contiguous
    (``ItemCatalog.quantised_t``, with ``ItemCatalog.inverse_norms``). The
    vectors are quantised the same way and the product is exact
    (:func:`models.exact.cosines`): every row has the same bits whatever the
    other vectors, the BLAS kernel or the thread count."""
    if len(vectors) == 0 or quantised_t.shape[1] == 0:
        return np.zeros((len(vectors), quantised_t.shape[1]), dtype=np.float32)
    quantised, norms = exact.quantise_rows(vectors)
    return exact.cosines(quantised, exact.inverse(norms), quantised_t, inverse_norms)


@dataclass
class _Parts:
    semantic: np.ndarray
    graph: np.ndarray
    trending: np.ndarray
    search: np.ndarray | None
    owner: np.ndarray  # index of the interest each item is closest to (-1: none)
    graph_because: np.ndarray  # per row: index into graph_seeds of the seed that gave the most (-1: none)
    graph_seeds: list[str]


@dataclass
class RankRequest:
    """One user to rank, with what must be read at their trigger: the graph
    and trending parts depend on the partition's graph *at that moment*
    (later events of the batch change it), the semantic part only on the
    user's state and the catalog, so it is left for one batched product."""

    state: UserState
    at_ts: int
    graph: np.ndarray  # raw graph scores per catalog row (float32)
    graph_because: np.ndarray
    graph_seeds: list[str]
    trending: np.ndarray


@dataclass
class _Query:
    """Which vectors of the batch's similarity matrix belong to one user."""

    clusters: slice | None = None
    share: np.ndarray | None = None
    taste: int = -1
    short: int = -1
    search: int = -1
    disliked: slice | None = None

    def nominators(self, vectors: list[np.ndarray], params: RankingParams) -> list[np.ndarray]:
        """Query vectors whose best items by inner product are the user's
        best by semantic score. Before the dislike penalty, an item's
        semantic score is ``max_c(long_term * share_c * sim(c)) + short_term
        * sim(short) + search * sim(search)`` = ``max_c(item . q_c)`` with
        ``q_c = long_term * share_c * c + short_term * short + search *
        search``: the union of each ``q_c``'s nearest items holds the
        semantic top (the ANN index searches by inner product)."""
        if not vectors:
            return []
        shared = np.zeros_like(vectors[0])
        if self.short >= 0:
            shared = shared + params.short_term * vectors[self.short]
        if self.search >= 0:
            shared = shared + params.search * vectors[self.search]
        if self.clusters is not None:
            assert self.share is not None
            return [params.long_term * float(share) * vectors[i] + shared for i, share in zip(range(self.clusters.start, self.clusters.stop), self.share)]
        if self.taste >= 0:
            return [params.long_term * vectors[self.taste] + shared]
        return [shared] if self.short >= 0 or self.search >= 0 else []


def _share_power(shares: np.ndarray, power: float) -> np.ndarray:
    """``shares ** power`` with correctly rounded operations for the powers
    a list may depend on (libm/SIMD ``pow`` can differ in the last bit
    between CPUs); other powers from decimal arithmetic (a user has at
    most a few interests)."""
    if power == 0.5:
        return np.sqrt(shares)
    if power == 1.0:
        return shares
    if power == 0.0:
        return np.ones_like(shares)
    if power == 2.0:
        return shares * shares
    return np.array([exact.power(float(share), power) for share in shares], dtype=np.float32)


def _user_vectors(state: UserState, catalog: ItemCatalog, at_ts: int, interest: InterestParams, params: RankingParams, out: list[np.ndarray]) -> _Query:
    """Append the vectors the user's semantic part is scored with to ``out``."""
    query = _Query()
    clusters = [c for c in state.clusters if c.weight > 0]
    if clusters:
        weights = np.array([c.weight_at(max(at_ts, c.ts), interest.half_life_ms) for c in clusters], dtype=np.float32)
        query.share = _share_power(weights / max(float(weights.sum()), 1e-12), params.cluster_share_power)
        query.clusters = slice(len(out), len(out) + len(clusters))
        out.extend(c.vector() for c in clusters)
    elif state.taste_norm > 0:
        query.taste = len(out)
        out.append(_unit(state.taste(catalog.dim)))
    short = short_term_vector(state, catalog, params)
    if short is not None:
        query.short = len(out)
        out.append(short)
    search = _recent_search(state, params)
    if search is not None:
        query.search = len(out)
        out.append(search)
    disliked = catalog.rows_of(h.item_id for h in state.history[-20:] if h.signal < 0)
    if disliked:
        query.disliked = slice(len(out), len(out) + len(disliked))
        out.extend(catalog.matrix[disliked])
    return query


def _trending_weight(state: UserState, params: RankingParams) -> float:
    half = params.trending_half_events
    return params.trending if half <= 0 else params.trending * half / (half + state.event_count)


def prepare_rank(
    state: UserState,
    catalog: ItemCatalog,
    graph: ItemGraph | None,
    at_ts: int,
    params: RankingParams = DEFAULT_RANKING,
) -> RankRequest:
    """Read the graph-dependent parts of a user's ranking now (at their trigger)."""
    n = catalog.size()
    seeds = [h.item_id for h in state.history if h.signal > params.seed_min_signal][-params.graph_seeds :][::-1]  # most recent first
    if graph is None:
        return RankRequest(state, at_ts, np.zeros(n, dtype=np.float32), np.full(n, -1, dtype=np.int64), [], np.zeros(n, dtype=np.float32))
    scores, because = graph.seed_scores(seeds, params.graph_recency, at_ts, catalog)
    return RankRequest(state, at_ts, scores, because, seeds, graph.trending_over(catalog, at_ts))


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
        out.extend(_rank_chunk(requests[start:end], queries, sims, catalog, k, params, interest))
        start = end
    return out


def _rank_chunk(
    requests: list[RankRequest], queries: list[_Query], sims: np.ndarray, catalog: ItemCatalog, k: int,
    params: RankingParams, interest: InterestParams,
) -> list[list[ScoredItem]]:
    """The lists of a chunk of users over every catalog row, in one call of
    :func:`models.ranking_kernel.rank_lists` (``_rank_one`` per user, the
    same bits); Python only gathers each user's small inputs and turns the
    output arrays into records."""
    users = len(requests)
    n = catalog.size()
    clusters_start = np.zeros(users, dtype=np.int64)
    clusters_n = np.zeros(users, dtype=np.int64)
    shares = np.zeros(len(sims), dtype=np.float32)  # by row of sims
    taste = np.full(users, -1, dtype=np.int64)
    short = np.full(users, -1, dtype=np.int64)
    search = np.full(users, -1, dtype=np.int64)
    disliked_start = np.zeros(users, dtype=np.int64)
    disliked_n = np.zeros(users, dtype=np.int64)
    graph = np.empty((users, n), dtype=np.float32)
    because = np.empty((users, n), dtype=np.int64)
    trending = np.empty((users, n), dtype=np.float32)
    trend_weights = np.empty(users, dtype=np.float32)
    seen: list[int] = []
    seen_at = np.zeros(users + 1, dtype=np.int64)
    weights: list[float] = []
    weights_at = np.zeros(users + 1, dtype=np.int64)
    recent_rows: list[int] = []
    recent_at = np.zeros(users + 1, dtype=np.int64)
    recent_ids: list[list[str]] = []
    hl = interest.half_life_ms
    for u, (request, query) in enumerate(zip(requests, queries)):
        state, at_ts = request.state, request.at_ts
        if query.clusters is not None:
            clusters_start[u], clusters_n[u] = query.clusters.start, query.clusters.stop - query.clusters.start
            shares[query.clusters] = query.share
        taste[u], short[u], search[u] = query.taste, query.short, query.search
        if query.disliked is not None:
            disliked_start[u], disliked_n[u] = query.disliked.start, query.disliked.stop - query.disliked.start
        graph[u], because[u], trending[u] = request.graph, request.graph_because, request.trending
        trend_weights[u] = _trending_weight(state, params)
        seen.extend(catalog.rows_of(state.seen_items()))
        seen_at[u + 1] = len(seen)
        # every interest of the state, as the diversity pass weighs them
        weights.extend(c.weight_at(max(at_ts, c.ts), hl) for c in state.clusters)
        weights_at[u + 1] = len(weights)
        # the explanations' recent items (models.ranking._explain_all)
        recent = [h.item_id for h in state.history[-10:] if h.signal > 0 and h.item_id in catalog]
        recent_rows.extend(catalog.rows_of(recent))
        recent_at[u + 1] = len(recent_rows)
        recent_ids.append(recent)
    rows = np.zeros((users, k), dtype=np.int64)
    count = np.zeros(users, dtype=np.int64)
    scores = np.zeros((users, k), dtype=np.float32)
    reason = np.zeros((users, k), dtype=np.int8)
    because_of = np.zeros((users, k), dtype=np.int64)
    f32 = np.float32
    ranking_kernel.rank_lists(
        sims, clusters_start, clusters_n, shares, taste, short, search, disliked_start, disliked_n,
        graph, because, trending, np.ascontiguousarray(catalog.active), np.asarray(seen, dtype=np.int64), seen_at, trend_weights,
        np.asarray(weights, dtype=np.float64), weights_at, np.asarray(recent_rows, dtype=np.int64), recent_at,
        f32(params.semantic), f32(params.graph), f32(params.long_term), f32(params.short_term), f32(params.search), f32(params.dislike_penalty),
        float(params.diversity_min_share), catalog.quantised, catalog.inverse_norms, k,
        rows, count, scores, reason, because_of,
    )  # fmt: skip
    out: list[list[ScoredItem]] = []
    reasons = ranking_kernel.REASONS
    for u, request in enumerate(requests):
        listed = int(count[u])
        ids = [catalog.item_id(r) for r in rows[u, :listed].tolist()]
        rounded = [round(v, 6) for v in scores[u, :listed].astype(np.float64).tolist()]
        seeds, recent = request.graph_seeds, recent_ids[u]
        items = []
        for item_id, score, code, index in zip(ids, rounded, reason[u, :listed].tolist(), because_of[u, :listed].tolist()):
            if code == ranking_kernel.OFTEN_AFTER:
                items.append(ScoredItem(item_id, score, "often_after", seeds[index]))
            elif code == ranking_kernel.SIMILAR_TO:
                items.append(ScoredItem(item_id, score, "similar_to", recent[index]))
            else:
                items.append(ScoredItem(item_id, score, reasons[code], None))
        out.append(items)
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
    seen = catalog.rows_of(state.seen_items()) if seen is None else seen
    if rows is None:
        seen_columns = np.array(seen, dtype=np.int64)
    else:
        seen_columns = np.flatnonzero(np.isin(rows, seen)) if seen else np.empty(0, dtype=np.int64)
    clusters = query.clusters or slice(0, 0)
    disliked = query.disliked or slice(0, 0)
    f32 = np.float32
    scores, sem_part, graph_part, trend_part, owner, positive = kernels.blend(
        sims, clusters.start, clusters.stop - clusters.start, query.share if query.share is not None else np.zeros(0, dtype=np.float32),
        query.taste, query.short, query.search, disliked.start, disliked.stop - disliked.start,
        np.ascontiguousarray(graph, dtype=np.float32), np.ascontiguousarray(trending, dtype=np.float32), np.ascontiguousarray(active), seen_columns,
        f32(params.semantic), f32(params.graph), f32(_trending_weight(state, params)), f32(params.long_term), f32(params.short_term), f32(params.search), f32(params.dislike_penalty),
    )  # fmt: skip
    if not positive:
        return []
    search_sims = sims[query.search] if query.search >= 0 else None
    top = _diverse_top_k(scores, owner, state, at_ts, interest, params, k)
    parts = _Parts(sem_part, graph_part, trend_part, search_sims, owner, because, request.graph_seeds)
    return _explain_all(top, scores, state, catalog, parts, rows)


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
    return rank_requests([prepare_rank(state, catalog, graph, at_ts, params)], catalog, k, params=params, interest=interest)[0]


def rank_users(
    states: list[UserState],
    catalog: ItemCatalog,
    k: int,
    params: RankingParams = DEFAULT_RANKING,
    graph: ItemGraph | None = None,
) -> list[list[ScoredItem]]:
    """Top-``k`` lists for ``states`` (same order), each at its last event."""
    if len(catalog) == 0 or k <= 0:
        return [[] for _ in states]
    requests = [prepare_rank(state, catalog, graph, state.last_event_ts, params) for state in states]
    return rank_requests(requests, catalog, k, params=params)


def _diverse_top_k(scores, owner, state, at_ts, interest, params, k) -> list[int]:
    """Top-k, but every interest with a real share gets at least one slot."""
    ranked = exact.top_k(scores, k).tolist()
    clusters = state.clusters
    if len(clusters) < 2 or len(ranked) < k:
        return ranked
    weights = np.array([c.weight_at(max(at_ts, c.ts), interest.half_life_ms) for c in clusters])
    total = float(weights.sum())
    if total <= 0:
        return ranked
    present = {int(owner[r]) for r in ranked}
    for index in np.argsort(-weights, kind="stable"):
        if weights[index] / total < params.diversity_min_share or int(index) in present:
            continue
        candidates = np.where((owner == index) & np.isfinite(scores))[0]
        candidates = [c for c in candidates[np.argsort(-scores[candidates], kind="stable")].tolist() if c not in ranked]
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


def _explain_all(
    rows: list[int], scores: np.ndarray, state: UserState, catalog: ItemCatalog, parts: _Parts, catalog_rows: np.ndarray | None = None
) -> list[ScoredItem]:
    """Each listed item with the reason that contributed most to its score.
    ``rows`` index ``scores`` and ``parts``; ``catalog_rows`` maps them to
    catalog rows (candidate ranking), ``None`` when they are catalog rows."""
    recent = [h.item_id for h in state.history[-10:] if h.signal > 0 and h.item_id in catalog]
    items = [int(r) for r in rows] if catalog_rows is None else catalog_rows[rows].tolist()
    # similarity of each listed item to each recent item, in one product
    # (only the "similar_to" reasons read it)
    recent_sims = None
    if recent and items:
        recent_rows = catalog.rows_of(recent)
        recent_sims = kernels.row_cosines(catalog.quantised, catalog.inverse_norms, np.asarray(items, dtype=np.int64), np.asarray(recent_rows, dtype=np.int64))
    # the listed items' parts and best recent item in a few array operations
    # (this runs for every list); argmax takes the first of equal parts, in
    # the order semantic, often_after, trending
    index = np.asarray(rows, dtype=np.int64)
    contributions = np.stack([parts.semantic[index], parts.graph[index], parts.trending[index]])
    kinds = np.argmax(contributions, axis=0).tolist()
    semantic = contributions[0].tolist()
    seeds = parts.graph_because[index].tolist()
    rounded = [round(v, 6) for v in scores[index].astype(np.float64).tolist()]
    item_ids = [catalog.item_id(r) for r in items]
    if recent_sims is not None:
        nearest = np.argmax(recent_sims, axis=1)
        nearest_sims = recent_sims[np.arange(len(items)), nearest].astype(np.float64).tolist()
        nearest = nearest.tolist()
    search = parts.search[index].astype(np.float64).tolist() if parts.search is not None else None
    out = []
    for position in range(len(items)):
        item_id, score, kind, seed = item_ids[position], rounded[position], kinds[position], seeds[position]
        if kind == 1 and seed >= 0:
            out.append(ScoredItem(item_id, score, "often_after", parts.graph_seeds[seed]))
        elif kind == 2 or semantic[position] <= 0:
            out.append(ScoredItem(item_id, score, "trending", None))
        else:
            best_sim, because = -np.inf, None
            if recent_sims is not None:
                best_sim, because = nearest_sims[position], recent[nearest[position]]
            if search is not None and search[position] > best_sim:
                out.append(ScoredItem(item_id, score, "matches_search", None))
            elif because is None:
                out.append(ScoredItem(item_id, score, "similar_to_interest", None))
            else:
                out.append(ScoredItem(item_id, score, "similar_to", because))
    return out
