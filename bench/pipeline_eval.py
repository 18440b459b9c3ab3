"""Leave-last-out evaluation through the real pipeline.

Embedded broker + a worker process; the catalog and every rating except each
user's last are published in time order; once the worker's consumer lag is
0, each user's latest list is read from ``recommendations`` and scored
against the held-out item (full ranking, seen items excluded by the worker).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from bench.evaluation import K, Metrics, Split, baseline_summaries, leave_last_out
from schemas import encode_record
from streams.kafka import topics
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.clients import end_offsets, group_lag, publish
from streams.ops.demo import DemoError, latest_lists, start_worker, stop_process, wait_for
from streams.ops.movielens import MovieLens
from streams.settings import Settings


async def _drive(settings: Settings, worker, movielens: MovieLens, split: Split, log) -> dict:
    await ensure_topics(settings)
    items = [(i.item_id.encode(), encode_record(i)) for i in movielens.items]
    await publish(settings, settings.topic(topics.ITEMS), items)
    changelog = topics.changelog_topic(settings, topics.ITEM_VECTORS_TABLE)

    async def encoded() -> int:
        return sum((await end_offsets(settings, changelog, wait_s=1.0)).values())

    await wait_for("items encoded", len(items), encoded, worker, timeout_s=900)
    started = time.monotonic()
    events = [(r.user_id.encode(), encode_record(r.to_event())) for r in split.train]
    published = await publish(settings, settings.topic(topics.EVENTS), events)

    async def consumed() -> int:
        return (await group_lag(settings, settings.app_id, settings.topic(topics.EVENTS))).committed

    await wait_for("events consumed", published, consumed, worker, timeout_s=3600)
    elapsed = time.monotonic() - started
    log(f"{published} events through the pipeline in {elapsed:.1f}s ({published / elapsed:,.0f} events/s)")
    return await latest_lists(settings)


def run_pipeline(movielens: MovieLens, settings: Settings, work_dir: Path, log=print) -> dict:
    """Metrics of the lists the real worker published."""
    split = leave_last_out(movielens)
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    with EmbeddedBroker(log_path=work_dir / "broker.log") as broker:
        run_settings = settings.model_copy(update={"broker": broker.url, "data_dir": work_dir, "app_id": "recstream-eval"})
        worker = start_worker(run_settings, work_dir / "worker.log")
        try:
            lists = asyncio.run(_drive(run_settings, worker, movielens, split, log))
        except DemoError as exc:
            raise RuntimeError(f"{exc}; see {work_dir / 'worker.log'}") from exc
        finally:
            stop_process(worker)
    metrics = Metrics()
    for user in sorted(split.test):
        record = lists.get(user)
        metrics.add([i.item_id for i in record.items][:K] if record else [], split.test[user])
    item_ids = [i.item_id for i in movielens.items]
    result = metrics.summary(len(item_ids), "pipeline")
    result["partitions"] = settings.partitions
    result["baselines"] = baseline_summaries(split, item_ids, "offline")
    return result
