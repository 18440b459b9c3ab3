"""`recstream demo`: the whole pipeline on MovieLens-100K, then a look at the lists.

Starts the embedded broker and a worker process, publishes the catalog and
every rating in time order, waits until the worker has caught up, prints a few
users' recent ratings beside their current top-10, and stops everything.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import msgspec
from rich.console import Console
from rich.table import Table

from schemas import Recommendation
from streams.kafka import topics
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.clients import end_offsets, group_lag, read_to_end
from streams.ops.loading import movielens_path, progress_bar, publish_items, publish_ratings
from streams.ops.movielens import MovieLens, read_movielens
from streams.settings import Settings, settings_env

console = Console()


class DemoError(RuntimeError):
    """The demo could not finish (worker died, timed out)."""


@dataclass
class Timings:
    started: float = field(default_factory=time.monotonic)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> float:
        self.marks[name] = time.monotonic()
        return self.marks[name]


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
    log = open(log_path, "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def stop_process(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def events_worked_off(settings: Settings, published: int) -> Callable[[], Awaitable[int]]:
    """For :func:`wait_for`: how many of the ``published`` events the app's
    group has worked off; ``published`` only once it has no lag either (the
    global graph's ticks take offsets of ``events`` too, so the committed
    count reaches ``published`` while the last events may still be held)."""

    async def current() -> int:
        lag = await group_lag(settings, settings.app_id, settings.topic(topics.EVENTS))
        return lag.committed if lag.lag == 0 else min(lag.committed, published - 1)

    return current


async def wait_for(description: str, total: int, current, worker: subprocess.Popen, timeout_s: float) -> None:
    """Poll ``current()`` until it reaches ``total``, showing progress."""
    deadline = time.monotonic() + timeout_s
    with progress_bar() as progress:
        task = progress.add_task(description, total=total)
        while True:
            value = await current()
            progress.update(task, completed=min(value, total))
            if value >= total:
                return
            if worker.poll() is not None:
                raise DemoError(f"worker exited with code {worker.returncode} while waiting for {description}")
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout_s:.0f}s waiting for {description} ({value}/{total})")
            await asyncio.sleep(0.5)


async def latest_lists(settings: Settings, topic: str | None = None) -> dict[str, Recommendation]:
    """Each user's latest list on ``recommendations`` (or on ``topic``)."""
    decoder = msgspec.json.Decoder(Recommendation)
    latest: dict[str, Recommendation] = {}
    async for key, value in read_to_end(settings, topic or settings.topic(topics.RECOMMENDATIONS)):
        if key is None:
            continue
        if value is None:
            latest.pop(key.decode(), None)
        else:
            latest[key.decode()] = decoder.decode(value)
    return latest


def show_users(movielens: MovieLens, lists: dict[str, Recommendation], count: int, ratings_used: int) -> None:
    titles = movielens.titles()
    history: dict[str, list[tuple[str, float]]] = {}
    for rating in movielens.ratings[:ratings_used]:
        history.setdefault(rating.user_id, []).append((rating.item_id, rating.rating))
    chosen = random.Random(7).sample(sorted(lists, key=int), min(count, len(lists)))
    for user_id in sorted(chosen, key=int):
        record = lists[user_id]
        interests = ", ".join(f"{i.label} {i.weight:.0%}" for i in record.interests)
        table = Table(title=f"user {user_id} — {len(history.get(user_id, []))} ratings; interests: {interests}", title_justify="left")
        table.add_column("last rated", overflow="fold")
        table.add_column("#", justify="right")
        table.add_column("recommended now", overflow="fold")
        table.add_column("score", justify="right")
        table.add_column("why", overflow="fold")
        recent = history.get(user_id, [])[-5:][::-1]
        for row in range(max(len(recent), len(record.items))):
            rated = f"{titles.get(recent[row][0], recent[row][0])} ({recent[row][1]:g}★)" if row < len(recent) else ""
            if row < len(record.items):
                item = record.items[row]
                why = item.reason + (f": {titles.get(item.because, item.because)}" if item.because else "")
                table.add_row(rated, str(row + 1), titles.get(item.item_id, item.item_id), f"{item.score:.3f}", why)
            else:
                table.add_row(rated, "", "", "", "")
        console.print(table)


async def drive(settings: Settings, worker: subprocess.Popen, movielens: MovieLens, limit: int | None, timings: Timings) -> tuple[dict[str, Recommendation], int]:
    changelog = topics.changelog_topic(settings, topics.ITEM_VECTORS_TABLE)

    async def items_encoded() -> int:
        return sum((await end_offsets(settings, changelog, wait_s=1.0)).values())

    await ensure_topics(settings)
    with progress_bar() as progress:
        await publish_items(settings, movielens, progress)
    timings.mark("items_published")
    await wait_for("items encoded", len(movielens.items), items_encoded, worker, timeout_s=600)
    timings.mark("items_encoded")

    with progress_bar() as progress:
        published = await publish_ratings(settings, movielens, progress, limit)
    timings.mark("events_published")

    await wait_for("events consumed", published, events_worked_off(settings, published), worker, timeout_s=1800)
    timings.mark("caught_up")
    return await latest_lists(settings), published


def run_demo(settings: Settings, users: int = 5, limit: int | None = None, keep_data: bool = False) -> int:
    timings = Timings()
    console.print("[bold]recstream demo[/bold]: MovieLens-100K through the embedded broker")
    movielens = read_movielens(movielens_path(settings, None))
    console.print(f"dataset: {len(movielens.items)} items, {len(movielens.ratings)} ratings")
    work_dir = settings.data_dir / "demo"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    with EmbeddedBroker(log_path=work_dir / "broker.log") as broker:
        console.print(f"embedded broker on {broker.bootstrap}")
        demo_settings = settings.model_copy(update={"broker": broker.url, "data_dir": work_dir, "app_id": "recstream-demo"})
        worker = start_worker(demo_settings, work_dir / "worker.log")
        console.print(f"worker pid {worker.pid} (log: {work_dir / 'worker.log'})")
        try:
            lists, published = asyncio.run(drive(demo_settings, worker, movielens, limit, timings))
        except DemoError as exc:
            console.print(f"[red]demo failed:[/red] {exc}; last worker log lines:")
            console.print((work_dir / "worker.log").read_text(errors="replace")[-3000:])
            return 1
        finally:
            stop_process(worker)
    show_users(movielens, lists, users, published)
    m = timings.marks
    consume_s = m["caught_up"] - m["items_encoded"]
    console.print(
        f"\n[bold]done[/bold] in {time.monotonic() - timings.started:.1f}s: catalog encoded in "
        f"{m['items_encoded'] - m['items_published']:.1f}s (incl. model load), {published} events published in "
        f"{m['events_published'] - m['items_encoded']:.1f}s and processed in {consume_s:.1f}s "
        f"({published / consume_s:,.0f} events/s); {len(lists)} users have lists"
    )
    if not keep_data:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0
