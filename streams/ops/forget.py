"""``recstream forget USER``: ask the worker to delete everything it keeps
about a user.

The request travels as a ``forget`` event on ``events``, keyed by the user,
so it is ordered with the user's other events and handled by the worker that
owns the user's partition: the state is deleted from the user-state table
(a tombstone on its changelog) and a tombstone replaces the user's list on
the compacted ``recommendations`` topic.
"""

from __future__ import annotations

import time
import uuid

import orjson

from schemas import EventType, decode_event
from streams.kafka.admin import ensure_topics
from streams.kafka.clients import publish
from streams.settings import Settings
from streams.kafka.topics import EVENTS


def forget_request(user_id: str, now_ms: int | None = None) -> dict:
    """The ``forget`` event for ``user_id`` (validated like any event)."""
    record = {
        "event_id": f"forget-{uuid.uuid4().hex}",
        "user_id": user_id,
        "type": EventType.FORGET.value,
        "ts": now_ms if now_ms is not None else int(time.time() * 1000),
    }
    decode_event(orjson.dumps(record), key=user_id.encode())  # raises InvalidRecord
    return record


async def forget_users(settings: Settings, user_ids: list[str]) -> list[dict]:
    """Publish one ``forget`` event per user; returns the events sent."""
    requests = [forget_request(user) for user in user_ids]
    await ensure_topics(settings)
    await publish(settings, settings.topic(EVENTS), [(r["user_id"].encode(), orjson.dumps(r)) for r in requests])
    return requests
