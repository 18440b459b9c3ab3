"""The bot guard and the live quality lookup, at the models level."""

from __future__ import annotations

import random

import numpy as np

from models.graph import ItemGraph
from models.guard import GuardParams, admit, counts_for_graph, suspected
from models.interest import HistoryEntry, InterestParams, UserState, decode_state, encode_state
from models.quality import OnlineQuality, rank_in_last_list, remember_list
from models.recommend import BatchStats, process_partition_events
from schemas import Event, EventType
from tests.test_exactly_once import QUERIES, make_catalog

T0 = 1_699_999_980_000  # on a minute boundary
MINUTE = 60_000
GUARD = GuardParams(max_events=60, flag_windows=60, repeat_window_ms=60 * MINUTE)
PARAMS = InterestParams(dedupe_window=16)


def click(user: str, item: str, ts: int, n: int) -> Event:
    return Event(event_id=f"{user}-{n}", user_id=user, type=EventType.CLICK, ts=ts, item_id=item)


def test_events_past_the_rate_of_an_event_time_minute_are_refused_and_flag_the_user():
    state = UserState()
    verdicts = [admit(state, T0 + n * 100, GUARD) for n in range(100)]  # 100 events in 10 s
    assert verdicts == [True] * 60 + [False] * 40
    assert state.discounted == 40 and suspected(state, GUARD)
    # the next minute starts afresh; the flag stays for flag_windows minutes
    assert admit(state, T0 + MINUTE, GUARD) and suspected(state, GUARD)
    admit(state, T0 + 61 * MINUTE, GUARD)
    assert not suspected(state, GUARD)
    # a late event counts in the user's current window
    assert admit(state, T0, GUARD) and state.guard_count == 2
    # and the guard's counters survive the store
    assert decode_state(encode_state(state)).guard_window == state.guard_window


def test_a_repeated_item_counts_once_per_window():
    history = [HistoryEntry("a", T0, 0.6), HistoryEntry("b", T0 + 1, 0.0)]
    assert not counts_for_graph(history, "a", T0 + 10, GUARD)
    assert counts_for_graph(history, "b", T0 + 10, GUARD)  # seen only: it never counted
    assert counts_for_graph(history, "a", T0 + 60 * MINUTE, GUARD)  # next window
    assert counts_for_graph(history, "a", T0 + 10, GuardParams(repeat_window_ms=0))


def run(stream: list[Event], batch: int, guard: GuardParams = GUARD) -> tuple[dict, ItemGraph, BatchStats, dict]:
    catalog = make_catalog()
    graph = ItemGraph()
    stored: dict[str, bytes] = {}
    stats = BatchStats()
    lists: dict = {}
    offsets = list(enumerate(stream))
    for start in range(0, len(offsets), batch):
        piece = offsets[start : start + batch]
        states = {e.user_id: decode_state(stored.get(e.user_id)) for _, e in piece}
        for u in process_partition_events(piece, states, graph, catalog, QUERIES, 5, interest=PARAMS, stats=stats, guard=guard):
            stored[u.user_id] = encode_state(u.state)
            lists[u.user_id] = ([s.item_id for s in u.ranked], u.bot_suspected)
    return stored, graph, stats, lists


def ordinary_stream(seed: int = 3, n: int = 300, users: int = 12) -> list[Event]:
    rng = random.Random(seed)
    return [click(f"u{rng.randrange(users)}", f"i{rng.randrange(1, 24)}", T0 + k * 30_000, k) for k in range(n)]


def with_bot(stream: list[Event], clicks: int = 2_000, item: str = "i0") -> list[Event]:
    """The bot clicks ``item`` ``clicks`` times over the stream's two first minutes."""
    bot = [click("bot", item, T0 + k * 120_000 // clicks, k) for k in range(clicks)]
    return sorted(stream + bot, key=lambda e: (e.ts, e.user_id))


def test_a_bot_moves_the_graph_and_trending_like_one_ordinary_click():
    stream = ordinary_stream()
    _, clean_graph, clean_stats, _ = run(stream, 50)
    _, bot_graph, stats, lists = run(with_bot(stream), 50)
    # 2,000 clicks in 2 minutes: 60 a minute count for the bot's own interests,
    # one in the window for the graph and trending; the rest are seen only
    assert stats.discounted == 2_000 - 120 and stats.repeats - clean_stats.repeats == 119
    assert stats.flagged == 1 and stats.flagged_users == ["bot"]
    at = T0 + 300 * 30_000
    ids, weights = clean_graph.trending(at)
    bot_ids, bot_weights = bot_graph.trending(at)
    clean_pop = dict(zip(ids, weights.tolist()))
    bot_pop = dict(zip(bot_ids, bot_weights.tolist()))
    assert abs(bot_pop["i0"] - clean_pop.get("i0", 0.0) - 0.5 ** ((at - T0) / clean_graph.params.pop_half_life_ms)) < 1e-6
    assert {i: w for i, w in bot_pop.items() if i != "i0"} == {i: w for i, w in clean_pop.items() if i != "i0"}
    # the bot is flagged on its list, and never gets the item it clicked
    items, flagged = lists["bot"]
    assert flagged and "i0" not in items
    assert not any(flag for user, (_, flag) in lists.items() if user != "bot")


def test_past_the_rate_events_fill_the_history_with_no_signal():
    stored, _, _, _ = run([click("bot", f"i{k % 70}", T0 + k, k) for k in range(90)], 90)
    state = decode_state(stored["bot"])
    # 60 admitted (i0..i59), then i60..i69 seen only, then i0..i9 again: already seen
    assert [h.signal > 0 for h in state.history].count(False) == 10
    assert state.seen_items() == {f"i{k}" for k in range(70)}


def test_the_guard_is_a_function_of_the_events_not_of_batches_or_replays():
    stream = with_bot(ordinary_stream(n=200), clicks=500, item="i3")
    reference_states, reference_graph, _, _ = run(stream, len(stream))
    for size in (1, 7, 64):
        states, graph, _, _ = run(stream, size)
        assert {u: decode_state(b).discounted for u, b in states.items()} == {u: decode_state(b).discounted for u, b in reference_states.items()}
        assert {i: graph.row(i) for i in graph.dirty | reference_graph.dirty} == {i: reference_graph.row(i) for i in graph.dirty | reference_graph.dirty}
    # a redelivery of the whole stream (after a crash) changes no graph row
    states = {u: decode_state(b) for u, b in reference_states.items()}
    before = {i: reference_graph.row(i) for i in reference_graph.dirty}
    process_partition_events(list(enumerate(stream)), states, reference_graph, make_catalog(), QUERIES, 5, interest=PARAMS, guard=GUARD)
    assert {i: reference_graph.row(i) for i in before} == before


def test_a_graph_replayed_from_the_history_skips_what_the_live_graph_skipped():
    # a crash after a graph snapshot at offset S: the events after S are
    # replayed into the snapshot with the users' later states (redelivery);
    # the repeat and rate rules must skip exactly what they skipped live
    stream = with_bot(ordinary_stream(n=120), clicks=240, item="i5")
    split = len(stream) - 24  # within the offsets a history keeps (tracked_offsets)
    catalog = make_catalog()
    live = ItemGraph()
    states: dict[str, UserState] = {}
    head = list(enumerate(stream))[:split]
    tail = list(enumerate(stream))[split:]
    for user in {e.user_id for e in stream}:
        states[user] = UserState()
    process_partition_events(head, states, live, catalog, QUERIES, 5, interest=PARAMS, guard=GUARD)
    snapshot = ItemGraph()
    for item_id, row in live.take_dirty():
        snapshot.load_row(item_id, row)
    process_partition_events(tail, states, live, catalog, QUERIES, 5, interest=PARAMS, guard=GUARD)
    final = {u: decode_state(encode_state(s)) for u, s in states.items()}
    process_partition_events(tail, final, snapshot, catalog, QUERIES, 5, interest=PARAMS, guard=GUARD)
    rows = set(live.dirty) | set(snapshot.dirty)
    assert rows and {i: live.row(i) for i in rows} == {i: snapshot.row(i) for i in rows}


def test_online_quality_looks_the_item_up_in_the_last_list():
    state = UserState()
    quality = OnlineQuality()
    quality.observe(state, "x")  # no list yet: nothing predicted, nothing counted
    assert quality.events == 0
    remember_list(state, [f"i{n}" for n in range(12)])
    assert rank_in_last_list(state, "i0") == 0 and rank_in_last_list(state, "i9") == 9
    assert rank_in_last_list(state, "i10") is None  # the first ten are kept
    for item in ("i0", "i3", "i7", "nope"):
        quality.observe(state, item)
    assert quality.events == 4 and quality.hits == {1: 1, 5: 2, 10: 3}
    assert quality.hit_rate(10) == 0.75
    assert len(np.frombuffer(state.last_list, dtype=np.uint32)) == 10


def test_a_stream_counts_online_hits_before_folding():
    catalog_stream = [click("u", f"i{k}", T0 + k * MINUTE, k) for k in range(4)]
    _, _, stats, lists = run(catalog_stream, 1)
    # from the second event on, each was looked up in the list the previous one left
    assert stats.online.events == 3
    first_list = run(catalog_stream[:1], 1)[3]["u"][0]
    _, _, stats, _ = run(catalog_stream[:1] + [click("u", first_list[0], T0 + MINUTE, 9)], 1)
    assert stats.online.events == 1 and stats.online.hits[1] == 1
