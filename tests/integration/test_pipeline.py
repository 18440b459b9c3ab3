"""End to end over TCP: embedded broker, a real worker process, real topics."""

from __future__ import annotations

import base64

import pytest

from tests.integration.harness import (
    WorkerProcess,
    dead_letters,
    event,
    publish_catalog,
    publish_events,
    publish_json,
    wait_for_catalog,
    wait_for_list,
    wait_until,
)
from tests.topic_catalog import catalog_items, topic_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_700_000_000_000
MINUTE = 60_000


def share_of(record, topic: str) -> float:
    return sum(topic_of(i.item_id) == topic for i in record.items) / max(1, len(record.items))


async def space_reader_list(settings, user: str) -> tuple[object, list[str]]:
    """Publish the catalog and four space items seen by ``user``; their list
    after the fourth must be space items they have not seen."""
    await publish_catalog(settings, catalog_items())
    await wait_for_catalog(settings, len(catalog_items()))
    seen = [f"space-{i}" for i in range(4)]
    await publish_events(settings, [event(user, item, T0 + i * MINUTE) for i, item in enumerate(seen)])
    record = await wait_for_list(settings, user, lambda r: len(r.items) == settings.top_k and r.trigger_event_id.endswith(str(T0 + 3 * MINUTE)))
    ranked = [i.item_id for i in record.items]
    assert all(topic_of(item) == "space" for item in ranked[:6]), ranked
    assert not set(ranked) & set(seen), "seen items must not be recommended"
    return record, seen


async def test_lists_follow_the_users_topic_and_skip_seen_items(settings, worker):
    worker.start()
    first, space_seen = await space_reader_list(settings, "alice")
    assert all(i.reason in {"similar_to", "matches_search", "similar_to_interest"} for i in first.items)
    assert first.interests and first.interests[0].label == "space"

    baking_seen = [f"baking-{i}" for i in range(5)]
    start = T0 + 10 * MINUTE
    await publish_events(settings, [event("alice", item, start + i * MINUTE, "purchase") for i, item in enumerate(baking_seen)])
    moved = await wait_for_list(settings, "alice", lambda r: r.trigger_event_id.endswith(str(start + 4 * MINUTE)))
    assert share_of(moved, "baking") > share_of(first, "baking")
    assert topic_of(moved.items[0].item_id) == "baking", [i.item_id for i in moved.items]
    assert not {i.item_id for i in moved.items} & set(space_seen + baking_seen)


async def test_a_large_catalog_is_ranked_from_ann_candidates(settings, tmp_path):
    """The same behaviour with the catalog over ``ann_min_items`` (lowered to
    20 here): the worker builds the ANN index in a thread and ranks
    candidates; lists still follow the user's topic and skip seen items."""
    settings = settings.model_copy(update={"ann_min_items": 20, "ann_candidates": 10})
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        record, _ = await space_reader_list(settings, "carol")
        await publish_events(settings, [event("carol", None, T0 + 5 * MINUTE, "search", text="football match goals and penalties")])
        steered = await wait_for_list(settings, "carol", lambda r: r.trigger_event_id.endswith(str(T0 + 5 * MINUTE)))
        assert share_of(steered, "football") > share_of(record, "football"), [i.item_id for i in steered.items]
        assert "ANN index of 30 items built" in worker.log_text()
    finally:
        worker.stop()


async def test_search_text_steers_the_list(settings, worker):
    worker.start()
    await publish_catalog(settings, catalog_items())
    await wait_for_catalog(settings, len(catalog_items()))
    await publish_events(settings, [event("bob", None, T0, "search", text="football match goals and penalties")])
    record = await wait_for_list(settings, "bob", lambda r: len(r.items) > 0)
    assert share_of(record, "football") >= 0.8, [i.item_id for i in record.items]
    assert record.items[0].reason == "matches_search"


async def test_malformed_records_go_to_the_dlq_and_valid_ones_around_them_are_processed(settings, worker):
    worker.start()
    await publish_catalog(settings, catalog_items())
    await wait_for_catalog(settings, len(catalog_items()))
    bad_json = b'{"event_id": "x", "user_id": "carol", '
    wrong_type = {"event_id": "e2", "user_id": "carol", "type": "teleport", "item_id": "space-1", "ts": T0}
    seconds_ts = {"event_id": "e3", "user_id": "carol", "type": "click", "item_id": "space-1", "ts": T0 // 1000}
    await publish_json(
        settings,
        "events",
        [
            ("carol", event("carol", "space-1", T0)),
            ("carol", bad_json),
            ("carol", wrong_type),
            ("carol", seconds_ts),
            ("dave", event("carol", "space-2", T0 + 1)),  # keyed by another user
            ("carol", event("carol", "space-3", T0 + 2)),
        ],
    )
    letters = await wait_until(lambda: _at_least(dead_letters(settings), 4), timeout_s=60)
    reasons = {letter.reason for letter in letters}
    assert reasons == {"not_json", "unknown_type", "bad_timestamp", "key_mismatch"}
    by_reason = {letter.reason: letter for letter in letters}
    assert base64.b64decode(by_reason["not_json"].value_b64) == bad_json
    assert by_reason["not_json"].source.topic == settings.topic("events")
    assert "seconds" in by_reason["bad_timestamp"].detail

    record = await wait_for_list(settings, "carol", lambda r: r.trigger_event_id == f"carol-click-space-3-{T0 + 2}")
    assert not {"space-1", "space-3"} & {i.item_id for i in record.items}


async def _at_least(letters_coro, count: int):
    letters = await letters_coro
    return letters if len(letters) >= count else None
