"""Pure data: the records on recstream's topics, their decoding and validation.

Imports nothing else of the project (and never faust or aiokafka)."""

from schemas.decode import DEFAULT_LIMITS, Limits, decode_event, decode_item
from schemas.encode import dead_letter_for, encode_record
from schemas.errors import InvalidRecord, RejectReason, SchemaError
from schemas.records import (
    DeadLetter,
    Event,
    EventType,
    InterestSummary,
    Item,
    Recommendation,
    RecommendedItem,
    SourcePosition,
    TICK_KEY,
    tick_event,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DeadLetter",
    "Event",
    "EventType",
    "InterestSummary",
    "InvalidRecord",
    "Item",
    "Limits",
    "Recommendation",
    "RecommendedItem",
    "RejectReason",
    "SchemaError",
    "SourcePosition",
    "TICK_KEY",
    "tick_event",
    "dead_letter_for",
    "decode_event",
    "decode_item",
    "encode_record",
]
