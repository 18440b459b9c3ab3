"""Leave-last-out evaluation through the real pipeline.

Embedded broker + a worker process; the catalog and every rating except each
user's last are published in time order; once the worker's consumer lag is
0, each user's latest list is read from ``recommendations`` and scored
against the held-out item (full ranking, seen items excluded by the worker).

Beside it, the same idea measured on the stream (live quality, read from the
worker's ``/metrics``): of the training events whose user had a list, how
many hit that list's top 1/5/10 before they were folded in. Those lists are
the ones the worker published after each user's previous batch, so the
number depends on how the stream was batched, as it does in production.
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
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.kafka.clients import end_offsets, publish
from streams.ops.demo import DemoError, events_worked_off, latest_lists, start_worker, stop_process, wait_for
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

    await wait_for("events consumed", published, events_worked_off(settings, published), worker, timeout_s=3600)
    elapsed = time.monotonic() - started
    log(f"{published} events through the pipeline in {elapsed:.1f}s ({published / elapsed:,.0f} events/s)")
    return await latest_lists(settings), await online_quality(settings)


async def online_quality(settings: Settings) -> dict:
    """Live HR@k from the worker's ``recstream_online_*`` counters."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=aiohttp.ClientTimeout(total=30)) as response:
            text = await response.text()
    samples = {(s.name, s.labels.get("k")): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    events = samples.get(("recstream_online_events_total", None), 0.0)
    out: dict = {"events": int(events), "mode": "online"}
    for k in (1, 5, 10):
        out[f"hr@{k}"] = round(samples.get(("recstream_online_hits_total", str(k)), 0.0) / events, 4) if events else None
    return out


def run_pipeline(movielens: MovieLens, settings: Settings, work_dir: Path, log=print) -> dict:
    """Metrics of the lists the real worker published."""
    split = leave_last_out(movielens)
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    with EmbeddedBroker(log_path=work_dir / "broker.log") as broker:
        run_settings = settings.model_copy(update={"broker": broker.url, "data_dir": work_dir, "app_id": "recstream-eval", "metrics_port": free_port()})
        worker = start_worker(run_settings, work_dir / "worker.log")
        try:
            lists, online = asyncio.run(_drive(run_settings, worker, movielens, split, log))
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
    result["online"] = online
    result["baselines"] = baseline_summaries(split, item_ids, "offline")
    return result
