"""Run a Faust worker for recstream's app in this process."""

from __future__ import annotations

import logging

from streams.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    """Build the app from ``settings`` and run it until SIGTERM/SIGINT."""
    import faust

    from streams.app import app_when_ready, observability_server
    from streams.web.health import bind_listener

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.event_loop == "uvloop":
        import mode.loop

        mode.loop.use("uvloop")  # before any loop exists (Faust's -L uvloop)
    app = app_when_ready(settings)
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
