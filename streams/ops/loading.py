"""Publish datasets to the input topics, with progress."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from schemas import encode_record
from streams.kafka import topics
from streams.kafka.admin import ensure_topics
from streams.kafka.clients import end_offsets, publish
from streams.ops.movielens import MovieLens, fetch_movielens, read_movielens
from streams.settings import Settings


def movielens_path(settings: Settings, path: Path | None) -> Path:
    """The given folder, or the dataset fetched into the data dir."""
    return path if path is not None else fetch_movielens(settings.data_dir / "ml-100k")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )


async def publish_items(settings: Settings, movielens: MovieLens, progress: Progress) -> int:
    task = progress.add_task("items published", total=len(movielens.items))
    records = ((item.item_id.encode(), encode_record(item)) for item in movielens.items)
    return await publish(settings, settings.topic(topics.ITEMS), records, lambda n: progress.update(task, completed=n))


async def publish_ratings(settings: Settings, movielens: MovieLens, progress: Progress, limit: int | None = None) -> int:
    ratings = movielens.ratings[:limit] if limit else movielens.ratings
    task = progress.add_task("events published", total=len(ratings))
    records = ((r.user_id.encode(), encode_record(r.to_event())) for r in ratings)
    return await publish(settings, settings.topic(topics.EVENTS), records, lambda n: progress.update(task, completed=n))


async def wait_for_catalog(settings: Settings, count: int, progress: Progress, timeout_s: float) -> bool:
    """Wait until the worker (``settings.app_id``) has encoded ``count`` items
    into its item table; False on timeout (no worker running, say)."""
    changelog = topics.changelog_topic(settings, topics.ITEM_VECTORS_TABLE)
    task = progress.add_task("items encoded", total=count)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        encoded = sum((await end_offsets(settings, changelog, wait_s=1.0)).values())
        progress.update(task, completed=min(encoded, count))
        if encoded >= count:
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.5)


def load_movielens_command(settings: Settings, path: Path | None, limit: int | None, catalog_wait_s: float = 0.0) -> None:
    movielens = read_movielens(movielens_path(settings, path))

    async def run() -> tuple[int, int]:
        await ensure_topics(settings)
        with progress_bar() as progress:
            items = await publish_items(settings, movielens, progress)
            # events for items the catalog has not encoded yet only count in
            # history until the user's next event; waiting gives better lists
            if catalog_wait_s > 0 and not await wait_for_catalog(settings, items, progress, catalog_wait_s):
                progress.console.print(f"catalog not encoded by app {settings.app_id!r} after {catalog_wait_s:.0f}s; publishing events anyway")
            events = await publish_ratings(settings, movielens, progress, limit)
        return items, events

    items, events = asyncio.run(run())
    print(f"published {items} items to {settings.topic(topics.ITEMS)} and {events} events to {settings.topic(topics.EVENTS)}")
