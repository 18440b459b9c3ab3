"""Events agent: a batch of events -> user states + item graph -> one fresh
list per touched user.

Per batch, not per event: events are grouped by partition and user, each
user's state is read and written once, and every touched user gets exactly
one list. Exactly-once effect on at-least-once delivery (README, "Nothing
lost, nothing counted twice"):

- user states carry an offset watermark and the ids of their last events
  (``models.recommend.process_partition_events``);
- the partition's graph is snapshotted every ``graph_flush_s`` (sooner
  for busy users), and a snapshot at offset S is written only after the
  producer has flushed: every user state and list of the events up to S
  is then durable, so after a restart the events up to S change nothing
  and are not ranked again (each graph row is its own watermark, so a torn
  snapshot is harmless). This does not wait for Faust's offset commit,
  which can stall for long stretches (see ``streams.state.faust_fixes``);
- after a restart or a rebalance, the graph replays the events between its
  persisted offset and the first delivered one, read straight from the
  ``events`` topic;
- events Faust never handed to the agent are read back from the topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from typing import Callable

import faust
from faust.types import TP, EventT

from agents.dead_letters import send_dead_letter
from agents.deps import AgentDeps
from models.catalog import build_ann_index
from models.errors import ModelError
from models.graph import ItemGraph
from models.interest import UserState, decode_state, encode_state, state_header
from models.recommend import BatchStats, UserUpdate, build_recommendation, process_partition_events
from schemas import Event, EventType, InvalidRecord, decode_event, encode_record
from streams.kafka.clients import read_partition_range
from streams.state.tables import acting_for, graph_offset_key, graph_row_key, partition_graph_records, partition_items

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
                deps.events_since_snapshot.pop(tp.partition, None)
                deps.snapshot_offsets.pop(tp.partition, None)
                deps.delivered_upto.pop(tp.partition, None)
                deps.delivered.pop(tp.partition, None)



async def process_event_batch(deps: AgentDeps, batch: list[EventT]) -> None:
    """Decode, fold into state and graph, rank and publish one batch."""
    if deps.before_events is not None:
        await deps.before_events()
    counters = deps.counters
    counters.batches += 1
    counters.events += len(batch)
    deps.metrics.observe_batch("events", len(batch))
    by_partition = await _decode_batch(deps, batch)
    if not by_partition:
        return
    if deps.catalog.ann_due():
        await _build_ann_index(deps)
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
            deps.delivered.pop(partition, None)
            continue
        updates = await _process_partition(deps, partition, entries, query_vectors, caught_up)
        await _publish_lists(deps, updates)
    if any(deps.pending_snapshots.values()):
        # states and lists of every event up to the snapshots first
        await deps.flush_producer()
        for partition in list(deps.pending_snapshots):
            _write_snapshots(deps, partition)


async def _build_ann_index(deps: AgentDeps) -> None:
    """Build the catalog's ANN index in a thread: 100,000 items take about
    half a minute on one core, and the loop keeps serving Faust's commits
    and the catalog agent meanwhile (items changed during the build are
    brought in on first use); this batch waits for it."""
    rows, vectors = deps.catalog.ann_snapshot()
    log.info("catalog has %d items: building its ANN index for candidate ranking", len(rows))
    started = time.monotonic()
    index = await asyncio.to_thread(build_ann_index, rows, vectors, deps.catalog.candidates.ann)
    deps.catalog.install_ann(index)
    log.info("ANN index of %d items built in %.1f s", len(rows), time.monotonic() - started)


async def _decode_batch(deps: AgentDeps, batch: list[EventT]) -> dict[int, list[Entry]]:
    by_partition: dict[int, list[Entry]] = defaultdict(list)
    for event in batch:
        message = event.message
        # every delivered offset, valid or not: what is not here is a hole
        deps.delivered[message.partition].add(message.offset)
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


async def _graph_for(deps: AgentDeps, partition: int, first_offset: int) -> tuple[ItemGraph, list[Entry], int]:
    """The partition's graph, loaded from its table rows on first use; the
    events to fold in before the batch (read back from the topic); and the
    offset below which users whose events were all applied before are not
    ranked again (their lists went out then)."""
    graph = deps.graphs.get(partition)
    if graph is not None:
        if first_offset <= graph.last_offset:
            # Redelivery into the graph this process built (the consumer went
            # back to the committed offset, or re-read the partition's last
            # record at its end, as Tansu does). Every row is its own
            # watermark, so the events change nothing they changed before;
            # their lists went out from this process already. Only users with
            # events past the graph are ranked again, on the graph as it is
            # right after them.
            deps.counters.redelivered_in_process += 1
            log.info("partition %d: redelivery from offset %d; this process's graph is at %d", partition, first_offset, graph.last_offset)
            return graph, [], graph.last_offset + 1
        return graph, [], -1
    graph = ItemGraph(deps.graph_params)
    graph.last_offset, rows = partition_graph_records(deps.item_graph.items(), partition)
    for item_id, row in rows:
        graph.load_row(item_id, row)
    deps.graphs[partition] = graph
    deps.snapshot_offsets[partition] = graph.last_offset
    log.info("partition %d: graph loaded at offset %d; first event delivered: %d", partition, graph.last_offset, first_offset)
    catch_up = await _read_events(deps, partition, graph.last_offset + 1, first_offset)
    if catch_up:
        deps.counters.graph_catch_up += len(catch_up)
        log.info("partition %d: graph replays %d events (offsets %d..%d) committed after its last snapshot",
                 partition, len(catch_up), graph.last_offset + 1, first_offset - 1)
        _warn_if_replay_inexact(deps, partition, catch_up)
    if first_offset <= graph.last_offset:
        # the consumer's commit lags the snapshot: the states and lists of
        # the events up to the snapshot were durable before it was written
        return graph, [], graph.last_offset + 1
    return graph, catch_up, first_offset if catch_up else -1


async def _contiguous(deps: AgentDeps, partition: int, entries: list[Entry]) -> tuple[list[Entry], list[int]]:
    """The batch's events of one partition in offset order, each offset once
    and without holes.

    Per-user offset watermarks take any event below a user's watermark for a
    redelivery, so an event the agent never saw while later ones went
    through would be lost for good (Faust's commit stalls at such a hole, so
    the event comes back after a restart, but too late). This was seen on
    the embedded broker under kill -9 restarts. Holes, between this batch's
    offsets and since the previous batch of this process, are read back from
    the topic; on Kafka, transaction markers leave holes that read back as
    nothing. Also returns the holes' offsets, for Faust's consumer to
    learn they are done once the batch is written.
    """
    by_offset: dict[int, Entry] = {}
    for entry in entries:
        by_offset.setdefault(entry[0], entry)
    if len(by_offset) < len(entries):
        deps.counters.double_deliveries += len(entries) - len(by_offset)
    delivered = sorted(deps.delivered.pop(partition, ()) or by_offset)
    previous = deps.delivered_upto.get(partition)
    if previous is not None and previous < delivered[0]:
        delivered.insert(0, previous)
    deps.delivered_upto[partition] = max(delivered[-1], previous if previous is not None else -1)
    holes = [(a + 1, b) for a, b in zip(delivered, delivered[1:]) if b > a + 1]
    if holes:
        found = [e for e in await _read_events(deps, partition, holes[0][0], holes[-1][1]) if e[0] not in by_offset]
        found = [e for e in found if any(start <= e[0] < stop for start, stop in holes)]
        for entry in found:
            by_offset[entry[0]] = entry
        deps.counters.gap_events += len(found)
        if found:
            log.warning("partition %d: %d events never delivered to the agent (offsets %d..%d) read back from the topic",
                        partition, len(found), holes[0][0], holes[-1][1] - 1)
    hole_offsets = [o for start, stop in holes for o in range(start, stop)]
    return [by_offset[o] for o in sorted(by_offset)], hole_offsets


async def _read_events(deps: AgentDeps, partition: int, start: int, stop: int) -> list[Entry]:
    """The valid events of ``events`` partition ``partition`` in ``[start, stop)``."""
    if stop <= start:
        return []
    entries: list[Entry] = []
    for record in await read_partition_range(deps.settings, deps.settings.topic("events"), partition, start, stop):
        try:
            event = decode_event(record.value, key=record.key or b"", limits=deps.limits)
        except InvalidRecord:
            continue  # dead-lettered when it was first delivered
        entries.append((record.offset, event, None))
    return entries


def _warn_if_replay_inexact(deps: AgentDeps, partition: int, catch_up: list[Entry]) -> None:
    """The graph replays an event from the user's history entry for it, found
    by its source offset; only the newest ``tracked_offsets`` entries keep
    one. Snapshots are taken often enough to stay inside that (see
    ``_maybe_snapshot_graph``); say so when a stall of the commits let a
    user run past it."""
    per_user = Counter(r.user_id for _, r, _ in catch_up)
    over = [u for u, n in per_user.items() if n > deps.interest_params.tracked_offsets]
    if over:
        log.warning("partition %d: %d users have more than %d events to replay into the graph; "
                    "their oldest edges in this stretch are not rebuilt", partition, len(over), deps.interest_params.tracked_offsets)


async def _process_partition(
    deps: AgentDeps, partition: int, entries: list[Entry], query_vectors: dict, caught_up: bool
) -> list[tuple[UserUpdate, EventT]]:
    entries, hole_offsets = await _contiguous(deps, partition, entries)
    anchor = entries[-1][2]
    assert anchor is not None
    deps.anchors[partition] = anchor
    graph, catch_up, rank_from = await _graph_for(deps, partition, entries[0][0])
    published: list[tuple[UserUpdate, EventT]] = []
    # a long catch-up is folded in slices, yielding to the event loop between
    # them: Faust's rebalance and commit callbacks run on this loop too
    for start in range(0, max(0, len(catch_up) - CATCH_UP_SLICE), CATCH_UP_SLICE):
        piece = catch_up[start : start + CATCH_UP_SLICE]
        slice_states = {r.user_id: _load_state(deps, r.user_id, anchor, partition) for _, r, _ in piece}
        slice_stats = BatchStats()
        slice_updates = process_partition_events(
            [(o, r) for o, r, _ in piece], slice_states, graph, deps.catalog, query_vectors, deps.settings.top_k,
            interest=deps.interest_params, ranking=deps.ranking_params, stats=slice_stats, rank_from=rank_from,
            guard=deps.guard_params,
        )
        _count(deps, partition, slice_stats)
        _store_states(deps, slice_updates, lambda user: anchor)
        published += [(update, anchor) for update in slice_updates if update.publish]
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
        rank_from=rank_from,
        guard=deps.guard_params,
    )
    _count(deps, partition, stats)
    _maybe_snapshot_graph(deps, partition, graph, stream, force=caught_up)
    _store_states(deps, updates, act_for.__getitem__)
    if hole_offsets:
        # the holes are applied and written: Faust may commit past them now
        deps.mark_processed(partition, hole_offsets)
    _maybe_sweep_expired(deps, partition, graph, anchor)
    return published + [(update, act_for[update.user_id]) for update in updates if update.publish]


def _count(deps: AgentDeps, partition: int, stats: BatchStats) -> None:
    deps.counters.add(stats)
    if stats.behind_durable:
        # every state up to the commit and to the loaded graph snapshot was
        # flushed before them: a user state without such an event lost a write
        log.warning("partition %d: %d events were new to their users' stored states, below the offset those states were flushed to; "
                    "their lists are ranked on a graph that is ahead of them", partition, stats.behind_durable)


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


def _maybe_snapshot_graph(deps: AgentDeps, partition: int, graph: ItemGraph, stream: list[Entry], force: bool) -> None:
    """Snapshot the partition's changed graph rows, at most every
    ``graph_flush_s`` while batches come full (a hot item's row changes in
    almost every batch; writing it once per interval is what keeps the
    changelog fast), and sooner when one user's events since the last
    snapshot reach half of what their history can replay after a crash
    (``tracked_offsets``). The snapshot waits for the commit
    (``_write_snapshots``).
    """
    since = deps.events_since_snapshot[partition]
    since.update(record.user_id for _, record, _ in stream)
    now = time.monotonic()
    busiest = max(since.values(), default=0)
    due = force or busiest * 2 >= deps.interest_params.tracked_offsets
    if not graph.dirty or (not due and now - deps.graph_flushed_at.get(partition, 0.0) < deps.graph_flush_s):
        return
    deps.graph_flushed_at[partition] = now
    since.clear()
    deps.pending_snapshots[partition].append((graph.last_offset, graph.take_dirty()))


def _write_snapshots(deps: AgentDeps, partition: int) -> None:
    """Write the partition's pending snapshots, oldest first: rows, then the
    offset key (same changelog partition, so in order)."""
    pending = deps.pending_snapshots.pop(partition, None)
    anchor = deps.anchors.get(partition)
    if not pending or anchor is None or partition not in deps.graphs:
        return
    with acting_for(anchor):
        for offset, rows in pending:
            for item_id, row in rows:
                deps.item_graph[graph_row_key(partition, item_id)] = row
            deps.item_graph[graph_offset_key(partition)] = str(offset).encode()
            deps.snapshot_offsets[partition] = offset
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
    for update, event in updates:
        key = update.user_id.encode()
        if update.forgotten:
            await topic.send(key=key, value=None)  # tombstone: compaction removes the list
            deps.recent_lists.put(update.user_id, None)
            continue
        record = build_recommendation(
            update.user_id,
            update.state,
            update.ranked,
            deps.catalog,
            trigger=update.trigger,
            model_version=deps.model_version,
            generated_at=now_ms,
            bot_suspected=update.bot_suspected,
        )
        await topic.send(key=key, value=encode_record(record))
        deps.recent_lists.put(update.user_id, record)
        # from the Kafka timestamp of the user's last event in the batch
        deps.metrics.observe_list_latency(event.message.timestamp)
    while deps.expired_users:
        await topic.send(key=deps.expired_users.pop(), value=None)
    deps.counters.lists += len(updates)
