"""Send a rejected record to the dead-letter topic with its reason."""

from __future__ import annotations

import logging
import time

import faust
from faust.types import EventT

from schemas import InvalidRecord, SourcePosition, dead_letter_for, encode_record

log = logging.getLogger(__name__)


async def send_dead_letter(topic: faust.TopicT, error: InvalidRecord, event: EventT) -> None:
    """Publish ``event``'s original bytes with the reason it was rejected.

    The log line carries the reason and position only: record payloads may
    hold user text and never go to logs.
    """
    message = event.message
    source = SourcePosition(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=int(message.timestamp * 1000) if message.timestamp else None,
    )
    letter = dead_letter_for(
        error,
        value=message.value,
        key=message.key,
        source=source,
        failed_at=int(time.time() * 1000),
    )
    log.info("dead letter %s from %s[%d]@%d", error.reason.value, source.topic, source.partition, source.offset)
    await topic.send(key=message.key, value=encode_record(letter))
