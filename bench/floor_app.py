"""The I/O floor of a batch recommender on Faust: the worker's reads and
writes with no model at all.

Per batch (``take_events(batch_size, batch_window_ms)``, as the events
agent takes them), it decodes every event and then, per distinct user of
the batch, writes one 1 KB value to a RocksDB-backed table (a state write)
and sends one 1 KB message with ``topic.send`` (a list). That is the least
any recommender that keeps per-user state in a Faust table and publishes a
list per touched user must do, so the real worker is measured against it
beside the no-op agent (``bench.noop_app``): the gap between the worker and
this floor is model and protocol work, the gap between this floor and the
no-op is Faust's I/O.

Run as ``python -m bench.floor_app`` with ``RECSTREAM_*`` variables, like
``recstream worker``; its own app id, so its own consumer group.
"""

from __future__ import annotations

import asyncio

import faust

from bench.noop_app import COMMIT_INTERVAL_S
from schemas import InvalidRecord, decode_event
from streams.app import faust_config
from streams.kafka import topics
from streams.settings import Settings, load_settings
from streams.state.tables import acting_for

VALUE = bytes(1024)  # about a list record's size, and a stored state's


def lists_topic(settings: Settings) -> str:
    return f"{settings.app_id}-floor-lists"


def build_floor_app(settings: Settings) -> faust.App:
    config = faust_config(settings)
    config.update(broker_commit_interval=COMMIT_INTERVAL_S)  # as the no-op: progress seen finely enough
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)  # Faust only makes the last level
    app = faust.App(settings.app_id, **config)
    events = app.topic(settings.topic(topics.EVENTS), key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    lists = app.topic(lists_topic(settings), key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                      partitions=settings.partitions)
    state = app.Table("floor-state", partitions=settings.partitions, key_type=bytes, value_type=bytes)
    window_s = settings.batch_window_ms / 1000

    @app.agent(events)
    async def floor(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_size, within=window_s):
            users: dict[bytes, faust.types.EventT] = {}
            for event in batch:
                try:
                    record = decode_event(event.message.value, key=event.message.key or b"")
                except InvalidRecord:
                    continue
                users[record.user_id.encode()] = event
            for key, event in users.items():
                # the table write routes by the current event (the user's last)
                with acting_for(event):
                    state[key] = VALUE
                await lists.send(key=key, value=VALUE)

    return app


def main() -> None:
    from streams.kafka.admin import ensure_topics, wait_for_broker_and_topics
    from streams.kafka.topics import TopicSpec

    settings = load_settings()
    asyncio.run(wait_for_broker_and_topics(settings))
    asyncio.run(ensure_topics(settings, [TopicSpec(lists_topic(settings), settings.partitions, {"cleanup.policy": "compact"})]))
    faust.Worker(build_floor_app(settings), loglevel=settings.log_level).execute_from_commandline()


if __name__ == "__main__":
    main()
