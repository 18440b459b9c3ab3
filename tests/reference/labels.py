"""Slow reference of ``models.explain.interest_labels`` (a ``Counter`` per
interest, as it was before the compiled vote, ``models.kernels.interest_votes``):
the oracle of ``tests/test_label_kernel.py``."""

from __future__ import annotations

from collections import Counter

import numpy as np

from models import exact
from models.catalog import ItemCatalog
from models.interest import UserState


def interest_labels(state: UserState, catalog: ItemCatalog, top: int = 2) -> list[str]:
    if not state.clusters:
        return []
    entries = [h for h in state.history if h.signal > 0]
    rows = [catalog.row_of(h.item_id) for h in entries]
    known = [(h, r) for h, r in zip(entries, rows) if r is not None]
    votes: list[Counter[str]] = [Counter() for _ in state.clusters]
    if known:
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
