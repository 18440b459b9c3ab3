"""Decode and validate raw topic bytes into typed records.

msgspec does the structural work (JSON syntax, field types, enums) in one C
pass; the rules that JSON types cannot say (an item unless searching, epoch
milliseconds, size limits) are checked here, each with its own reason code.
"""

from __future__ import annotations

import math

import msgspec

from schemas.errors import InvalidRecord, RejectReason
from schemas.records import TICK_KEY, Event, EventType, Item

# Epoch-millisecond bounds. The lower one catches the commonest producer bug,
# seconds sent where milliseconds are expected (1e9-ish values).
MIN_TS_MS = 100_000_000_000  # 1973-03-03
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01
MAX_ID_CHARS = 256
MAX_RATING = 5.0
MAX_WEIGHT = 100.0


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Size limits that protect the worker from oversized input."""

    max_record_bytes: int = 65_536
    max_text_chars: int = 2_000


DEFAULT_LIMITS = Limits()

# What producers may send: every type but the workers' own ``tick`` (the
# public JSON Schema lists these only)
PRODUCER_TYPES = tuple(t for t in EventType if t is not EventType.TICK)
_PRODUCER_TYPE_LIST = ", ".join(t.value for t in PRODUCER_TYPES)
# the unknown_type detail of a tick a producer sent
TICK_IS_INTERNAL = (
    f"type `tick` is internal to recstream (the workers' own watermark records); producers send one of: {_PRODUCER_TYPE_LIST} - at `$.type`"
)

class _WireEvent(Event, frozen=True, kw_only=True):
    # JSON has one number type: JSON Schema calls 1700000000000.0 an integer,
    # and some JSON encoders write integral floats that way. Accept them here
    # and convert; fractional milliseconds are rejected in _check_event.
    ts: int | float


_event_decoder = msgspec.json.Decoder(_WireEvent)
_item_decoder = msgspec.json.Decoder(Item)


def decode_event(value: bytes | None, key: bytes | None = None, limits: Limits = DEFAULT_LIMITS) -> Event:
    """Decode one ``events`` record; raise :class:`InvalidRecord` if unusable.

    When ``key`` is given it must equal the event's ``user_id``: a user's state
    lives in the partition of its key, so a mis-keyed event would split it.
    """
    wire = _decode(value, _event_decoder, limits)
    if isinstance(wire.ts, float) and not (math.isfinite(wire.ts) and wire.ts.is_integer()):
        raise InvalidRecord(RejectReason.BAD_TIMESTAMP, "ts must be a whole number of epoch milliseconds")
    event = Event(**{f: getattr(wire, f) for f in Event.__struct_fields__ if f != "ts"}, ts=int(wire.ts))
    _check_event(event, limits)
    if key is not None and key != event.user_id.encode():
        raise InvalidRecord(
            RejectReason.KEY_MISMATCH,
            "record key must equal user_id (events are partitioned by user)",
        )
    return event


def decode_item(value: bytes | None, key: bytes | None = None, limits: Limits = DEFAULT_LIMITS) -> Item:
    """Decode one ``items`` record. A null value (Kafka tombstone) with a key
    deletes that item, as on any compacted topic."""
    if value is None and key:
        try:
            item_id = key.decode()
        except UnicodeDecodeError as exc:
            raise InvalidRecord(RejectReason.INVALID_UTF8, "tombstone key is not UTF-8") from exc
        _check_id("item_id", item_id)
        return Item(item_id=item_id, title="", deleted=True)
    item = _decode(value, _item_decoder, limits)
    _check_id("item_id", item.item_id)
    if not item.deleted and not item.title.strip():
        raise InvalidRecord(RejectReason.INVALID_FIELD, "title must be non-empty unless deleted - at `$.title`")
    text_chars = len(item.title) + len(item.description) + sum(len(c) for c in item.categories)
    if text_chars > limits.max_text_chars:
        raise InvalidRecord(
            RejectReason.TOO_LARGE,
            f"item text has {text_chars} characters, limit is {limits.max_text_chars}",
        )
    if item.ts is not None:
        _check_ts(item.ts)
    if key is not None and key != item.item_id.encode():
        raise InvalidRecord(RejectReason.KEY_MISMATCH, "record key must equal item_id")
    return item


def _decode(value: bytes | None, decoder: msgspec.json.Decoder, limits: Limits):
    if not value:
        raise InvalidRecord(RejectReason.EMPTY, "record value is empty")
    if len(value) > limits.max_record_bytes:
        raise InvalidRecord(
            RejectReason.TOO_LARGE,
            f"record is {len(value)} bytes, limit is {limits.max_record_bytes}",
        )
    try:
        return decoder.decode(value)
    except UnicodeDecodeError as exc:
        raise InvalidRecord(RejectReason.INVALID_UTF8, f"value is not valid UTF-8 ({exc.reason})") from exc
    except msgspec.ValidationError as exc:
        message = str(exc)
        if message.startswith("Invalid enum value") and "$.type" in message:
            raise InvalidRecord(RejectReason.UNKNOWN_TYPE, f"type must be one of: {_PRODUCER_TYPE_LIST}") from exc
        raise InvalidRecord(RejectReason.INVALID_FIELD, message) from exc
    except msgspec.DecodeError as exc:
        raise InvalidRecord(RejectReason.NOT_JSON, f"value is not a JSON object: {exc}") from exc


def _check_event(event: Event, limits: Limits) -> None:
    _check_id("event_id", event.event_id)
    _check_id("user_id", event.user_id)
    if event.item_id is not None:
        _check_id("item_id", event.item_id)
    _check_ts(event.ts)
    if event.type is EventType.TICK:
        if event.user_id != TICK_KEY:
            # to a producer, tick is no type at all (the public schema omits it)
            raise InvalidRecord(RejectReason.UNKNOWN_TYPE, TICK_IS_INTERNAL)
        return
    if event.user_id == TICK_KEY:
        raise InvalidRecord(RejectReason.INVALID_FIELD, f"user_id {TICK_KEY!r} is reserved for recstream's internal tick records - at `$.user_id`")
    if event.type is EventType.SEARCH:
        if not event.text or not event.text.strip():
            raise InvalidRecord(RejectReason.INVALID_FIELD, "search events need a non-empty `text` - at `$.text`")
    elif event.item_id is None and event.type is not EventType.FORGET:
        raise InvalidRecord(
            RejectReason.INVALID_FIELD,
            f"{event.type.value} events need an `item_id` - at `$.item_id`",
        )
    if event.text is not None and len(event.text) > limits.max_text_chars:
        raise InvalidRecord(
            RejectReason.TOO_LARGE,
            f"text has {len(event.text)} characters, limit is {limits.max_text_chars} - at `$.text`",
        )
    if event.type is EventType.RATE:
        if event.value is None or not (math.isfinite(event.value) and 0.0 <= event.value <= MAX_RATING):
            raise InvalidRecord(
                RejectReason.INVALID_FIELD,
                f"rate events need a `value` between 0 and {MAX_RATING:g} - at `$.value`",
            )
    if event.weight is not None and not (math.isfinite(event.weight) and 0.0 <= event.weight <= MAX_WEIGHT):
        raise InvalidRecord(
            RejectReason.INVALID_FIELD,
            f"weight must be between 0 and {MAX_WEIGHT:g} - at `$.weight`",
        )


def _check_id(field: str, value: str) -> None:
    if not value or len(value) > MAX_ID_CHARS:
        raise InvalidRecord(
            RejectReason.INVALID_FIELD,
            f"{field} must have 1 to {MAX_ID_CHARS} characters - at `$.{field}`",
        )


def _check_ts(ts: int) -> None:
    if MIN_TS_MS <= ts <= MAX_TS_MS:
        return
    hint = " (looks like seconds; send epoch milliseconds)" if 0 < ts < MIN_TS_MS else ""
    raise InvalidRecord(RejectReason.BAD_TIMESTAMP, f"ts must be epoch milliseconds between 1973 and 2100{hint}")
