"""``recstream rebuild --app-id NEW`` beside a running app: the new app
rebuilds from the start of ``events``, publishes nothing to
``recommendations`` until it has caught up (its lists meanwhile go to
``--output-topic``), says so, and then serves like a normal worker; its
lists equal the old app's and the offline replay of the same events.
"""

from __future__ import annotations

import time

import pytest

from streams.kafka import topics
from streams.kafka.clients import end_offsets, group_lag
from streams.ops.demo import latest_lists
from streams.ops.rebuild import CAUGHT_UP_LINE
from tests.integration.harness import WorkerProcess, publish_catalog, publish_events, wait_for_catalog, wait_until
from tests.integration.test_crash import clickstream
from tests.integration.test_recovery import offline_run
from tests.topic_catalog import large_catalog_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEFORE, AFTER = 1_500, 300  # events before the rebuild starts / after the switch


def scores(lists) -> dict[str, list[tuple[str, float]]]:
    return {user: [(i.item_id, i.score) for i in rec.items] for user, rec in lists.items()}


async def wait_committed(settings, app_id: str, count: int, timeout_s: float = 300.0) -> None:
    async def reached() -> bool:
        # and no lag: ticks (the global graph's) take offsets of `events` too
        lag = await group_lag(settings, app_id, settings.topic(topics.EVENTS))
        return lag.committed >= count and lag.lag == 0

    await wait_until(reached, timeout_s=timeout_s, interval_s=0.5)


async def test_rebuild_holds_lists_until_caught_up_then_serves(settings, worker, tmp_path):
    new_app = f"{settings.app_id}-v2"
    held_topic = f"{settings.topic_prefix}held-lists"
    rebuild = WorkerProcess(
        settings,
        tmp_path / "rebuild.log",
        args=("rebuild", "--app-id", new_app, "--output-topic", held_topic, "--data-dir", str(tmp_path / "v2")),
    )
    try:
        await _run(settings, worker, rebuild, new_app, held_topic)
    finally:
        rebuild.stop()


async def _run(settings, old: WorkerProcess, rebuild: WorkerProcess, new_app: str, held_topic: str) -> None:
    catalog_items = large_catalog_items(20)
    stream = clickstream(events=BEFORE + AFTER, users=120)
    old.start()
    await publish_catalog(settings, catalog_items)
    await wait_for_catalog(settings, len(catalog_items))
    await publish_events(settings, stream[:BEFORE])
    await wait_committed(settings, settings.app_id, BEFORE)
    time.sleep(2.0)  # the last lists leave the producer before the commit
    old_lists = scores(await latest_lists(settings))
    recommendations = settings.topic(topics.RECOMMENDATIONS)
    published_before = sum((await end_offsets(settings, recommendations)).values())

    # the old app keeps running; the rebuild starts beside it
    rebuild.start()

    async def caught_up() -> bool:
        return CAUGHT_UP_LINE in rebuild.log_text()

    await wait_until(caught_up, timeout_s=300)
    log = rebuild.log_text()
    assert f"beside {settings.app_id}" in log
    assert f"{settings.app_id}-user-state-changelog" in log  # the clean-up list names the old changelogs
    assert (await group_lag(settings, new_app, settings.topic(topics.EVENTS))).committed >= BEFORE
    # nothing reached recommendations while the rebuild caught up (the old
    # app had no new events either, so the topic did not move at all)
    assert sum((await end_offsets(settings, recommendations)).values()) == published_before
    # the rebuilt lists, held on the output topic, equal the old app's
    held = scores(await latest_lists(settings, held_topic))
    held_count = sum((await end_offsets(settings, held_topic)).values())
    assert held == old_lists

    # switch: stop the old app; new events are served by the rebuilt app alone
    old.stop()
    await publish_events(settings, stream[BEFORE:])
    await wait_committed(settings, new_app, BEFORE + AFTER)
    time.sleep(2.0)
    after = await latest_lists(settings)
    last_ts: dict[str, int] = {}
    for record in stream:
        last_ts[record["user_id"]] = max(last_ts.get(record["user_id"], 0), record["ts"])
    stale = [u for u, ts in last_ts.items() if after[u].event_ts != ts]
    assert not stale, f"users without a list for their latest event after the switch: {stale[:5]}"
    assert sum((await end_offsets(settings, held_topic)).values()) == held_count, "lists after the switch go to recommendations only"
    assert scores(after) == await offline_lists(settings)
    assert rebuild.log_text().count(CAUGHT_UP_LINE) == 1


async def offline_lists(settings) -> dict[str, list[tuple[str, float]]]:
    return (await offline_run(settings)).lists
