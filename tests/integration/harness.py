"""Helpers for integration tests: worker subprocesses and topic I/O over TCP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import msgspec
import orjson

from schemas import DeadLetter, Recommendation
from streams.kafka import topics
from streams.kafka.admin import ensure_topics
from streams.kafka.clients import end_offsets, publish, read_to_end
from streams.ops.demo import latest_lists
from streams.settings import Settings, settings_env

READY_LINE = "[^Worker]: Ready"


class WorkerProcess:
    """``recstream worker`` as a child process, like an operator runs it."""

    def __init__(self, settings: Settings, log_path: Path, args: tuple[str, ...] = ("worker",)) -> None:
        self.settings = settings
        self.log_path = log_path
        self.args = list(args)  # the recstream command line (e.g. rebuild --app-id ...)
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, wait_ready: bool = True, timeout_s: float = 120.0) -> WorkerProcess:
        env = {**os.environ, **settings_env(self.settings), "PYTHONUNBUFFERED": "1"}
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start {self.starts} ====\n".encode())
            log.flush()
            self._offset = self.log_path.stat().st_size
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", *self.args], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        if wait_ready:
            self.wait_ready(timeout_s)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as handle:
                handle.seek(self._offset)
                if READY_LINE.encode() in handle.read():
                    return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log_text()[-4000:]}")
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout_s}s:\n{self.log_text()[-4000:]}")

    def stop(self, timeout_s: float = 30.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """kill -9: no shutdown, no final commit, no flush."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()


def event(user: str, item: str | None, ts: int, kind: str = "click", **extra: Any) -> dict[str, Any]:
    record = {"event_id": f"{user}-{kind}-{item}-{ts}", "user_id": user, "type": kind, "ts": ts, **extra}
    if item is not None:
        record["item_id"] = item
    return record


async def publish_json(settings: Settings, topic: str, records: list[tuple[str | None, Any]]) -> None:
    """Publish ``(key, value)``; dict values become JSON, bytes go as they are."""
    await ensure_topics(settings)
    pairs = [
        (key.encode() if key is not None else None, value if isinstance(value, (bytes, type(None))) else orjson.dumps(value))
        for key, value in records
    ]
    await publish(settings, settings.topic(topic), pairs)


async def publish_catalog(settings: Settings, items: list[dict[str, Any]]) -> None:
    await publish_json(settings, topics.ITEMS, [(item["item_id"], item) for item in items])


async def publish_events(settings: Settings, events: list[dict[str, Any]]) -> None:
    await publish_json(settings, topics.EVENTS, [(e["user_id"], e) for e in events])


async def wait_for_list(
    settings: Settings,
    user: str,
    accept: Callable[[Recommendation], bool],
    timeout_s: float = 60.0,
) -> Recommendation:
    """The user's latest list once ``accept`` holds for it."""
    deadline = time.monotonic() + timeout_s
    latest = None
    while time.monotonic() < deadline:
        latest = (await latest_lists(settings)).get(user)
        if latest is not None and accept(latest):
            return latest
        await asyncio.sleep(0.5)
    raise AssertionError(f"no accepted list for user {user} within {timeout_s}s; latest: {latest}")


async def dead_letters(settings: Settings) -> list[DeadLetter]:
    decoder = msgspec.json.Decoder(DeadLetter)
    return [decoder.decode(v) async for _, v in read_to_end(settings, settings.topic(topics.DEAD_LETTERS))]


async def wait_until(probe: Callable[[], Any], timeout_s: float = 60.0, interval_s: float = 0.5) -> Any:
    """Await ``probe()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await probe()
        if result:
            return result
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s")


async def wait_for_catalog(settings: Settings, count: int, timeout_s: float = 120.0) -> None:
    """Until the worker has encoded ``count`` items into its item table."""
    changelog = topics.changelog_topic(settings, topics.ITEM_VECTORS_TABLE)

    async def encoded() -> bool:
        return sum((await end_offsets(settings, changelog, wait_s=1.0)).values()) >= count

    await wait_until(encoded, timeout_s)
