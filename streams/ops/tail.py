"""Follow the recommendations topic."""

from __future__ import annotations

import msgspec
from aiokafka import AIOKafkaConsumer

from schemas import Recommendation
from streams.kafka import topics
from streams.kafka.clients import client_kwargs
from streams.settings import Settings

_decoder = msgspec.json.Decoder(Recommendation)


def format_list(record: Recommendation) -> str:
    interests = ", ".join(f"{i.label} {i.weight:.0%}" for i in record.interests) or "-"
    lines = [f"user {record.user_id}  (after event {record.trigger_event_id}; interests: {interests})"]
    for rank, item in enumerate(record.items, 1):
        because = f" {item.because}" if item.because else ""
        lines.append(f"  {rank:>2}. {item.item_id:<12} {item.score:6.3f}  {item.reason}{because}")
    return "\n".join(lines)


async def tail_recommendations(settings: Settings, user_id: str | None, as_json: bool, follow: bool) -> None:
    consumer = AIOKafkaConsumer(
        settings.topic(topics.RECOMMENDATIONS),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **client_kwargs(settings),
    )
    await consumer.start()
    try:
        idle = 0
        while follow or idle < 2:
            batches = await consumer.getmany(timeout_ms=1000)
            idle = 0 if batches else idle + 1
            for messages in batches.values():
                for message in messages:
                    if message.value is None:
                        if not as_json and (user_id is None or message.key == user_id.encode()):
                            print(f"user {message.key.decode()}  (forgotten)")
                        continue
                    record = _decoder.decode(message.value)
                    if user_id is not None and record.user_id != user_id:
                        continue
                    print(message.value.decode() if as_json else format_list(record), flush=True)
    finally:
        await consumer.stop()
