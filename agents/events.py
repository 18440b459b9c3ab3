"""Events agent: a batch of events -> user states + item graph -> one fresh
list per touched user.

Per batch, not per event: events are grouped by partition and user, each
user's state is read and written once, the partition's graph rows that
changed are written once, and every touched user gets exactly one list.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import faust
from faust.types import TP, EventT

from agents.dead_letters import send_dead_letter
from agents.deps import AgentDeps
from models.errors import ModelError
from models.graph import ItemGraph
from models.interest import UserState, decode_state, encode_state
from models.recommend import UserUpdate, build_recommendation, process_partition_events
from schemas import Event, EventType, InvalidRecord, decode_event, encode_record
from streams.tables import acting_for, graph_offset_key, graph_row_key, partition_graph_records

log = logging.getLogger(__name__)

def register_events_agent(app: faust.App, deps: AgentDeps) -> None:
    window_s = deps.settings.batch_window_ms / 1000
    events_topic = deps.settings.topic("events")

    @app.agent(deps.events_topic, name="process-events")
    async def process_events(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(deps.settings.batch_size, within=window_s):
            await process_event_batch(deps, batch)

    @app.on_partitions_revoked.connect
    async def forget_graphs(sender: faust.App, revoked: set[TP], **kwargs: object) -> None:
        # Another worker may update a revoked partition's graph; reload it
        # from the table if the partition comes back.
        for tp in revoked:
            if tp.topic == events_topic:
                deps.graphs.pop(tp.partition, None)


async def process_event_batch(deps: AgentDeps, batch: list[EventT]) -> None:
    """Decode, fold into state and graph, rank and publish one batch."""
    counters = deps.counters
    counters.batches += 1
    counters.events += len(batch)
    by_partition = await _decode_batch(deps, batch)
    if not by_partition:
        return
    query_vectors = await _encode_queries(deps, by_partition)
    # a batch that did not fill up means the stream has caught up: persist the
    # graph now rather than at the next interval
    caught_up = len(batch) < deps.settings.batch_size
    for partition, entries in by_partition.items():
        updates = _process_partition(deps, partition, entries, query_vectors, caught_up)
        await _publish_lists(deps, updates)


async def _decode_batch(deps: AgentDeps, batch: list[EventT]) -> dict[int, list[tuple[int, Event, EventT]]]:
    by_partition: dict[int, list[tuple[int, Event, EventT]]] = defaultdict(list)
    for event in batch:
        message = event.message
        try:
            # an absent key is checked as b"": events must be keyed by user
            record = decode_event(message.value, key=message.key or b"", limits=deps.limits)
        except InvalidRecord as error:
            await send_dead_letter(deps.dead_letter_topic, error, event)
            deps.counters.dead_letters += 1
            continue
        by_partition[message.partition].append((message.offset, record, event))
    return by_partition


async def _encode_queries(deps: AgentDeps, by_partition: dict) -> dict:
    texts = sorted({r.text for entries in by_partition.values() for _, r, _ in entries if r.type is EventType.SEARCH and r.text})
    if not texts:
        return {}
    vectors = await deps.encoder.encode(texts)
    return dict(zip(texts, vectors))


def _graph_for(deps: AgentDeps, partition: int) -> ItemGraph:
    """The partition's graph, loaded from its table rows on first use."""
    graph = deps.graphs.get(partition)
    if graph is None:
        graph = ItemGraph(deps.graph_params)
        graph.last_offset, rows = partition_graph_records(deps.item_graph.items(), partition)
        for item_id, row in rows:
            graph.load_row(item_id, row)
        deps.graphs[partition] = graph
    return graph


def _process_partition(
    deps: AgentDeps, partition: int, entries: list[tuple[int, Event, EventT]], query_vectors: dict, caught_up: bool
) -> list[tuple[UserUpdate, EventT]]:
    last_of: dict[str, EventT] = {}
    for _, record, event in sorted(entries, key=lambda e: e[0]):
        last_of[record.user_id] = event
    states: dict[str, UserState] = {}
    for user, last_event in last_of.items():
        try:
            with acting_for(last_event):
                states[user] = decode_state(deps.user_state.get(user.encode()))
        except ModelError as exc:
            # A stored state that cannot be read (it should never happen) must
            # neither stop the partition nor poison the user forever: the
            # user starts afresh and their events are applied as usual.
            log.error("unreadable user state in partition %d (%s); starting it afresh", partition, type(exc).__name__)
            deps.counters.state_resets += 1
            states[user] = UserState()
    graph = _graph_for(deps, partition)
    updates = process_partition_events(
        [(offset, record) for offset, record, _ in entries],
        states,
        graph,
        deps.catalog,
        query_vectors,
        deps.settings.top_k,
        interest=deps.interest_params,
        ranking=deps.ranking_params,
    )
    _maybe_flush_graph(deps, partition, graph, entries[-1][2], force=caught_up)
    for update in updates:
        if update.changed:
            with acting_for(last_of[update.user_id]):
                deps.user_state[update.user_id.encode()] = encode_state(update.state)
            deps.counters.applied += 1
    return [(update, last_of[update.user_id]) for update in updates]


def _maybe_flush_graph(deps: AgentDeps, partition: int, graph: ItemGraph, anchor: EventT, force: bool) -> None:
    """Write the partition's changed graph rows, at most every
    ``graph_flush_s`` while batches come full: a hot item's row changes in
    almost every batch, and writing it once per interval instead of once per
    batch is what keeps the changelog (and the worker) fast. The offset
    watermark goes with the rows. Known gap (see README): a crash under full
    load can lose up to one interval of graph updates.
    """
    now = time.monotonic()
    if not force and now - deps.graph_flushed_at.get(partition, 0.0) < deps.graph_flush_s:
        return
    deps.graph_flushed_at[partition] = now
    with acting_for(anchor):
        for item_id, row in graph.take_dirty():
            deps.item_graph[graph_row_key(partition, item_id)] = row
        deps.item_graph[graph_offset_key(partition)] = str(graph.last_offset).encode()


async def _publish_lists(deps: AgentDeps, updates: list[tuple[UserUpdate, EventT]]) -> None:
    # A user whose events were all redeliveries still gets a list: the list
    # of the first delivery may have been lost in the crash that caused it.
    now_ms = int(time.time() * 1000)
    for update, _ in updates:
        record = build_recommendation(
            update.user_id,
            update.state,
            update.ranked,
            deps.catalog,
            trigger=update.trigger,
            model_version=deps.model_version,
            generated_at=now_ms,
        )
        await deps.recommendations_topic.send(key=update.user_id.encode(), value=encode_record(record))
    deps.counters.lists += len(updates)
