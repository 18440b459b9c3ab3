"""Errors raised by the schemas package."""

from __future__ import annotations

import enum


class RejectReason(str, enum.Enum):
    """Stable reason codes carried by dead-letter records.

    Operators alert and filter on these, so existing codes never change
    meaning; new ones may be added.
    """

    INVALID_UTF8 = "invalid_utf8"
    NOT_JSON = "not_json"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_TYPE = "unknown_type"
    BAD_TIMESTAMP = "bad_timestamp"
    TOO_LARGE = "too_large"
    KEY_MISMATCH = "key_mismatch"
    EMPTY = "empty"
    # an event in another partition than its key's under Kafka's default
    # partitioner (murmur2): a librdkafka producer left on its CRC32 default
    WRONG_PARTITION = "wrong_partition"


class SchemaError(Exception):
    """Base class of every error raised by :mod:`schemas`."""


class InvalidRecord(SchemaError):
    """A record failed decoding or validation.

    ``reason`` is a :class:`RejectReason`; ``detail`` is safe to log: it names
    the field and the rule, never the payload itself.
    """

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
