"""Events agent: a batch of events -> user states + item graph -> one fresh
list per touched user.

Per batch, not per event: events are grouped by partition and user, each
user's state is read and written once, and every touched user gets exactly
one list. The exactly-once effect on at-least-once delivery (holes,
catch-up, snapshots, sweep) is each partition's
:class:`streams.state.partition_log.PartitionLog`; this module decodes, hands
the events to it and to the models, and publishes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import faust
from faust.types import TP, EventT

from agents.catalog import build_ann_index_off_loop
from agents.dead_letters import send_dead_letter
from agents.deps import AgentDeps
from agents.user_states import last_event_ts, load_state, store_states
from models.global_graph import DeltaRecord, encode_delta
from models.graph import ItemGraph
from models.recommend import BatchStats, UserUpdate, build_recommendation, delta_record, process_partition_events, ready_prefix
from schemas import TICK_KEY, EventType, InvalidRecord, encode_record
from streams.kafka.partitioning import decode_event_in_partition
from streams.state.partition_log import Entry, PartitionLog, topic_reader
from streams.state.tables import partition_items

log = logging.getLogger(__name__)

CATCH_UP_SLICE = 500
_TICK = TICK_KEY.encode()


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
                deps.partition_logs.pop(tp.partition, None)


async def process_event_batch(deps: AgentDeps, batch: list[EventT]) -> None:
    """Decode, fold into state and graph, rank and publish one batch."""
    if deps.before_events is not None:
        await deps.before_events()
    deps.counters.batches += 1
    # tick records (the global graph's, models.global_graph) are not events
    events = sum(1 for event in batch if event.message.key != _TICK)
    deps.counters.events += events
    deps.metrics.observe_batch("events", events)
    async with deps.batch_lock:
        by_partition = await _decode_batch(deps, batch)
        if not by_partition:
            return
        if deps.catalog.ann_due():
            await build_ann_index_off_loop(deps.catalog)
        texts = sorted({r.text for entries in by_partition.values() for _, r, _ in entries if r.type is EventType.SEARCH and r.text})
        query_vectors = dict(zip(texts, await deps.encoder.encode(texts))) if texts else {}
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
                deps.partition_logs[partition].delivered.clear()
                continue
            await _process_partition(deps, deps.partition_logs[partition], entries, query_vectors, caught_up)
        await _fold_ready_held(deps)
        await _write_snapshots(deps)


async def process_held_events(deps: AgentDeps) -> None:
    """Fold the events partitions held back, now that the graph-deltas feed
    brought other partitions' progress (called by the feed)."""
    if deps.board is None:
        return
    async with deps.batch_lock:
        await _fold_ready_held(deps)
        await _write_snapshots(deps)


async def _fold_ready_held(deps: AgentDeps) -> None:
    """Fold the held events of every partition the board can serve now,
    again while folding one moves another on (partitions of this worker
    whose records go straight to its board)."""
    board = deps.board
    if board is None:
        return
    assigned = deps.assigned()
    moved = True
    while moved:
        moved = False
        for plog in list(deps.partition_logs.values()):
            if not plog.held or plog.graph is None or not board.ready(plog.partition, plog.held_epoch):
                continue
            if assigned is not None and plog.partition not in assigned:
                continue
            held, plog.held = plog.held, []
            await _fold_stream(deps, plog, held, {}, plog.graph, plog.rank_from)
            _maybe_snapshot(deps, plog, held, caught_up=False)
            moved = moved or len(plog.held) < len(held)
            await asyncio.sleep(0)


async def _write_snapshots(deps: AgentDeps) -> None:
    if any(plog.pending for plog in deps.partition_logs.values()):
        await deps.flush_producer()  # states, lists and graph deltas of every event up to the snapshots first
        for plog in list(deps.partition_logs.values()):
            deps.counters.graph_snapshots += plog.write_snapshots(deps.item_graph)
    if deps.board is not None:
        _prune_board(deps)


def _prune_board(deps: AgentDeps) -> None:
    # ops every owned view has folded in are not needed again (a view taken
    # over later that needs them makes the feed re-read the topic)
    assigned = deps.assigned()
    views = [plog.graph for p, plog in deps.partition_logs.items() if plog.graph is not None and (assigned is None or p in assigned)]
    if views and assigned is not None and len(views) == len(assigned):
        deps.board.prune(min(view.foreign_epoch for view in views))


async def _decode_batch(deps: AgentDeps, batch: list[EventT]) -> dict[int, list[Entry]]:
    by_partition: dict[int, list[Entry]] = defaultdict(list)
    for event in batch:
        message = event.message
        # every delivered offset, valid or not: what is not here is a hole
        deps.partition_logs[message.partition].note_delivered(message.offset)
        deps.on_delivery(message.partition)
        if deps.board is not None:
            # With the global graph an event may be held past this batch, so
            # the agent acknowledges events itself, once folded in: Faust's
            # ack at the end of the batch must not count them (see _fold_stream)
            message.acked = True
        try:
            # an absent key is checked as b"": events must be keyed by user;
            # an event outside its key's partition (a CRC32 producer) is dead-
            # lettered, never folded where forget and the API cannot find it
            record = decode_event_in_partition(message.value, message.key or b"", message.partition, deps.settings.partitions, deps.limits)
        except InvalidRecord as error:
            await send_dead_letter(deps.dead_letter_topic, error, event)
            deps.counters.dead_letters += 1
            deps.counters.dead_letters_by_reason[error.reason.value] += 1
            if deps.board is not None:
                deps.mark_processed(message.partition, [message.offset])
            continue
        by_partition[message.partition].append((message.offset, record, event))
    return by_partition


async def _process_partition(deps: AgentDeps, plog: PartitionLog, entries: list[Entry], query_vectors: dict, caught_up: bool) -> None:
    partition, counters = plog.partition, deps.counters
    # read-back (gaps, graph catch-up) skips what delivery dead-lettered, wrong partitions included
    read = topic_reader(deps.settings, deps.settings.topic("events"), partition,
                        lambda value, key: decode_event_in_partition(value, key, partition, deps.settings.partitions, deps.limits))
    batch = await plog.contiguous(entries, read)
    counters.double_deliveries += batch.doubles
    counters.gap_events += batch.found
    anchor = plog.anchor = batch.entries[-1][2]
    assert anchor is not None
    start = await plog.resume(batch.entries[0][0], lambda: ItemGraph(deps.graph_params), deps.item_graph.items(), read,
                              deps.interest_params.tracked_offsets)
    counters.redelivered_in_process += start.redelivered
    # kept for the ownership: events held now and folded later (or with a
    # later batch) must not be ranked again either when a snapshot or an
    # earlier list covers them (re-ranking them on the graph as it is now
    # published lists that no replay gives)
    plog.rank_from = max(plog.rank_from, start.rank_from)
    counters.graph_catch_up += len(start.catch_up)
    # what the ticker reads (DeltaRecord.seen): kept as it comes in, never
    # rescanned over the held backlog
    plog.seen_ts = max(plog.seen_ts, _newest_ts(batch.entries), _newest_ts(start.catch_up))
    if deps.board is not None and start.graph.foreign_epoch < deps.board.pruned_upto:
        deps.rewind_deltas()  # the view needs ops this worker pruned: read graph-deltas again
    if plog.held and deps.board is not None and not deps.board.ready(partition, plog.held_epoch):
        # still waiting for another partition: the new events queue up behind
        # the held ones, unfolded (trying would only load states again)
        if start.catch_up or batch.entries[0][0] <= plog.held[-1][0]:
            plog.held = _merged(plog.held, start.catch_up, batch.entries)
        else:  # the usual case: the new events come after the held ones
            plog.held.extend(batch.entries)
        deps.counters.held_events += len(batch.entries)
        # still the same progress, but newer events received: the ticker of
        # an idle partition moves it as far as these need (the board keeps
        # the highest of the held events' times sent so far)
        await _send_delta(deps, plog, delta_record(partition, start.graph, [], deps.epochs, plog.held_epoch, plog.seen_ts))
        return
    if start.catch_up or not plog.held or batch.entries[0][0] <= plog.held[-1][0]:
        stream = _merged(plog.held, start.catch_up, batch.entries)
    else:  # the usual case: the new events come after the held ones
        stream = plog.held + batch.entries
    plog.held = []
    await _fold_stream(deps, plog, stream, query_vectors, start.graph, plog.rank_from)
    _maybe_snapshot(deps, plog, stream, caught_up)
    if batch.holes and deps.board is None:
        # the holes are applied and written: Faust may commit past them now
        # (with the global graph every offset is acknowledged once folded in)
        deps.mark_processed(partition, batch.holes)
    ttl = deps.interest_params.ttl_ms
    if ttl and start.graph.latest_ts:
        horizon = start.graph.latest_ts - ttl  # the partition's event time: a replay expires the same users
        expired = plog.sweep(deps.user_state, lambda after, n: partition_items(deps.user_state, partition, after, n), deps.sweep_chunk,
                             lambda value: last_event_ts(value) < horizon)
        deps.expired_users += expired
        counters.expired += len(expired)
        if expired:
            await _publish_lists(deps, [])  # their tombstones


async def _with_query_vectors(deps: AgentDeps, stream: list[Entry], query_vectors: dict) -> dict:
    """``query_vectors`` with the searches of ``stream`` it lacks (held and
    caught-up events; the encoder's cache answers texts seen before)."""
    missing = sorted({r.text for _, r, _ in stream if r.type is EventType.SEARCH and r.text and r.text not in query_vectors})
    if not missing:
        return query_vectors
    return {**query_vectors, **dict(zip(missing, await deps.encoder.encode(missing)))}


def _newest_ts(entries: list[Entry]) -> int:
    return max((record.ts for _, record, _ in entries), default=-1)


def _merged(*parts: list[Entry]) -> list[Entry]:
    """Entries of the parts in offset order, each offset once (the first seen:
    held events before their redelivery)."""
    by_offset: dict[int, Entry] = {}
    for part in parts:
        for entry in part:
            by_offset.setdefault(entry[0], entry)
    return [by_offset[o] for o in sorted(by_offset)]


async def _fold_stream(deps: AgentDeps, plog: PartitionLog, stream: list[Entry], query_vectors: dict, graph: ItemGraph,
                       rank_from: int) -> None:
    """Fold ``stream`` in slices and publish their lists, yielding to the
    event loop between them (Faust's rebalance and commit callbacks run on
    this loop too); what the global graph cannot serve yet is left held in
    ``plog``.

    With the global graph every event is acknowledged to Faust's consumer
    here, once folded in and its lists sent (its message was marked acked on
    delivery, so Faust's own ack of the batch does not count it): the
    group's committed offset, and so its lag, stops at the first held event,
    and a new owner after a rebalance starts there. Acknowledging before the
    lists were sent let a commit (a timer on this loop) pass events whose
    lists a crash then lost."""
    anchor = plog.anchor
    while stream:
        piece, stream = stream[:CATCH_UP_SLICE], stream[CATCH_UP_SLICE:]
        if deps.board is not None:
            # only what the board can serve now is folded (states are loaded
            # for it alone); the rest waits
            ready, held_epoch = ready_prefix([(o, r) for o, r, _ in piece], graph, deps.board, plog.partition)
            if ready < len(piece):
                piece, stream = piece[:ready], piece[ready:] + stream
                if not piece:
                    _hold(deps, plog, stream, held_epoch)
                    # how far it is: the epoch of its first held event
                    await _send_delta(deps, plog, delta_record(plog.partition, graph, [], deps.epochs, held_epoch, plog.seen_ts))
                    break
        query_vectors = await _with_query_vectors(deps, piece, query_vectors)
        # the Faust event each user's table writes act for: the user's last one
        # (catch-up events have none; any event of the partition routes alike)
        act_for: dict[str, EventT] = {}
        for _, record, event in piece:
            if record.type is not EventType.TICK:
                act_for[record.user_id] = event or act_for.get(record.user_id) or anchor
        updates, stats = _fold(deps, plog.partition, piece, act_for, graph, query_vectors, rank_from)
        await _publish_lists(deps, updates)
        held = {offset for offset, _ in stats.held}
        if deps.board is not None:
            deps.mark_processed(plog.partition, [entry[0] for entry in piece if entry[0] not in held])
        await _send_delta(deps, plog, delta_record(plog.partition, graph, stats.ops, deps.epochs, stats.held_epoch, plog.seen_ts))
        if stats.held:  # (not expected: the prefix above was ready)
            _hold(deps, plog, [entry for entry in piece if entry[0] in held] + stream, stats.held_epoch)
            break
        if stream:
            await asyncio.sleep(0)


async def _send_delta(deps: AgentDeps, plog: PartitionLog, record: DeltaRecord) -> None:
    if deps.deltas_topic is None:
        return
    record.source, record.seq = plog.source, plog.delta_seq
    plog.delta_seq += 1
    await deps.deltas_topic.send(key=str(plog.partition).encode(), value=encode_delta(record), partition=plog.partition)
    deps.counters.delta_records += 1
    if deps.board is not None and deps.board.holds_through(plog.source, record.seq - 1):
        # every older record of the partition is on the board: no round trip
        # needed (with one still on its way, this one must wait for it, or
        # the board would take this one first and drop that one's ops)
        deps.board.add(record)


def _maybe_snapshot(deps: AgentDeps, plog: PartitionLog, stream: list[Entry], caught_up: bool) -> None:
    """Let the partition's graph take a snapshot after folding ``stream``
    (what is still held is its suffix, and does not count)."""
    folded = stream[: len(stream) - len(plog.held)]
    now = time.monotonic()
    # caught up: snapshot now rather than at the next interval, but at most
    # once a second (a view's rows change with every foreign epoch)
    plog.maybe_snapshot((r.user_id for _, r, _ in folded if r.type is not EventType.TICK), now, force=caught_up and now - plog.flushed_at >= 1.0,
                        tracked_offsets=deps.interest_params.tracked_offsets, flush_s=deps.graph_flush_s)


def _hold(deps: AgentDeps, plog: PartitionLog, entries: list[Entry], held_epoch: int) -> None:
    plog.held = entries
    plog.held_epoch = held_epoch
    deps.counters.held_events += len(entries)


def _fold(deps: AgentDeps, partition: int, stream: list[Entry], act_for: dict[str, EventT], graph: ItemGraph, query_vectors: dict,
          rank_from: int) -> tuple[list[tuple[UserUpdate, EventT]], BatchStats]:
    """Fold events into their users' states and the graph; write the states;
    the updates to publish, each with the event its list acts for."""
    states = {user: load_state(deps, user, event, partition) for user, event in act_for.items()}
    stats = BatchStats()
    updates = process_partition_events(
        [(offset, record) for offset, record, _ in stream], states, graph, deps.catalog, query_vectors, deps.settings.top_k,
        interest=deps.interest_params, ranking=deps.ranking_params, stats=stats, rank_from=rank_from, guard=deps.guard_params,
        board=deps.board, partition=partition,
    )
    deps.counters.add(stats)
    if stats.behind_durable:
        # every state up to the commit and to the loaded graph snapshot was
        # flushed before them: a user state without such an event lost a write
        log.warning("partition %d: %d events were new to their users' stored states, below the offset those states were flushed to; "
                    "their lists are ranked on a graph that is ahead of them", partition, stats.behind_durable)
    store_states(deps, updates, act_for)
    return [(update, act_for[update.user_id]) for update in updates if update.publish], stats


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
    # the serving API answers lookups from the lists on `recommendations` only
    served = deps.on_list if not held else (lambda key, offset, value: None)
    for update, event in updates:
        key = update.user_id.encode()
        if update.forgotten:
            await topic.send(key=key, value=None)  # tombstone: compaction removes the list
            served(key, update.state.last_offset, None)
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
        value = encode_record(record)
        await topic.send(key=key, value=value)
        served(key, update.state.last_offset, value)
        deps.recent_lists.put(update.user_id, record)
        # from the Kafka timestamp of the user's last event in the batch
        deps.metrics.observe_list_latency(event.message.timestamp)
    while deps.expired_users:
        key = deps.expired_users.pop()
        await topic.send(key=key, value=None)
        served(key, -1, None)
    deps.counters.lists += len(updates)
