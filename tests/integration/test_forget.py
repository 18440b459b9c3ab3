"""``recstream forget USER``: the user's state leaves every table and a
tombstone replaces their list on the compacted recommendations topic."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streams.kafka import topics
from streams.kafka.clients import read_to_end
from streams.ops.demo import latest_lists
from streams.settings import settings_env
from tests.integration.harness import event, publish_catalog, publish_events, wait_for_catalog, wait_for_list, wait_until
from tests.topic_catalog import catalog_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_700_000_000_000


async def last_values(settings, topic: str) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    async for key, value in read_to_end(settings, topic):
        if key is not None:
            out[key.decode()] = value
    return out


async def test_forget_removes_state_and_tombstones_the_list(settings, worker):
    worker.start()
    await publish_catalog(settings, catalog_items())
    await wait_for_catalog(settings, len(catalog_items()))
    await publish_events(settings, [event("alice", "space-0", T0), event("alice", "space-1", T0 + 1), event("bob", "baking-0", T0 + 2)])
    await wait_for_list(settings, "alice", lambda r: r.event_ts == T0 + 1)
    await wait_for_list(settings, "bob", lambda r: r.event_ts == T0 + 2)
    changelog = topics.changelog_topic(settings, topics.USER_STATE_TABLE)
    assert (await last_values(settings, changelog)).get("alice")

    # the command, as an operator runs it
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "forget", "alice"],
        env={**os.environ, **settings_env(settings)}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "forget requested for alice" in result.stdout

    async def tombstoned() -> bool:
        lists = await last_values(settings, settings.topic(topics.RECOMMENDATIONS))
        return "alice" in lists and lists["alice"] is None

    await wait_until(tombstoned, timeout_s=60)
    states = await last_values(settings, changelog)
    assert "alice" in states and states["alice"] is None, "the user-state changelog must end with a tombstone"
    assert states.get("bob"), "other users keep their state"
    assert "alice" not in await latest_lists(settings) and "bob" in await latest_lists(settings)

    # coming back later starts from nothing
    await publish_events(settings, [event("alice", "football-0", T0 + 10)])
    fresh = await wait_for_list(settings, "alice", lambda r: r.event_ts == T0 + 10)
    assert fresh.items
    from models.interest import decode_state

    state = decode_state((await last_values(settings, changelog))["alice"])
    assert state.event_count == 1 and [h.item_id for h in state.history] == ["football-0"]


async def test_ttl_sweep_expires_inactive_users_and_tombstones_their_lists(broker, settings, tmp_path):
    """``state_ttl_hours``: once the partition's event time passes a user's
    last event by the TTL, the sweep deletes the user's state and replaces
    their list with a tombstone; users inside the TTL keep both."""
    from tests.integration.harness import WorkerProcess

    hour = 3600 * 1000
    # one partition, so one event time drives the sweep for all three users
    settings = settings.model_copy(update={"partitions": 1, "state_ttl_hours": 1.0})
    worker = WorkerProcess(settings, tmp_path / "ttl-worker.log")
    try:
        worker.start()
        await publish_catalog(settings, catalog_items())
        await wait_for_catalog(settings, len(catalog_items()))
        minute = hour // 60
        await publish_events(settings, [event("alice", "space-0", T0), event("bob", "baking-0", T0 + 50 * minute)])
        await wait_for_list(settings, "alice", lambda r: r.event_ts == T0)
        await wait_for_list(settings, "bob", lambda r: r.event_ts == T0 + 50 * minute)

        # at 1 h 30 min: alice (idle 90 min) is past the TTL, bob (idle 40 min) is not
        await publish_events(settings, [event("carol", "football-0", T0 + 90 * minute)])
        await wait_for_list(settings, "carol", lambda r: r.event_ts == T0 + 90 * minute)

        async def alice_tombstoned() -> bool:
            lists = await last_values(settings, settings.topic(topics.RECOMMENDATIONS))
            return "alice" in lists and lists["alice"] is None

        await wait_until(alice_tombstoned, timeout_s=60)
        states = await last_values(settings, topics.changelog_topic(settings, topics.USER_STATE_TABLE))
        assert "alice" in states and states["alice"] is None, "the expired state must be deleted (changelog tombstone)"
        assert states.get("bob") and states.get("carol")
        assert set(await latest_lists(settings)) == {"bob", "carol"}
    finally:
        worker.stop()
