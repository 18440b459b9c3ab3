"""A worker started before its broker says so, retries with backoff, and
gets to work once the broker appears (no crash loop)."""

from __future__ import annotations

import re
import time

import pytest

from streams.kafka.broker import EmbeddedBroker, free_port
from streams.settings import load_settings
from tests.integration.harness import WorkerProcess, event, publish_catalog, publish_events, wait_for_catalog, wait_for_list
from tests.topic_catalog import catalog_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_worker_waits_for_a_broker_that_is_not_there_yet(tmp_path):
    port = free_port()
    settings = load_settings(
        broker=f"kafka://127.0.0.1:{port}", topic_prefix="late.", app_id="late-broker", data_dir=tmp_path / "data",
        partitions=2, session_timeout_s=6.0, device="cpu",
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start(wait_ready=False)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(re.findall(r"not reachable .*retrying in", worker.log_text())) < 3:
            time.sleep(0.5)
        log = worker.log_text()
        retries = re.findall(r"broker 127\.0\.0\.1:\d+ not reachable \(\w+\); retrying in ([\d.]+)s", log)
        assert len(retries) >= 3, log[-2000:]
        assert [float(d) for d in retries[:3]] == [0.5, 1.0, 2.0], "backoff doubles"
        assert worker.process is not None and worker.process.poll() is None, "the worker keeps waiting"

        with EmbeddedBroker(port=port, log_path=tmp_path / "broker.log"):
            worker.wait_ready(timeout_s=120)
            await publish_catalog(settings, catalog_items())
            await wait_for_catalog(settings, len(catalog_items()))
            await publish_events(settings, [event("u1", "space-0", 1_700_000_000_000)])
            record = await wait_for_list(settings, "u1", lambda r: r.event_ts == 1_700_000_000_000)
            assert record.items
            worker.stop()
    finally:
        worker.stop()
