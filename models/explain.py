"""Why a user's list looks the way it does: interests, their labels and
weights, and the weight of each interest over event time."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np

from models import exact
from models.catalog import ItemCatalog, ItemMeta
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
    with its signal, for the words (categories, else title words) of the
    interest it is closest to; an interest's label is its ``top`` words.

    This runs for every list record, so the votes are summed in arrays: per
    (interest, word) the signals in history order, as a ``Counter`` adds
    them, and ties keep the word seen first (``Counter.most_common``). The
    loop it replaced is the reference in ``tests/reference/explain.py``."""
    if not state.clusters:
        return []
    known = [(h, r) for h in state.history if h.signal > 0 and (r := catalog.row_of(h.item_id)) is not None]
    winners: list[list[int]] = [[] for _ in state.clusters]
    if known:
        # the exact product (models.exact): labels are part of the list record
        centroids, norms = exact.quantise_rows(np.stack([c.vector() for c in state.clusters]))
        item_rows = [r for _, r in known]
        sims = exact.cosines(catalog.quantised[item_rows], catalog.inverse_norms[item_rows], np.ascontiguousarray(centroids.T), exact.inverse(norms))
        nearest = np.argmax(sims, axis=1).tolist()
        words = [_label_words(catalog.meta(entry.item_id)) for entry, _ in known]
        counts = [len(w) for w in words]
        if sum(counts):
            winners = _top_words(nearest, words, counts, [entry.signal for entry, _ in known], len(state.clusters), top)
    labels = []
    for cluster, best in zip(state.clusters, winners):
        if best:
            labels.append(" · ".join(_VOCABULARY[w] for w in best))
        else:
            meta = catalog.meta(cluster.anchor)
            labels.append(meta.title if meta else (cluster.anchor or "search"))
    return labels


_VOCABULARY: list[str] = []  # word id -> word (grows with the catalogs' words)
_WORD_IDS: dict[str, int] = {}
_VOCABULARY_LOCK = threading.Lock()  # the API may label from another thread


@functools.lru_cache(maxsize=1 << 16)
def _label_words(meta: ItemMeta) -> tuple[int, ...]:
    """Word ids an item votes for: its categories, else its first two title
    words longer than three letters."""
    words = meta.categories or tuple(w for w in meta.title.split() if len(w) > 3)[:2]
    with _VOCABULARY_LOCK:
        for word in words:
            if word not in _WORD_IDS:
                _WORD_IDS[word] = len(_VOCABULARY)
                _VOCABULARY.append(word)
        return tuple(_WORD_IDS[word] for word in words)


def _top_words(nearest: list[int], words: list[tuple[int, ...]], counts: list[int], signals: list[float], clusters: int, top: int) -> list[list[int]]:
    """Per interest, its ``top`` word ids by summed signal (ties: first seen)."""
    cluster_of = np.repeat(np.asarray(nearest, dtype=np.int64), counts)
    word_of = np.fromiter((w for ids in words for w in ids), dtype=np.int64, count=len(cluster_of))
    weight = np.repeat(np.asarray(signals, dtype=np.float64), counts)
    keys, first, inverse = np.unique(cluster_of * len(_VOCABULARY) + word_of, return_index=True, return_inverse=True)
    # bincount adds each bin's weights in input order, from 0.0: the sums a
    # Counter gets, bit for bit
    totals = np.bincount(inverse.ravel(), weights=weight, minlength=len(keys))
    owner = keys // len(_VOCABULARY)
    order = np.lexsort((first, -totals, owner))  # by interest, then votes, then first seen
    best: list[list[int]] = [[] for _ in range(clusters)]
    for key, cluster in zip(keys[order].tolist(), owner[order].tolist()):
        if len(best[cluster]) < top:
            best[cluster].append(key % len(_VOCABULARY))
    return best


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
