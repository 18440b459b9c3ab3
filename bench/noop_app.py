"""The throughput ceiling of a Faust agent: read ``events``, decode and
validate each record with ``schemas.decode_event``, ack, nothing else.

Same topic and Faust configuration as the real worker (``streams.app``), its
own app id (so its own consumer group). Run as ``python -m bench.noop_app``
with ``RECSTREAM_*`` variables, like ``recstream worker``.
"""

from __future__ import annotations

import asyncio

import faust

from schemas import InvalidRecord, decode_event
from streams.kafka import topics
from streams.app import faust_config
from streams.settings import Settings, load_settings

# Commits bound how finely the harness sees progress; a no-op run lasts a few
# seconds, so it commits 4x as often as the worker (1 s) to be measurable.
COMMIT_INTERVAL_S = 0.25


def build_noop_app(settings: Settings) -> faust.App:
    config = faust_config(settings)
    config.update(store="memory://", broker_commit_interval=COMMIT_INTERVAL_S)
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)  # Faust only makes the last level
    app = faust.App(settings.app_id, **config)
    events = app.topic(settings.topic(topics.EVENTS), key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    counts = {"ok": 0, "invalid": 0}

    @app.agent(events)
    async def noop(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                decode_event(event.value, event.key)
                counts["ok"] += 1
            except InvalidRecord:
                counts["invalid"] += 1

    return app


def main() -> None:
    from streams.kafka.admin import wait_for_broker_and_topics

    settings = load_settings()
    asyncio.run(wait_for_broker_and_topics(settings))
    faust.Worker(build_noop_app(settings), loglevel=settings.log_level).execute_from_commandline()


if __name__ == "__main__":
    main()
