"""Integration fixtures: a real broker over TCP and real worker processes."""

from __future__ import annotations

import uuid

import pytest

from streams.kafka.broker import EmbeddedBroker
from streams.settings import Settings, load_settings
from tests.integration.harness import WorkerProcess


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture
def settings(broker, tmp_path) -> Settings:
    """Settings isolated per test: own topic prefix, app id and data dir."""
    tag = uuid.uuid4().hex[:8]
    return load_settings(
        broker=broker.url,
        topic_prefix=f"t{tag}.",
        app_id=f"test-{tag}",
        data_dir=tmp_path / "data",
        partitions=2,
        session_timeout_s=6.0,
        batch_window_ms=20,
        device="cpu",
    )


@pytest.fixture
def worker(settings, tmp_path):
    process = WorkerProcess(settings, tmp_path / "worker.log")
    yield process
    process.stop()
