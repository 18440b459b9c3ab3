"""Why a user's list looks the way it does: interests, their labels and
weights, and the weight of each interest over event time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import kernels
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
    with its signal, for the categories of the interest it is closest to
    (by the exact cosine: labels are part of the list record). One kernel
    call (:func:`models.kernels.interest_votes`); the slow reference is
    ``tests/reference/labels.py``."""
    if not state.clusters:
        return []
    rows, signals = [], []
    for h in state.history:
        if h.signal > 0:
            row = catalog.row_of(h.item_id)
            if row is not None:
                rows.append(row)
                signals.append(h.signal)
    chosen = None
    if rows:
        word_start, word_ids, words = catalog.label_words()
        centroids = np.frombuffer(b"".join(c.centroid for c in state.clusters), dtype=np.int8).reshape(len(state.clusters), -1)
        chosen = kernels.interest_votes(centroids, np.array(rows, dtype=np.int64), np.array(signals, dtype=np.float64),
                                        catalog.quantised, catalog.inverse_norms, word_start, word_ids, top)
    labels = []
    for c, cluster in enumerate(state.clusters):
        if chosen is not None and chosen[c, 0] >= 0:
            labels.append(" · ".join(words[w] for w in chosen[c].tolist() if w >= 0))
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
