"""Batch-level steps shared by the events agent, offline replay and tests:
fold a user's events into their state, and turn a ranked list into the
record published on ``recommendations``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Container, Mapping, MutableMapping, Sequence

import numpy as np

from models.catalog import ItemCatalog
from models.explain import interests
from models.global_graph import DeltaBoard, DeltaRecord, EpochParams, GraphOp, catch_up_view, epoch_of
from models.graph import ItemGraph
from models.guard import DEFAULT_GUARD
from models.guard import GuardParams, admit, counts_for_graph, record_seen_only, suspected
from models.interest import DEFAULT_PARAMS, InterestParams, UserState, apply_event, event_id_hash, event_signal, fold_pending
from models.quality import OnlineQuality, remember_list
from models.ranking import DEFAULT_RANKING, RankingParams, RankRequest, ScoredItem, prepare_rank, rank_requests
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
    """The user's interests, each with a short label and its share of the
    user's weight; from the categories of their recent items when the user
    has no interest cluster yet (e.g. only items unknown to the catalog)."""
    if state.clusters:
        return [InterestSummary(label=v.label, weight=round(v.weight, 4)) for v in interests(state, catalog)[:top]]
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
    bot_suspected: bool = False,
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
        bot_suspected=bot_suspected,
    )


@dataclass
class UserUpdate:
    """A touched user after a batch: their state and their fresh list.

    ``forgotten`` means the user's last event of the batch was a ``forget``:
    the state is to be deleted and the list replaced by a tombstone.
    """

    user_id: str
    state: UserState
    trigger: Event
    ranked: list[ScoredItem]
    changed: bool
    forgotten: bool = False
    publish: bool = True  # False: ranking skipped (see ``rank_from``)
    bot_suspected: bool = False  # the guard flagged the user (models.guard)


@dataclass
class BatchStats:
    """What a batch did besides producing lists (for counters and tests)."""

    applied: int = 0
    redelivered: int = 0  # at or below the user's offset watermark
    duplicates: int = 0  # new offset, event id already seen
    expired: int = 0  # states reset because the user was inactive past the TTL
    forgotten: int = 0
    # new events below ``rank_from``: their user's stored state was behind
    # what the commit or a graph snapshot said was durable (lost writes)
    behind_durable: int = 0
    # the bot guard: events past a user's rate (seen only), engagements
    # repeated within the window (not fed to the graph), users newly flagged
    discounted: int = 0
    repeats: int = 0
    flagged: int = 0
    flagged_users: list[str] = field(default_factory=list)
    # live quality: new events with an item looked up in the user's last list
    online: OnlineQuality = field(default_factory=OnlineQuality)
    # the global graph (models.global_graph): this partition's new ops, the
    # other partitions' ops folded into its view, and the events held back
    # because another partition is more than the delay behind
    ops: list[GraphOp] = field(default_factory=list)
    foreign_ops: int = 0
    held: list[tuple[int, Event]] = field(default_factory=list)
    blocked_by: list[int] = field(default_factory=list)
    held_epoch: int = -1  # the epoch of the first held event


def delta_record(partition: int, graph: ItemGraph, ops: list[GraphOp], epochs: EpochParams, held_epoch: int = -1,
                 seen: int = -1) -> DeltaRecord:
    """What the partition publishes after a batch: its new ops and how far
    it is (the epoch of its first held event, when it holds some), and the
    newest event time it has received (``seen``: the caller's running
    maximum, held events included; at least the graph's watermark)."""
    return DeltaRecord(partition, max(epoch_of(graph.watermark, epochs), held_epoch), graph.watermark, graph.last_offset, ops,
                       seen=max(seen, graph.watermark))


def ready_prefix(ordered: Sequence[tuple[int, Event]], graph: ItemGraph, board: DeltaBoard, partition: int) -> tuple[int, int]:
    """How many of ``ordered`` (offset order) the board can serve now, and
    the epoch of the first one it cannot (-1: none). A view that needs ops
    the board has pruned waits for the board to be read again (a partition
    taken over from an older snapshot)."""
    epochs = board.params
    watermark = graph.watermark
    stale = graph.foreign_epoch < board.pruned_upto
    for n, (offset, event) in enumerate(ordered):
        if offset > graph.last_offset:
            watermark = max(watermark, event.ts)
        if event.type is not EventType.TICK and (stale or not board.ready(partition, epoch_of(watermark, epochs))):
            # the partition's events to come are all of this epoch or later:
            # its ops of the epochs before are complete, which lets the
            # partitions that hold it back move (the lowest one never waits)
            return n, epoch_of(watermark, epochs)
    return len(ordered), -1


def process_partition_events(
    events: Sequence[tuple[int, Event]],
    states: MutableMapping[str, UserState],
    graph: ItemGraph,
    catalog: ItemCatalog,
    query_vectors: Mapping[str, np.ndarray],
    k: int,
    *,
    interest: InterestParams = DEFAULT_PARAMS,
    ranking: RankingParams = DEFAULT_RANKING,
    stats: BatchStats | None = None,
    rank_from: int = -1,
    guard: GuardParams = DEFAULT_GUARD,
    board: DeltaBoard | None = None,
    partition: int = 0,
    rank_only: Container[int] | None = None,
) -> list[UserUpdate]:
    """One partition's events of a batch, in offset order: update each user's
    state and the partition's graph, and rank each user right after their last
    event of the batch.

    Ranking at that point (not at the end of the batch) makes every list a
    function of the partition's events up to the trigger only, so lists do not
    depend on where batch boundaries fall and a replay reproduces them.

    Exactly-once effect on at-least-once delivery:

    - an offset at or below the user's watermark was applied before (a
      redelivery after a crash, or a replay) and leaves the state alone;
    - a new offset whose ``event_id`` is among the user's last
      ``interest.dedupe_window`` event ids is a duplicate and changes nothing;
    - the graph keeps a watermark per row, and a redelivered event is fed to
      it with the user's history as it was before that event (history entries
      carry their offsets), so rows persisted before a crash are not counted
      twice and rows that were not are rebuilt exactly.

    ``states`` is updated in place: a ``forget`` or an expired state replaces
    the user's entry with a fresh state. Users whose last event here lies
    below ``rank_from`` and whose events here were all applied before are
    not ranked (``publish=False``): that is the graph's catch-up after a
    crash, events whose lists were published before it. A user with a new
    event there is ranked: no list of that state went out yet.

    ``guard`` (:mod:`models.guard`): events past the user's rate are seen
    only, and a repeated engagement with one item feeds the graph once per
    window. Each new event with an item is first looked up in the user's
    latest list (``stats.online``, :mod:`models.quality`).

    With a ``board``, ``graph`` is partition ``partition``'s view of the
    global graph (:mod:`models.global_graph`): each event first folds in the
    other partitions' ops its epoch may see, and each engagement is recorded
    in ``stats.ops`` for the others. Events from the first one whose epoch
    the board cannot serve yet are not processed: they are left in
    ``stats.held``, to come again in the same order. ``rank_only``: rank a
    user only at these offsets (an offline replay that wants final lists).
    Ticks (``EventType.TICK``) only move the partition's watermark.
    """
    stats = stats if stats is not None else BatchStats()
    ordered = sorted(events, key=lambda pair: pair[0])
    if board is not None:
        cut, held_epoch = ready_prefix(ordered, graph, board, partition)
        if cut < len(ordered):
            stats.held_epoch = held_epoch
            stats.blocked_by = board.blocking(partition, held_epoch)
        ordered, stats.held = ordered[:cut], ordered[cut:]
    last_offset_of = {event.user_id: offset for offset, event in ordered if event.type is not EventType.TICK}
    pending_done: set[str] = set()
    changed: dict[str, bool] = {}
    forgotten: dict[str, bool] = {}
    fresh: set[str] = set()  # users with an event not applied before
    updates: list[UserUpdate] = []
    to_rank: list[tuple[int, RankRequest]] = []  # (position in updates, request)
    for offset, event in ordered:
        new_to_graph = offset > graph.last_offset  # not in this view yet (else its op went out before)
        if board is not None:
            if new_to_graph:
                graph.watermark = max(graph.watermark, event.ts)
            if event.type is not EventType.TICK:
                stats.foreign_ops += catch_up_view(graph, board, partition, epoch_of(graph.watermark, board.params))
        if event.type is EventType.TICK:
            graph.last_offset = max(graph.last_offset, offset)
            continue
        user = event.user_id
        state = states[user]
        if user not in pending_done:
            pending_done.add(user)
            changed[user] = fold_pending(state, catalog.vector, interest) > 0
        if offset <= state.last_offset:
            stats.redelivered += 1
            # Written again all the same: after a kill -9 the worker's local
            # store can hold a state whose changelog record never left the
            # producer (the store write lands first). The event comes again
            # (its offset was not committed), and this write is what puts the
            # state on the changelog, where a recovery or a new owner reads it.
            changed[user] = True
            # Feed the graph what this event fed it the first time: only an
            # event that entered the history did, after the entries before it.
            entry = next((h for h in state.history if h.offset == offset), None)
            if entry is not None and entry.signal > graph.params.min_signal:
                before = [h for h in state.history if h.offset < offset]
                if counts_for_graph(before, entry.item_id, entry.ts, guard):
                    linked = graph.observe([(h.item_id, h.ts, h.signal) for h in before], entry.item_id, entry.ts, offset)
                    if board is not None and new_to_graph:
                        stats.ops.append(GraphOp(offset, epoch_of(graph.watermark, board.params), entry.item_id, entry.ts, *linked))
        elif event.type is EventType.FORGET:
            state = states[user] = UserState(last_offset=offset)
            changed[user] = forgotten[user] = True
            fresh.add(user)
            stats.forgotten += 1
        else:
            id_hash = event_id_hash(event.event_id)
            if interest.ttl_ms and state.last_event_ts and event.ts - state.last_event_ts > interest.ttl_ms:
                state = states[user] = UserState(last_offset=state.last_offset)
                stats.expired += 1
            flagged_before = state.flagged_window
            if state.has_seen(id_hash):
                state.duplicates += 1
                stats.duplicates += 1
            elif not admit(state, event.ts, guard):
                # past the user's rate: seen-filtering only, nothing moves
                if flagged_before < 0 or state.guard_window - flagged_before >= guard.flag_windows:
                    stats.flagged += 1
                    stats.flagged_users.append(user)
                record_seen_only(state, event, offset, interest)
                if interest.dedupe_window > 0:
                    state.remember(id_hash, interest.dedupe_window)
                stats.discounted += 1
                stats.applied += 1
            else:
                if event.item_id is not None:
                    stats.online.observe(state, event.item_id)
                if event.item_id is not None and event_signal(event, interest) > graph.params.min_signal:
                    if counts_for_graph(state.history, event.item_id, event.ts, guard):
                        previous = [(h.item_id, h.ts, h.signal) for h in state.history]
                        linked = graph.observe(previous, event.item_id, event.ts, offset)
                        if board is not None and new_to_graph:
                            stats.ops.append(GraphOp(offset, epoch_of(graph.watermark, board.params), event.item_id, event.ts, *linked))
                    else:
                        stats.repeats += 1
                item_vector = catalog.vector(event.item_id) if event.item_id is not None else None
                query_vector = query_vectors.get(event.text) if event.type is EventType.SEARCH and event.text else None
                apply_event(state, event, item_vector, query_vector, interest, offset=offset)
                if interest.dedupe_window > 0:
                    state.remember(id_hash, interest.dedupe_window)
                stats.applied += 1
            state.last_offset = offset
            changed[user] = True
            forgotten[user] = False
            fresh.add(user)
            if offset < rank_from:
                stats.behind_durable += 1
        graph.last_offset = max(graph.last_offset, offset)
        if offset == last_offset_of[user]:
            if (offset < rank_from and user not in fresh) or (rank_only is not None and offset not in rank_only):
                updates.append(UserUpdate(user, state, event, [], changed[user], forgotten=forgotten.get(user, False), publish=False))
                continue
            if forgotten.get(user):
                updates.append(UserUpdate(user, state, event, [], True, forgotten=True))
                continue
            # the graph and trending parts are read now (later events change
            # the graph); the semantic part depends on the user's state only,
            # which their last event has settled, so every user of the batch
            # shares one matrix product below
            to_rank.append((len(updates), prepare_rank(state, catalog, graph, event.ts, ranking)))
            updates.append(UserUpdate(user, state, event, [], changed[user], bot_suspected=suspected(state, guard)))
    if to_rank and k > 0 and len(catalog):
        lists = rank_requests([request for _, request in to_rank], catalog, k, params=ranking, interest=interest)
        for (position, _), ranked in zip(to_rank, lists):
            updates[position].ranked = ranked
            remember_list(updates[position].state, [s.item_id for s in ranked])
    return updates


def replay_offline(
    by_partition: Mapping[int, Sequence[tuple[int, Event]]],
    partitions: int,
    states: MutableMapping[str, UserState],
    catalog: ItemCatalog,
    query_vectors: Mapping[str, np.ndarray],
    k: int,
    *,
    interest: InterestParams = DEFAULT_PARAMS,
    ranking: RankingParams = DEFAULT_RANKING,
    guard: GuardParams = DEFAULT_GUARD,
    epochs: EpochParams | None = None,
    graphs: MutableMapping[int, ItemGraph] | None = None,
    new_graph: Callable[[], ItemGraph] | None = None,
    final_only: bool = False,
    stats: BatchStats | None = None,
) -> dict[str, UserUpdate]:
    """Every partition's events through :func:`process_partition_events` as
    the workers run them: on views of the global graph when ``epochs`` is
    enabled (the default), else on one graph per partition. Returns each
    user's last update; ``final_only`` ranks a user only at their last event
    (the same final lists, much less work). ``graphs`` receives the views."""
    from models.global_graph import DEFAULT_EPOCHS, replay_partitions

    epochs = epochs if epochs is not None else DEFAULT_EPOCHS
    graphs = graphs if graphs is not None else {}
    for p in by_partition:
        graphs.setdefault(p, ItemGraph() if new_graph is None else new_graph())
    last_by_partition: dict[int, set[int]] | None = None
    if final_only:  # a user's events are all in one partition
        last = {event.user_id: offset for events in by_partition.values() for offset, event in events}
        last_by_partition = {p: {o for o, e in events if last.get(e.user_id) == o} for p, events in by_partition.items()}
    latest: dict[str, UserUpdate] = {}
    total = stats if stats is not None else BatchStats()

    def process(partition: int, events: Sequence[tuple[int, Event]], graph: ItemGraph, board: DeltaBoard | None) -> tuple[int, DeltaRecord | None]:
        batch = BatchStats()
        rank_only = last_by_partition[partition] if last_by_partition is not None else None
        updates = process_partition_events(events, states, graph, catalog, query_vectors, k, interest=interest, ranking=ranking,
                                           stats=batch, guard=guard, board=board, partition=partition, rank_only=rank_only)
        for update in updates:
            if update.publish:
                latest[update.user_id] = update
        total.applied += batch.applied
        total.duplicates += batch.duplicates
        total.foreign_ops += batch.foreign_ops
        taken = len(events) - len(batch.held)
        return taken, (delta_record(partition, graph, batch.ops, board.params, batch.held_epoch) if board is not None else None)

    replay_partitions(by_partition, partitions, graphs, process, epochs)
    return latest
