"""Why a user's list looks the way it does: interests, their labels and
weights, and the weight of each interest over event time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from models import exact
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
    return interest_labels(state, catalog, top)[index]


def interest_labels(state: UserState, catalog: ItemCatalog, top: int = 2) -> list[str]:
    """Labels of all the user's interests: each positive history item votes,
    with its signal, for the categories of the interest it is closest to."""
    if not state.clusters:
        return []
    entries = [h for h in state.history if h.signal > 0]
    rows = [catalog.row_of(h.item_id) for h in entries]
    known = [(h, r) for h, r in zip(entries, rows) if r is not None]
    votes: list[Counter[str]] = [Counter() for _ in state.clusters]
    if known:
        # the exact product (models.exact): labels are part of the list record
        centroids, norms = exact.quantise_rows(np.stack([c.vector() for c in state.clusters]))
        item_rows = [r for _, r in known]
        sims = exact.cosines(catalog.quantised[item_rows], catalog.inverse_norms[item_rows], np.ascontiguousarray(centroids.T), exact.inverse(norms))
        nearest = np.argmax(sims, axis=1)
        for (entry, row), cluster in zip(known, nearest.tolist()):
            meta = catalog.meta(entry.item_id)
            words = meta.categories or tuple(w for w in meta.title.split() if len(w) > 3)[:2]
            for word in words:
                votes[cluster][word] += entry.signal
    labels = []
    for cluster, counter in zip(state.clusters, votes):
        if counter:
            labels.append(" · ".join(label for label, _ in counter.most_common(top)))
        else:
            meta = catalog.meta(cluster.anchor)
            labels.append(meta.title if meta else (cluster.anchor or "search"))
    return labels


def interests(state: UserState, catalog: ItemCatalog, params: InterestParams = DEFAULT_PARAMS) -> list[InterestView]:
    at = state.last_event_ts
    weights = [c.weight_at(max(at, c.ts), params.half_life_ms) for c in state.clusters]
    total = sum(weights) or 1.0
    labels = interest_labels(state, catalog)
    views = [InterestView(label, w / total, c.ts, c.anchor) for label, c, w in zip(labels, state.clusters, weights)]
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
    labels = interest_labels(replay, catalog)
    return times, series, labels
