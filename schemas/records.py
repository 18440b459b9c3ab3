"""Typed records that travel on recstream's topics.

Every structure here is what a producer or consumer in any language sees on the
wire (JSON, UTF-8). The JSON Schema files in ``schemas/jsonschema/`` describe
the same shapes and a test keeps the two in step.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class EventType(str, enum.Enum):
    """What a user did. The order of engagement strength is
    view < click < add_to_cart < purchase; ``rate`` carries its own value.
    ``forget`` is a request to delete everything recstream keeps about the
    user (their state and their list)."""

    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    SEARCH = "search"
    RATE = "rate"
    DISLIKE = "dislike"
    FORGET = "forget"
    # written by recstream itself (key TICK_KEY) to move an idle partition's
    # event-time watermark (models.global_graph); never by producers
    TICK = "tick"


TICK_KEY = "__recstream_tick__"


def tick_event(ts: int) -> "Event":
    """A tick at event time ``ts`` (keyed ``TICK_KEY``, sent to one partition)."""
    return Event(event_id=f"{TICK_KEY}{ts}", user_id=TICK_KEY, type=EventType.TICK, ts=ts)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One clickstream event, keyed by ``user_id`` on the ``events`` topic."""

    event_id: str
    user_id: str
    type: EventType
    ts: int  # epoch ms; decoding also takes integral floats (1700000000000.0)
    item_id: str | None = None
    text: str | None = None
    value: float | None = None
    weight: float | None = None
    context: dict[str, Any] | None = None


class Item(msgspec.Struct, frozen=True, kw_only=True):
    """One catalog entry, keyed by ``item_id`` on the ``items`` topic."""

    item_id: str
    title: str = ""  # required unless deleted (checked in decode_item)
    description: str = ""
    categories: list[str] = msgspec.field(default_factory=list)
    ts: int | None = None
    deleted: bool = False


class RecommendedItem(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a top-k list. ``reason`` says why it is there and
    ``because`` names the item (or query) that caused it, when there is one."""

    item_id: str
    score: float
    reason: str
    because: str | None = None


class InterestSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A human-readable line about one of the user's interests."""

    label: str
    weight: float


class Recommendation(msgspec.Struct, frozen=True, kw_only=True):
    """The latest top-k list of one user, keyed by ``user_id`` on the
    compacted ``recommendations`` topic."""

    user_id: str
    items: list[RecommendedItem]
    interests: list[InterestSummary]
    trigger_event_id: str
    event_ts: int
    generated_at: int
    model_version: str
    # the bot guard flagged this user (events past the rate; see the README,
    # "Abnormal behaviour"): their events no longer move anyone else's lists
    bot_suspected: bool = False


class SourcePosition(msgspec.Struct, frozen=True, kw_only=True):
    """Where a rejected record came from, so an operator can find it again."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None = None


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A record recstream could not use, with the reason.

    ``value_b64`` is the original value, byte for byte (base64), so it can be
    fixed and re-published; ``reason`` is a stable code (see
    :class:`schemas.errors.RejectReason`) and ``detail`` a sentence for humans.
    """

    reason: str
    detail: str
    source: SourcePosition
    value_b64: str
    key_b64: str | None = None
    failed_at: int
