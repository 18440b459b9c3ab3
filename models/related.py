"""Related items: "similar to this" and "often engaged after this" for one
item, as plain data (the serving API's ``/items/{item_id}/related``).

Pure functions over the catalog and one view of the item graph:

* **similar** — the nearest catalog items by text: the exact cosine of the
  quantised vectors (:mod:`models.exact`, the same numbers ranking uses)
  against every row below the ANN threshold; above it the HNSW index
  (:mod:`models.ann`) nominates candidates, which are then scored with the
  same exact cosine. Needs nothing but the item's vector, so it answers for
  an item nobody has engaged with yet (cold start by text).
* **often_after** — the item's out-edges in the graph, decayed to ``at_ts``
  and normalised as the lists' ``often_after`` part reads them
  (:meth:`models.graph.ItemGraph.neighbours`: ``w(i->j) / sqrt(out(i) *
  in(j))``, so an item everyone engages is not everyone's neighbour); each
  comes with ``co_engagements``, the decayed edge weight itself (one
  adjacent co-engagement adds 1, less the further apart the two items were
  in the user's sequence and in time).
* **blend** — both parts, each scaled to [0, 1] by its best candidate and
  weighted as in the user lists (:class:`models.ranking.RankingParams`:
  ``semantic`` and ``graph``), summed; the reason is the larger part.

Deleted items are never returned, nor the item itself.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from models import exact
from models.catalog import ItemCatalog
from models.graph import ItemGraph
from models.ranking import DEFAULT_RANKING, RankingParams

Kind = Literal["similar", "often_after", "blend"]
KINDS: tuple[str, ...] = get_args(Kind)
SIMILAR = "similar_text"
OFTEN_AFTER = "often_after"
# extra ANN candidates fetched past k: the index's order is approximate,
# the exact cosine re-orders them
ANN_SLACK = 16


@dataclass(frozen=True)
class RelatedItem:
    """One related item: ``score`` orders the list; ``similarity`` is the
    cosine to the asked item's text, ``co_engagements`` the decayed weight
    of the graph edge to it (``None`` where that part is absent)."""

    item_id: str
    title: str
    score: float
    reason: str
    similarity: float | None = None
    co_engagements: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "title": self.title,
            "score": self.score,
            "reason": self.reason,
            "similarity": self.similarity,
            "co_engagements": self.co_engagements,
        }


def _cosines(catalog: ItemCatalog, row: int, rows: np.ndarray) -> np.ndarray:
    """Exact cosines (float32) of catalog row ``row`` to ``rows``."""
    if not len(rows):
        return np.empty(0, dtype=np.float32)
    query, inverse = catalog.quantised[row : row + 1], catalog.inverse_norms[row : row + 1]
    return exact.cosines(query, inverse, np.ascontiguousarray(catalog.quantised[rows].T), catalog.inverse_norms[rows])[0].astype(np.float32)


def similar_rows(catalog: ItemCatalog, row: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` active rows nearest to catalog row ``row`` by exact cosine,
    best first, equal cosines by row (``row`` itself left out): (rows,
    cosines as float32)."""
    empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
    if n <= 0 or catalog.size() == 0:
        return empty
    # ann_due: the worker may be building the index in a thread right now;
    # ann_index() would then build another one here, on the event loop
    index = None if catalog.ann_due() else catalog.ann_index()
    if index is None:
        cosines = exact.cosines(catalog.quantised[row : row + 1], catalog.inverse_norms[row : row + 1], catalog.quantised_t, catalog.inverse_norms)[0].astype(np.float32)
        cosines[~catalog.active] = -np.inf
        cosines[row] = -np.inf
        top = exact.top_k(cosines, n)
        return top, cosines[top]
    found, _ = index.search(catalog.matrix[row : row + 1], n + ANN_SLACK, exclude=[[row]])
    rows = found[0][found[0] >= 0]
    rows = np.sort(rows[catalog.active[rows]])  # row order: the stable key for equal cosines
    if not len(rows):
        return empty
    cosines = _cosines(catalog, row, rows)
    top = exact.top_k(cosines, n)
    return rows[top], cosines[top]


class SimilarCache:
    """:func:`similar_rows` answers by catalog row, kept while no vector of
    the catalog changes (:attr:`ItemCatalog.revision`; any change empties
    it): the text side of an item's related list depends on the catalog
    only, which changes far less often than product pages are served, and
    computing it is a product against every row. At most ``capacity`` items
    (least recently asked go first), each with its ``depth`` nearest rows."""

    def __init__(self, capacity: int = 20_000, depth: int = 50) -> None:
        self.capacity, self.depth = capacity, depth
        self._revision = -1
        self._entries: OrderedDict[int, tuple[np.ndarray, np.ndarray, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def similar(self, catalog: ItemCatalog, row: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        if catalog.revision != self._revision:
            self._entries.clear()
            self._revision = catalog.revision
        hit = self._entries.get(row)
        if hit is not None and hit[2] >= n:  # asked for at least n: the first n are the answer
            self._entries.move_to_end(row)
            return hit[0][:n], hit[1][:n]
        asked = max(n, self.depth)
        rows, cosines = similar_rows(catalog, row, asked)
        self._entries[row] = (rows, cosines, asked)
        self._entries.move_to_end(row)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return rows[:n], cosines[:n]


def often_after_rows(catalog: ItemCatalog, graph: ItemGraph | None, item_id: str, at_ts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The item's graph neighbours that are active catalog rows (the item
    left out): (rows, normalised scores, decayed edge weights), strongest
    first, equal scores by row."""
    empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64), np.empty(0, dtype=np.float64))
    if graph is None or item_id not in graph:
        return empty
    scores = graph.neighbours(item_id, at_ts)
    if not scores:
        return empty
    edge = graph.row(item_id)  # the persisted form: raw weights and their event times
    stamps = np.frombuffer(edge.stamps, dtype="<i8")
    decayed = np.frombuffer(edge.weights, dtype="<f8") * exact.decay_array(at_ts - stamps, graph.params.half_life_ms)
    weight_of = dict(zip(edge.targets, decayed.tolist()))
    rows, values, weights = [], [], []
    for target, score in scores.items():
        row = catalog.row_of(target)  # None: deleted or never in the catalog
        if row is None or target == item_id or not score > 0:
            continue
        rows.append(row)
        values.append(score)
        weights.append(weight_of.get(target, 0.0))
    if not rows:
        return empty
    rows_a, values_a, weights_a = np.array(rows, dtype=np.int64), np.array(values, dtype=np.float64), np.array(weights, dtype=np.float64)
    order = np.lexsort((rows_a, -values_a))
    return rows_a[order], values_a[order], weights_a[order]


def _scaled(values: np.ndarray, weight: float) -> np.ndarray:
    """``weight * values / max(values)`` (zeros when the max is tiny), as
    the lists scale each part (:func:`models.kernels.blend`)."""
    top = float(values.max()) if len(values) else 0.0
    return weight * (values / top) if top > 1e-12 else np.zeros_like(values)


def related_items(
    catalog: ItemCatalog,
    graph: ItemGraph | None,
    item_id: str,
    k: int,
    at_ts: int,
    kind: Kind = "blend",
    params: RankingParams = DEFAULT_RANKING,
    cache: SimilarCache | None = None,
) -> list[RelatedItem] | None:
    """Up to ``k`` items related to ``item_id`` (``None``: the catalog does
    not hold it, or it was deleted), on ``graph`` read at event time
    ``at_ts`` (``None``: no graph, so nothing is ``often_after``); the text
    side from ``cache`` when given (the same answer below the ANN threshold)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    row = catalog.row_of(item_id)
    if row is None:
        return None
    if k <= 0:
        return []

    def item(r: int, score: float, reason: str, similarity: float | None, weight: float | None) -> RelatedItem:
        target = catalog.item_id(r)
        meta = catalog.meta(target)
        return RelatedItem(
            target,
            meta.title if meta else "",
            round(score, 6),
            reason,
            None if similarity is None else round(similarity, 6),
            None if weight is None else round(weight, 4),
        )

    nearest = cache.similar if cache is not None else similar_rows
    if kind == "similar":
        rows, cosines = nearest(catalog, row, k)
        return [item(r, c, SIMILAR, c, None) for r, c in zip(rows.tolist(), cosines.astype(np.float64).tolist())]
    graph_rows, graph_scores, weights = often_after_rows(catalog, graph, item_id, at_ts)
    if kind == "often_after":
        return [item(r, s, OFTEN_AFTER, None, w) for r, s, w in zip(graph_rows[:k].tolist(), graph_scores[:k].tolist(), weights[:k].tolist())]
    # blend. Candidates: the k most similar items and every neighbour. Any
    # other item has no graph part and a semantic part no larger than the
    # k-th most similar one's, so it cannot enter the top k, and each part's
    # best item is a candidate: scaling by the candidates' best is scaling
    # by the catalog's, as the lists do.
    sim_rows, _ = nearest(catalog, row, k)
    candidates = np.unique(np.concatenate([sim_rows, graph_rows]))
    cosines = _cosines(catalog, row, candidates).astype(np.float64)
    semantic = np.maximum(cosines, 0.0)  # as the lists' semantic part: no negative cosine
    graph_part = np.zeros(len(candidates), dtype=np.float64)
    weight_of: dict[int, float] = dict(zip(graph_rows.tolist(), weights.tolist()))
    graph_part[np.searchsorted(candidates, graph_rows)] = graph_scores
    semantic = _scaled(semantic, params.semantic)
    graph_part = _scaled(graph_part, params.graph)
    scores = semantic + graph_part
    order = np.lexsort((candidates, -scores))[:k]
    out = []
    for i in order.tolist():
        if not scores[i] > 0:
            break
        r = int(candidates[i])
        reason = OFTEN_AFTER if graph_part[i] > semantic[i] else SIMILAR  # equal parts: semantic first, as the lists' argmax
        out.append(item(r, float(scores[i]), reason, float(cosines[i]), weight_of.get(r)))
    return out
