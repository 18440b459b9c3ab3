"""Batch-level steps shared by the events agent, offline replay and tests:
fold a user's events into their state, and turn a ranked list into the
record published on ``recommendations``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from models.catalog import ItemCatalog
from models.interest import DEFAULT_PARAMS, InterestParams, UserState, apply_event, fold_pending
from models.ranking import ScoredItem
from schemas.records import Event, EventType, InterestSummary, Recommendation, RecommendedItem


@dataclass(frozen=True)
class FoldResult:
    """What :func:`fold_events` changed."""

    applied: int  # new events (not redeliveries)
    late_items: int  # history items whose vectors arrived since

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.late_items)


def fold_events(
    state: UserState,
    events: Sequence[tuple[int, Event]],
    catalog: ItemCatalog,
    query_vectors: Mapping[str, np.ndarray],
    params: InterestParams = DEFAULT_PARAMS,
) -> FoldResult:
    """Apply ``(offset, event)`` pairs of one user in offset order.

    Offsets at or below the state's watermark were applied before (the
    consumer redelivers after a crash or a replay) and change nothing.
    History items that were unknown when their events came and are in the
    catalog now are folded in first.
    """
    applied = 0
    late_items = fold_pending(state, catalog.vector, params)
    for offset, event in sorted(events, key=lambda pair: pair[0]):
        if offset <= state.last_offset:
            continue
        item_vector = catalog.vector(event.item_id) if event.item_id is not None else None
        query_vector = query_vectors.get(event.text) if event.type is EventType.SEARCH and event.text else None
        apply_event(state, event, item_vector, query_vector, params)
        state.last_offset = offset
        applied += 1
    return FoldResult(applied=applied, late_items=late_items)


def interest_summary(state: UserState, catalog: ItemCatalog, top: int = 3) -> list[InterestSummary]:
    """A short description of what the user is into, from the categories of
    their positively engaged recent items (weighted by signal)."""
    weights: Counter[str] = Counter()
    for entry in state.history:
        meta = catalog.meta(entry.item_id)
        if meta is None or entry.signal <= 0:
            continue
        for category in meta.categories:
            weights[category] += entry.signal
    total = sum(weights.values())
    if not total:
        return []
    return [InterestSummary(label=label, weight=round(w / total, 4)) for label, w in weights.most_common(top)]


def build_recommendation(
    user_id: str,
    state: UserState,
    ranked: Sequence[ScoredItem],
    catalog: ItemCatalog,
    *,
    trigger: Event,
    model_version: str,
    generated_at: int,
) -> Recommendation:
    """The record for the compacted ``recommendations`` topic; ``trigger`` is
    the user's latest event of the batch (what the list is a response to)."""
    return Recommendation(
        user_id=user_id,
        items=[RecommendedItem(item_id=s.item_id, score=s.score, reason=s.reason, because=s.because) for s in ranked],
        interests=interest_summary(state, catalog),
        trigger_event_id=trigger.event_id,
        event_ts=trigger.ts,
        generated_at=generated_at,
        model_version=model_version,
    )
