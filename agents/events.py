"""Events agent: a batch of events -> user states + item graph -> one fresh
list per touched user.

Per batch, not per event: events are grouped by partition and user, each
user's state is read and written once, and every touched user gets exactly
one list. Exactly-once effect on at-least-once delivery (README, "Nothing
lost, nothing counted twice"):

- user states carry an offset watermark and the ids of their last events
  (``models.recommend.process_partition_events``);
- the partition's graph is snapshotted every ``graph_flush_s`` and a
  snapshot is written to its table only once Faust has committed the source
  offsets past it, so persisted graph rows never run ahead of the commit;
- after a restart or a rebalance, the graph replays the events between its
  persisted offset and the first delivered one, read straight from the
  ``events`` topic (each row keeps its own watermark, so a torn snapshot is
  harmless).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Callable

import faust
from faust.types import TP, EventT

from agents.dead_letters import send_dead_letter
from agents.deps import AgentDeps
from models.errors import ModelError
from models.graph import ItemGraph
from models.interest import UserState, decode_state, encode_state, state_header
from models.recommend import BatchStats, UserUpdate, build_recommendation, process_partition_events
from schemas import Event, EventType, InvalidRecord, decode_event, encode_record
from streams.clients import read_partition_range
from streams.tables import acting_for, graph_offset_key, graph_row_key, partition_graph_records, partition_items

log = logging.getLogger(__name__)

CATCH_UP_SLICE = 500

Entry = tuple[int, Event, "EventT | None"]  # offset, record, Faust event (None: read for catch-up)


def register_events_agent(app: faust.App, deps: AgentDeps) -> None:
    window_s = deps.settings.batch_window_ms / 1000
    events_topic = deps.settings.topic("events")

    @app.agent(deps.events_topic, name="process-events")
    async def process_events(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(deps.settings.batch_size, within=window_s):
            await process_event_batch(deps, batch)

    @app.on_partitions_revoked.connect
    async def forget_graphs(sender: faust.App, revoked: set[TP], **kwargs: object) -> None:
        # Another worker may own a revoked partition next: it replays the
        # graph from the persisted snapshot; ours is dropped with anything
        # not yet committed.
        for tp in revoked:
            if tp.topic == events_topic:
                deps.graphs.pop(tp.partition, None)
                deps.pending_snapshots.pop(tp.partition, None)
                deps.sweep_cursor.pop(tp.partition, None)

    def write_committed_snapshots(offsets: dict[TP, int]) -> None:
        for tp, committed in offsets.items():
            if tp.topic == events_topic:
                _write_snapshots(deps, tp.partition, committed)

    app.tables.commit_listeners.append(write_committed_snapshots)


async def process_event_batch(deps: AgentDeps, batch: list[EventT]) -> None:
    """Decode, fold into state and graph, rank and publish one batch."""
    if deps.before_events is not None:
        await deps.before_events()
    counters = deps.counters
    counters.batches += 1
    counters.events += len(batch)
    by_partition = await _decode_batch(deps, batch)
    if not by_partition:
        return
    query_vectors = await _encode_queries(deps, by_partition)
    # a batch that did not fill up means the stream has caught up: snapshot
    # the graph now rather than at the next interval
    caught_up = len(batch) < deps.settings.batch_size
    assigned = deps.assigned()
    for partition, entries in by_partition.items():
        if assigned is not None and partition not in assigned:
            # Taken before a rebalance moved the partition away: its new
            # owner (maybe us again) gets these events from the committed
            # offset, so working on them now would only race it.
            deps.counters.skipped_revoked += len(entries)
            continue
        updates = await _process_partition(deps, partition, entries, query_vectors, caught_up)
        await _publish_lists(deps, updates)


async def _decode_batch(deps: AgentDeps, batch: list[EventT]) -> dict[int, list[Entry]]:
    by_partition: dict[int, list[Entry]] = defaultdict(list)
    for event in batch:
        message = event.message
        try:
            # an absent key is checked as b"": events must be keyed by user
            record = decode_event(message.value, key=message.key or b"", limits=deps.limits)
        except InvalidRecord as error:
            await send_dead_letter(deps.dead_letter_topic, error, event)
            deps.counters.dead_letters += 1
            deps.counters.dead_letters_by_reason[error.reason.value] += 1
            continue
        by_partition[message.partition].append((message.offset, record, event))
    return by_partition


async def _encode_queries(deps: AgentDeps, by_partition: dict[int, list[Entry]]) -> dict:
    texts = sorted({r.text for entries in by_partition.values() for _, r, _ in entries if r.type is EventType.SEARCH and r.text})
    if not texts:
        return {}
    vectors = await deps.encoder.encode(texts)
    return dict(zip(texts, vectors))


async def _graph_for(deps: AgentDeps, partition: int, first_offset: int) -> tuple[ItemGraph, list[Entry]]:
    """The partition's graph, loaded from its table rows on first use, and
    the events it must replay to reach ``first_offset`` (those committed
    after its last persisted snapshot)."""
    graph = deps.graphs.get(partition)
    if graph is not None and first_offset > graph.last_offset:
        return graph, []
    if graph is not None:
        # Redelivery into a graph that is ahead of it (the consumer went back
        # to the committed offset after a rebalance, or a batch taken before a
        # revocation finished late): lists ranked now would see edges from
        # later events. Start again from the last persisted snapshot, which
        # is never past the committed offset, and replay up to here.
        log.info("partition %d: redelivery from offset %d behind the graph (%d); reloading it", partition, first_offset, graph.last_offset)
        deps.pending_snapshots.pop(partition, None)
    graph = ItemGraph(deps.graph_params)
    graph.last_offset, rows = partition_graph_records(deps.item_graph.items(), partition)
    for item_id, row in rows:
        graph.load_row(item_id, row)
    deps.graphs[partition] = graph
    if first_offset <= graph.last_offset:
        # The consumer delivered offsets that a committed snapshot already
        # holds (seen after a take-over: the new owner is first handed records
        # below the old owner's last commit). Their lists were published
        # before that commit; ranked again now they would see later edges.
        log.warning("partition %d: graph snapshot (offset %d) is ahead of the first delivered offset %d; "
                    "lists of events up to the snapshot are not published again", partition, graph.last_offset, first_offset)
    catch_up: list[Entry] = []
    if graph.last_offset + 1 < first_offset:
        records = await read_partition_range(deps.settings, deps.settings.topic("events"), partition, graph.last_offset + 1, first_offset)
        for record in records:
            try:
                event = decode_event(record.value, key=record.key or b"", limits=deps.limits)
            except InvalidRecord:
                continue  # dead-lettered when it was first delivered
            catch_up.append((record.offset, event, None))
        deps.counters.graph_catch_up += len(catch_up)
        log.info("partition %d: graph replays %d events (offsets %d..%d) committed after its last snapshot",
                 partition, len(catch_up), graph.last_offset + 1, first_offset - 1)
    return graph, catch_up


async def _process_partition(
    deps: AgentDeps, partition: int, entries: list[Entry], query_vectors: dict, caught_up: bool
) -> list[tuple[UserUpdate, EventT]]:
    entries = sorted(entries, key=lambda e: e[0])
    anchor = entries[-1][2]
    assert anchor is not None
    deps.anchors[partition] = anchor
    graph, catch_up = await _graph_for(deps, partition, entries[0][0])
    # events the graph already holds are redeliveries whose lists went out
    # before the commit that let the graph persist them: not ranked again
    graph_from = graph.last_offset
    # a long catch-up is folded in slices, yielding to the event loop between
    # them: Faust's rebalance and commit callbacks run on this loop too
    for start in range(0, max(0, len(catch_up) - CATCH_UP_SLICE), CATCH_UP_SLICE):
        piece = catch_up[start : start + CATCH_UP_SLICE]
        slice_states = {r.user_id: _load_state(deps, r.user_id, anchor, partition) for _, r, _ in piece}
        slice_stats = BatchStats()
        slice_updates = process_partition_events(
            [(o, r) for o, r, _ in piece], slice_states, graph, deps.catalog, query_vectors, deps.settings.top_k,
            interest=deps.interest_params, ranking=deps.ranking_params, stats=slice_stats, rank_from=entries[0][0],
        )
        deps.counters.add(slice_stats)
        _store_states(deps, slice_updates, lambda user: anchor)
        await asyncio.sleep(0)
    if len(catch_up) > CATCH_UP_SLICE:
        catch_up = catch_up[(len(catch_up) - 1) // CATCH_UP_SLICE * CATCH_UP_SLICE :]
    stream = catch_up + entries
    # the Faust event each user's table writes act for: the user's last one
    # (catch-up events have none; any event of the partition routes alike)
    act_for: dict[str, EventT] = {}
    for _, record, event in stream:
        act_for[record.user_id] = event or act_for.get(record.user_id) or anchor
    states = {user: _load_state(deps, user, event, partition) for user, event in act_for.items()}
    stats = BatchStats()
    updates = process_partition_events(
        [(offset, record) for offset, record, _ in stream],
        states,
        graph,
        deps.catalog,
        query_vectors,
        deps.settings.top_k,
        interest=deps.interest_params,
        ranking=deps.ranking_params,
        stats=stats,
        rank_from=max(entries[0][0] if catch_up else -1, graph_from + 1),
    )
    deps.counters.add(stats)
    _maybe_snapshot_graph(deps, partition, graph, force=caught_up)
    _store_states(deps, updates, act_for.__getitem__)
    _maybe_sweep_expired(deps, partition, graph, anchor)
    return [(update, act_for[update.user_id]) for update in updates if update.publish]


def _store_states(deps: AgentDeps, updates: list[UserUpdate], act_for: Callable[[str], EventT]) -> None:
    """Write changed states, delete forgotten ones, each in the context of
    an event of the user's partition (so the changelog record lands there)."""
    for update in updates:
        key = update.user_id.encode()
        with acting_for(act_for(update.user_id)):
            if update.forgotten:
                if key in deps.user_state:
                    del deps.user_state[key]
            elif update.changed:
                deps.user_state[key] = encode_state(update.state)
                deps.counters.applied += 1


def _load_state(deps: AgentDeps, user: str, event: EventT, partition: int) -> UserState:
    try:
        with acting_for(event):
            return decode_state(deps.user_state.get(user.encode()))
    except ModelError as exc:
        # A stored state that cannot be read (it should never happen) must
        # neither stop the partition nor poison the user forever: the user
        # starts afresh and their events are applied as usual.
        log.error("unreadable user state in partition %d (%s); starting it afresh", partition, type(exc).__name__)
        deps.counters.state_resets += 1
        return UserState()


def _maybe_snapshot_graph(deps: AgentDeps, partition: int, graph: ItemGraph, force: bool) -> None:
    """Snapshot the partition's changed graph rows, at most every
    ``graph_flush_s`` while batches come full (a hot item's row changes in
    almost every batch; writing it once per interval is what keeps the
    changelog fast). The snapshot waits for the commit (``_write_snapshots``).
    """
    now = time.monotonic()
    if not graph.dirty or (not force and now - deps.graph_flushed_at.get(partition, 0.0) < deps.graph_flush_s):
        return
    deps.graph_flushed_at[partition] = now
    deps.pending_snapshots[partition].append((graph.last_offset, graph.take_dirty()))


def _write_snapshots(deps: AgentDeps, partition: int, committed: int) -> None:
    """Write the partition's snapshots that the committed offset has passed:
    rows first, then the offset key (same changelog partition, so in order)."""
    pending = deps.pending_snapshots.get(partition)
    anchor = deps.anchors.get(partition)
    if not pending or anchor is None:
        return
    with acting_for(anchor):
        while pending and pending[0][0] < committed:
            offset, rows = pending.pop(0)
            for item_id, row in rows:
                deps.item_graph[graph_row_key(partition, item_id)] = row
            deps.item_graph[graph_offset_key(partition)] = str(offset).encode()
            deps.counters.graph_snapshots += 1


def _maybe_sweep_expired(deps: AgentDeps, partition: int, graph: ItemGraph, anchor: EventT) -> None:
    """Delete the states of users inactive for longer than the TTL, a slice
    of the partition at a time (a cursor walks the keys, so no call scans
    millions). Time is the partition's event time (its latest event), so a
    replay expires the same users; a user who returns after the TTL starts
    afresh either way (``process_partition_events``)."""
    ttl = deps.interest_params.ttl_ms
    if not ttl or not graph.latest_ts:
        return
    horizon = graph.latest_ts - ttl
    after = deps.sweep_cursor.get(partition)
    chunk = partition_items(deps.user_state, partition, after, deps.sweep_chunk)
    deps.sweep_cursor[partition] = chunk[-1][0] if len(chunk) == deps.sweep_chunk else None
    with acting_for(anchor):
        for key, value in chunk:
            try:
                expired = state_header(value).last_event_ts < horizon
            except ModelError:
                expired = False  # left for the events path to reset
            if expired:
                del deps.user_state[key]
                deps.expired_users.append(key)
                deps.counters.expired += 1


async def _publish_lists(deps: AgentDeps, updates: list[tuple[UserUpdate, EventT]]) -> None:
    # A user whose events were all redeliveries still gets a list: the list
    # of the first delivery may have been lost in the crash that caused it.
    now_ms = int(time.time() * 1000)
    topic, held = deps.list_destination()
    if held:
        deps.counters.held_lists += len(updates)
    if topic is None:  # a rebuild that has not caught up: lists are held
        deps.expired_users.clear()
        return
    for update, _ in updates:
        key = update.user_id.encode()
        if update.forgotten:
            await topic.send(key=key, value=None)  # tombstone: compaction removes the list
            continue
        record = build_recommendation(
            update.user_id,
            update.state,
            update.ranked,
            deps.catalog,
            trigger=update.trigger,
            model_version=deps.model_version,
            generated_at=now_ms,
        )
        await topic.send(key=key, value=encode_record(record))
    while deps.expired_users:
        await topic.send(key=deps.expired_users.pop(), value=None)
    deps.counters.lists += len(updates)
