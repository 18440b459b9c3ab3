"""Events agent: a batch of events -> user states -> one fresh list per user.

Per batch, not per event: events are grouped by user, each user's state is
read and written once, every touched user is ranked in one matrix product and
gets exactly one list on ``recommendations``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import faust
from faust.types import EventT

from agents.dead_letters import send_dead_letter
from agents.deps import AgentDeps
from models.errors import ModelError
from models.interest import UserState, decode_state, encode_state
from models.ranking import rank_users
from models.recommend import build_recommendation, fold_events
from schemas import Event, EventType, InvalidRecord, RejectReason, decode_event, encode_record
from streams.tables import acting_for

log = logging.getLogger(__name__)

UserEvents = list[tuple[int, Event, EventT]]


def register_events_agent(app: faust.App, deps: AgentDeps) -> None:
    window_s = deps.settings.batch_window_ms / 1000

    @app.agent(deps.events_topic, name="process-events")
    async def process_events(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(deps.settings.batch_size, within=window_s):
            await process_event_batch(deps, batch)


async def process_event_batch(deps: AgentDeps, batch: list[EventT]) -> None:
    """Decode, fold into state, rank and publish one batch of events."""
    counters = deps.counters
    counters.batches += 1
    counters.events += len(batch)
    by_user = await _decode_batch(deps, batch)
    if not by_user:
        return
    query_vectors = await _encode_queries(deps, by_user)
    touched: list[tuple[str, UserState, Event]] = []
    for user_id, entries in by_user.items():
        try:
            state = _update_user(deps, user_id, entries, query_vectors)
        except ModelError as exc:
            # A corrupt stored state must not stop everyone else's lists:
            # the user's events go to the DLQ and the batch moves on.
            error = InvalidRecord(RejectReason.PROCESSING_FAILED, f"{type(exc).__name__}: {exc}")
            for _, _, event in entries:
                await send_dead_letter(deps.dead_letter_topic, error, event)
            counters.dead_letters += len(entries)
            continue
        trigger = max(entries, key=lambda entry: entry[0])[1]
        touched.append((user_id, state, trigger))
    await _publish_lists(deps, touched)


async def _decode_batch(deps: AgentDeps, batch: list[EventT]) -> dict[str, UserEvents]:
    by_user: dict[str, UserEvents] = defaultdict(list)
    for event in batch:
        message = event.message
        try:
            # an absent key is checked as b"": events must be keyed by user
            record = decode_event(message.value, key=message.key or b"", limits=deps.limits)
        except InvalidRecord as error:
            await send_dead_letter(deps.dead_letter_topic, error, event)
            deps.counters.dead_letters += 1
            continue
        by_user[record.user_id].append((message.offset, record, event))
    return by_user


async def _encode_queries(deps: AgentDeps, by_user: dict[str, UserEvents]) -> dict[str, object]:
    texts = sorted({r.text for entries in by_user.values() for _, r, _ in entries if r.type is EventType.SEARCH and r.text})
    if not texts:
        return {}
    vectors = await deps.encoder.encode(texts)
    return dict(zip(texts, vectors))


def _update_user(deps: AgentDeps, user_id: str, entries: UserEvents, query_vectors: dict) -> UserState:
    key = user_id.encode()
    last_event = max(entries, key=lambda entry: entry[0])[2]
    with acting_for(last_event):
        state = decode_state(deps.user_state.get(key))
        result = fold_events(state, [(offset, record) for offset, record, _ in entries], deps.catalog, query_vectors, deps.interest_params)
        if result.changed:
            deps.user_state[key] = encode_state(state)
    deps.counters.applied += result.applied
    return state


async def _publish_lists(deps: AgentDeps, touched: list[tuple[str, UserState, Event]]) -> None:
    # A user whose events were all redeliveries still gets a list: the list
    # of the first delivery may have been lost in the crash that caused it.
    ranked = rank_users([state for _, state, _ in touched], deps.catalog, deps.settings.top_k, deps.ranking_params)
    now_ms = int(time.time() * 1000)
    for (user_id, state, trigger), items in zip(touched, ranked):
        record = build_recommendation(
            user_id, state, items, deps.catalog, trigger=trigger, model_version=deps.model_version, generated_at=now_ms
        )
        await deps.recommendations_topic.send(key=user_id.encode(), value=encode_record(record))
    deps.counters.lists += len(touched)
