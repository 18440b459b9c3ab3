"""State survives a restart: the worker rebuilds its tables from changelogs.

This is the proof that batching with ``take_events`` keeps changelog writes
correct (faust-streaming issue 497): every state write goes to the changelog
partition of the user's events, so a worker with an empty disk recovers
exactly the state it had.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from models.catalog import ItemCatalog, apply_stored_item
from models.graph import ItemGraph
from models.interest import InterestParams, UserState, decode_state
from models.recommend import replay_offline
from schemas import EventType, decode_event
from streams.app import epoch_params
from streams.kafka import topics
from streams.kafka.clients import read_records_to_end, read_to_end
from tests.integration.harness import event, publish_catalog, publish_events, wait_for_catalog, wait_for_list
from tests.topic_catalog import catalog_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_700_000_000_000
MINUTE = 60_000
USERS = {
    "u1": ["space-0", "space-1", "space-2", "baking-0"],
    "u2": ["baking-1", "baking-2", "baking-3", "baking-4", "baking-5"],
    "u3": ["football-0", "football-1", "space-3"],
    "u4": ["football-2", "football-3", "football-4"],
}
AFTER_RESTART = {"u1": "space-4", "u2": "baking-6", "u3": "football-5", "u4": "football-6"}


async def changelog_states(settings) -> dict[str, UserState]:
    changelog = topics.changelog_topic(settings, topics.USER_STATE_TABLE)
    states: dict[str, UserState] = {}
    async for key, value in read_to_end(settings, changelog):
        states[key.decode()] = decode_state(value)
    return states


async def catalog_from_changelog(settings) -> ItemCatalog:
    catalog = ItemCatalog()
    async for key, value in read_to_end(settings, topics.changelog_topic(settings, topics.ITEM_VECTORS_TABLE)):
        apply_stored_item(catalog, key.decode(), value)
    return catalog


def all_events() -> list[dict]:
    before = [event(user, item, T0 + i * MINUTE) for user, items in USERS.items() for i, item in enumerate(items)]
    after = [event(user, item, T0 + 60 * MINUTE) for user, item in AFTER_RESTART.items()]
    return before + after


async def test_worker_with_lost_disk_recovers_state_from_changelog(settings, worker):
    worker.start()
    await publish_catalog(settings, catalog_items())
    await wait_for_catalog(settings, len(catalog_items()))
    events = all_events()
    before, after = events[: -len(AFTER_RESTART)], events[-len(AFTER_RESTART):]
    await publish_events(settings, before)
    for user, items in USERS.items():
        last_ts = T0 + (len(items) - 1) * MINUTE
        await wait_for_list(settings, user, lambda r, ts=last_ts: r.event_ts == ts)

    worker.stop()
    shutil.rmtree(settings.data_dir / "faust")  # the disk is gone
    worker.start()
    await publish_events(settings, after)
    lists = {}
    for user in USERS:
        lists[user] = await wait_for_list(settings, user, lambda r: r.event_ts == T0 + 60 * MINUTE)

    states = await changelog_states(settings)
    for user, items in USERS.items():
        state = states[user]
        assert state.event_count == len(items) + 1, f"{user}: state was not recovered before the new event"
        assert [h.item_id for h in state.history] == items + [AFTER_RESTART[user]]
        seen = set(items) | {AFTER_RESTART[user]}
        assert not seen & {i.item_id for i in lists[user].items}, f"{user} was shown an item seen before the restart"

    # The events as the worker saw them (partition, offset), replayed offline
    # through the same models code, give the same lists: recovery lost
    # nothing and applied nothing twice.
    run = await offline_run(settings)
    offline_lists = {user: [item for item, _ in listed] for user, listed in run.lists.items()}
    for user in USERS:
        assert offline_lists[user] == [i.item_id for i in lists[user].items], user


async def events_by_partition(settings) -> dict[int, list]:
    out: dict[int, list] = defaultdict(list)
    async for record in read_records_to_end(settings, settings.topic(topics.EVENTS)):
        out[record.partition].append((record.offset, decode_event(record.value)))
    return out


@dataclass
class OfflineRun:
    """The run without kills: the topic's events, partition by partition,
    through the same models code the worker runs."""

    states: defaultdict[str, UserState] = field(default_factory=lambda: defaultdict(UserState))
    lists: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    triggers: dict[str, str] = field(default_factory=dict)  # user -> event id of their last list
    partition_of: dict[str, int] = field(default_factory=dict)
    graphs: dict[int, ItemGraph] = field(default_factory=dict)


async def offline_run(settings, by_partition: dict[int, list] | None = None) -> OfflineRun:
    """The topic's events (or ``by_partition``) replayed as the workers run
    them: on each partition's view of the global graph (ticks included)."""
    catalog = await catalog_from_changelog(settings)
    params = InterestParams(dedupe_window=settings.dedupe_window)
    run = OfflineRun()
    by_partition = by_partition if by_partition is not None else await events_by_partition(settings)
    epochs = epoch_params(settings)
    latest = replay_offline(by_partition, settings.partitions, run.states, catalog, {}, settings.top_k, interest=params,
                            epochs=epochs, graphs=run.graphs)
    for partition, entries in by_partition.items():
        for _, record in entries:
            if record.type is not EventType.TICK:
                run.partition_of[record.user_id] = partition
    for user, update in latest.items():
        run.lists[user] = [(s.item_id, s.score) for s in update.ranked]
        run.triggers[user] = update.trigger.event_id
    return run
