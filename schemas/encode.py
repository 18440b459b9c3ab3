"""Encode records to the bytes that go on the wire (compact JSON)."""

from __future__ import annotations

import base64

import msgspec

from schemas.errors import InvalidRecord
from schemas.records import DeadLetter, SourcePosition

_encoder = msgspec.json.Encoder()


def encode_record(record: msgspec.Struct) -> bytes:
    """Compact JSON for any record of :mod:`schemas.records`."""
    return _encoder.encode(record)


def dead_letter_for(
    error: InvalidRecord,
    *,
    value: bytes | None,
    key: bytes | None,
    source: SourcePosition,
    failed_at: int,
) -> DeadLetter:
    """Wrap a rejected record with its reason and origin, bytes preserved."""
    return DeadLetter(
        reason=error.reason.value,
        detail=error.detail,
        source=source,
        value_b64=base64.b64encode(value or b"").decode("ascii"),
        key_b64=base64.b64encode(key).decode("ascii") if key is not None else None,
        failed_at=failed_at,
    )
