"""Rebuild beside a running app: ``recstream rebuild --app-id NEW``.

A new app id is a new consumer group (it starts at the beginning of
``events``) with new tables and changelogs, so it rebuilds every user's state
and every partition's graph from the log while the old app keeps serving.
Its lists are *held* until it has caught up: until its group has committed,
on every partition of ``events``, the end offset the partition had when the
worker started. Until then the lists go nowhere, or to a separate topic
(``held_lists_topic``); from then on to ``recommendations``, and the worker
is a normal worker. :class:`CatchUpGate` makes that decision; the events
agent only asks it where lists go now.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable

from streams.kafka import topics
from streams.kafka.clients import end_offsets, partition_offsets
from streams.settings import Settings

log = logging.getLogger(__name__)

CAUGHT_UP_LINE = "caught up; safe to switch"


class RebuildError(RuntimeError):
    """A rebuild cannot start as asked (same app id as the app it replaces)."""


def old_app_resources(settings: Settings, old_app_id: str) -> list[str]:
    """Topics the old app leaves behind once it is retired: its table
    changelogs, its graph deltas and Faust's assignor topic (its consumer
    group goes too)."""
    return topics.changelog_topics(settings, old_app_id) + [topics.graph_deltas_topic(settings, old_app_id), f"{old_app_id}-__assignor-__leader"]


def default_old_app_id(settings: Settings) -> str:
    """The app a rebuild replaces, unless named: ``RECSTREAM_APP_ID`` from
    the environment (the flag ``--app-id`` names the new one), else the
    default app id."""
    return os.environ.get("RECSTREAM_APP_ID") or Settings.model_fields["app_id"].default


def rebuild_settings(settings: Settings, old_app_id: str, output_topic: str | None) -> Settings:
    """The worker settings of a rebuild: ``settings`` (whose ``app_id`` is the
    new app) with lists held until caught up, optionally sent to ``output_topic``."""
    if settings.app_id == old_app_id:
        raise RebuildError(
            f"--app-id {settings.app_id} is the app being replaced; a rebuild needs a new app id "
            f"(a new consumer group and new tables), e.g. --app-id {old_app_id}-v2"
        )
    from streams.settings import load_settings

    fields = {name: getattr(settings, name) for name in Settings.model_fields}
    fields.update(hold_lists_until_caught_up=True, held_lists_topic=output_topic or settings.held_lists_topic)
    return load_settings(**fields)


class CatchUpGate:
    """Where lists go: held (``None`` or the held-lists topic) until the
    app's group has committed the end offsets ``events`` had at the first
    check, then ``recommendations`` for good.

    Committed offsets are the group's, so with several rebuild workers each
    switches once the whole group has caught up. A worker restarted before
    catching up holds again, against the end offsets at its new start.
    """

    def __init__(self, settings: Settings, live: Any, held: Any = None, on_caught_up: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.live = live
        self.held = held
        self.caught_up = not settings.hold_lists_until_caught_up
        self.targets: dict[int, int] | None = None
        self._catalog_loaded = False
        self._on_caught_up = on_caught_up

    async def catalog_loaded(self, poll_s: float = 0.5) -> None:
        """Return once the group has committed, on ``items``, the end offset
        ``items`` had at the first call (at once when not rebuilding).

        A rebuild's item table is new and empty: events taken before their
        items are encoded would be ranked without those items' vectors, and
        the rebuilt lists would differ from the old app's.
        """
        if self._catalog_loaded or not self.settings.hold_lists_until_caught_up:
            return
        items = self.settings.topic(topics.ITEMS)
        target = await end_offsets(self.settings, items, wait_s=5.0)
        log.info("rebuild: events wait until the catalog is loaded (%s %s)", items, _offsets(target))
        while True:
            committed = {p.partition: p.committed or 0 for p in await partition_offsets(self.settings, items, self.settings.app_id, wait_s=5.0)}
            if all(committed.get(p, 0) >= end for p, end in target.items()):
                break
            await asyncio.sleep(poll_s)
        self._catalog_loaded = True
        log.info("rebuild: catalog loaded; processing events")

    def topic(self) -> Any:
        """The topic lists go to now (``None``: held and dropped)."""
        return self.live if self.caught_up else self.held

    async def check(self) -> bool:
        """Compare the group's committed offsets with the targets; switch
        (and log :data:`CAUGHT_UP_LINE`) once every partition reached its."""
        if self.caught_up:
            return True
        events = self.settings.topic(topics.EVENTS)
        if self.targets is None:
            self.targets = await end_offsets(self.settings, events, wait_s=5.0)
            if not self.targets:
                self.targets = None
                return False
            log.info("rebuild: holding lists until group %s has committed %s on %s (%d events)",
                     self.settings.app_id, _offsets(self.targets), events, sum(self.targets.values()))
        committed = {p.partition: p.committed or 0 for p in await partition_offsets(self.settings, events, self.settings.app_id, wait_s=5.0)}
        behind = {p: target - committed.get(p, 0) for p, target in self.targets.items() if committed.get(p, 0) < target}
        if behind:
            log.info("rebuild: %d events to go before switching (%s)", sum(behind.values()), _offsets(behind))
            return False
        self.caught_up = True
        line = (f"{CAUGHT_UP_LINE}: app {self.settings.app_id} has applied {events} up to {_offsets(self.targets)}; "
                f"its lists now go to {self.settings.topic(topics.RECOMMENDATIONS)}")
        log.warning(line)  # warning: shown at every log level but error
        if self._on_caught_up is not None:
            self._on_caught_up(line)
        return True


def _offsets(by_partition: dict[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(by_partition.items()))
