"""Why a user's list looks the way it does: interests, their labels and
weights, and the weight of each interest over event time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from models.catalog import ItemCatalog
from models.interest import DEFAULT_PARAMS, InterestParams, UserState, update_clusters


@dataclass(frozen=True)
class InterestView:
    label: str
    weight: float  # share of the user's decayed interest weight now
    last_active: int  # event time (epoch ms)
    representative: str  # item id


def interest_label(state: UserState, catalog: ItemCatalog, index: int, top: int = 2) -> str:
    """A short label for one interest from the categories (or title words) of
    the history items closest to it."""
    cluster = state.clusters[index]
    centroids = [c.vector() for c in state.clusters]
    votes: Counter[str] = Counter()
    for entry in state.history:
        vector = catalog.vector(entry.item_id)
        meta = catalog.meta(entry.item_id)
        if vector is None or meta is None or entry.signal <= 0:
            continue
        nearest = max(range(len(centroids)), key=lambda i: float(centroids[i] @ vector))
        if nearest != index:
            continue
        for category in meta.categories or tuple(w for w in meta.title.split() if len(w) > 3)[:2]:
            votes[category] += entry.signal
    if not votes:
        meta = catalog.meta(cluster.anchor)
        return meta.title if meta else (cluster.anchor or "search")
    return " · ".join(label for label, _ in votes.most_common(top))


def interests(state: UserState, catalog: ItemCatalog, params: InterestParams = DEFAULT_PARAMS) -> list[InterestView]:
    at = state.last_event_ts
    weights = [c.weight_at(max(at, c.ts), params.half_life_ms) for c in state.clusters]
    total = sum(weights) or 1.0
    views = [
        InterestView(interest_label(state, catalog, i), w / total, c.ts, c.anchor)
        for i, (c, w) in enumerate(zip(state.clusters, weights))
    ]
    return sorted(views, key=lambda v: -v.weight)


def weight_timeline(state: UserState, catalog: ItemCatalog, params: InterestParams = DEFAULT_PARAMS) -> tuple[list[int], list[list[float]], list[str]]:
    """Replay the user's recent history into fresh interests and record each
    interest's decayed weight after every event: (times, weights per
    interest, labels). Covers the history window only."""
    replay = UserState()
    times: list[int] = []
    snapshots: list[list[float]] = []
    for entry in state.history:
        vector = catalog.vector(entry.item_id)
        if vector is None:
            continue
        update_clusters(replay, vector, entry.signal, entry.ts, entry.item_id, params)
        replay.history.append(entry)
        times.append(entry.ts)
        snapshots.append([c.weight_at(max(entry.ts, c.ts), params.half_life_ms) for c in replay.clusters])
    width = max((len(s) for s in snapshots), default=0)
    series = [[s[i] if i < len(s) else 0.0 for s in snapshots] for i in range(width)]
    labels = [interest_label(replay, catalog, i) for i in range(len(replay.clusters))]
    return times, series, labels
