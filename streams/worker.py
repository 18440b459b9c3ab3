"""Run a Faust worker for recstream's app in this process."""

from __future__ import annotations

import asyncio
import logging

from streams.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    """Build the app from ``settings`` and run it until SIGTERM/SIGINT."""
    import faust

    from streams.app import build_app, observability_server
    from streams.web.health import bind_listener

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Source topics must exist with recstream's layout before Faust subscribes:
    # a subscription would auto-create them with the broker's defaults. Topics
    # that exist already decide the partition count (see setup_topics).
    settings = asyncio.run(wait_for_broker_and_topics(settings))
    app = build_app(settings, tansu=asyncio.run(is_tansu(settings)))
    services = []
    if settings.metrics_port:
        from prometheus_client import disable_created_metrics

        # process-wide: the *_created series would double the exposition and
        # nothing reads them (this process is the worker's own)
        disable_created_metrics()
        # bound now: a port in use stops the command here, with the reason;
        # the server is started by the Worker before the app, so /healthz and
        # /ready answer during table recovery
        services.append(observability_server(app, bind_listener(settings.metrics_host, settings.metrics_port)))
    worker = faust.Worker(app, *services, loglevel=settings.log_level)
    worker.execute_from_commandline()


async def wait_for_broker_and_topics(settings: Settings, max_backoff_s: float = 30.0) -> Settings:
    """Create/check the topics, retrying with backoff while the broker is down;
    the settings with the partition count the existing topics have."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from streams.kafka.admin import setup_topics

    delay = 0.5
    while True:
        try:
            return (await setup_topics(settings)).settings
        except (KafkaConnectionError, OSError, asyncio.TimeoutError) as exc:
            log.warning("broker %s not reachable (%s); retrying in %.1fs", settings.bootstrap_servers, type(exc).__name__, delay)
        except KafkaError as exc:
            log.warning("broker %s not ready (%s); retrying in %.1fs", settings.bootstrap_servers, exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_backoff_s)


async def is_tansu(settings: Settings) -> bool:
    """Whether the broker is Tansu (the embedded broker), whose ListOffsets
    reports the base offset of a partition's last record batch (+1) rather
    than its end: Faust's recovery consistency check then mistakes a store
    that is exactly up to date for one ahead of its changelog."""
    from streams.kafka.admin import cluster_id

    return "tansu" in (await cluster_id(settings)).lower()
