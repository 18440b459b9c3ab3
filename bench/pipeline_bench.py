"""Broker-side benchmarks: throughput ceilings vs the real pipeline, state
size and memory, freshness under paced load, and scaling across workers.

Everything runs against one broker (embedded unless ``--broker`` is given)
with processes started the way an operator starts them: the real worker is
``python -m streams.cli worker``, the no-op agent ``python -m bench.noop_app``.
Throughput is read from consumer-group progress (committed offsets, polled),
between the first and the last commit of a run, so process start, model load
and the group join are never counted.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import msgspec
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.sysinfo import dir_bytes, rss_mb
from bench.workload import Workload, encode, live_events
from schemas import Recommendation
from streams.kafka import topics
from streams.kafka.admin import ensure_topics
from streams.kafka.clients import _partitions, client_kwargs, end_offsets, publish, true_end_offsets
from streams.settings import Settings, settings_env

READY_LINE = b"[^Worker]: Ready"
Log = Callable[[str], None]


class BenchError(RuntimeError):
    """A process died or a wait timed out."""


# -- processes ---------------------------------------------------------------


class Proc:
    """A worker-like child process with its log in a file."""

    def __init__(self, module: str, args: list[str], settings: Settings, log_path: Path) -> None:
        env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        with open(log_path, "ab") as handle:
            self.offset = log_path.stat().st_size
            self.process = subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=handle, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise BenchError(f"{self.log_path.name}: process exited with {self.process.returncode}:\n{tail}")

    async def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as handle:
                handle.seek(self.offset)
                if READY_LINE in handle.read():
                    return
            self.check()
            await asyncio.sleep(0.2)
        raise BenchError(f"{self.log_path.name}: not ready after {timeout_s:.0f}s")

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_worker(settings: Settings, log_path: Path) -> Proc:
    return Proc("streams.cli", ["worker"], settings, log_path)


async def ceiling_run(settings: Settings, name: str, work: Path, total: int) -> Throughput:
    """Run ``bench.<name>_app`` (the no-op or the I/O-floor agent) as its own
    app and group over the same events until it has committed ``total``."""
    own = settings.model_copy(update={"app_id": f"bench-{name}", "data_dir": work / name})
    proc = Proc(f"bench.{name}_app", [], own, work / f"{name}.log")
    try:
        return await measure_group(own, own.app_id, total, [proc], timeout_s=600)
    finally:
        proc.stop()


# -- progress ------------------------------------------------------------------


class GroupProgress:
    """Polls a group's committed offsets on one topic through one long-lived
    consumer that never joins the group (OffsetFetch only)."""

    def __init__(self, settings: Settings, group_id: str, topic: str) -> None:
        self.settings, self.group_id, self.topic = settings, group_id, topic
        self.consumer = AIOKafkaConsumer(group_id=group_id, enable_auto_commit=False, **client_kwargs(settings))
        self.partitions: list[TopicPartition] = []

    async def __aenter__(self) -> GroupProgress:
        await self.consumer.start()
        self.partitions = await _partitions(self.consumer, self.topic)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def committed(self) -> int:
        total = 0
        for tp in self.partitions:
            total += (await self.consumer.committed(tp)) or 0
        return total


@dataclass
class Throughput:
    events: int
    seconds: float
    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def eps(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def measure_group(
    settings: Settings,
    group_id: str,
    target: int,
    procs: list[Proc],
    timeout_s: float,
    on_first: Callable[[], None] | None = None,
    interval_s: float = 0.1,
) -> Throughput:
    """Events/s of ``group_id`` from its first commit to the commit that
    reaches ``target`` (both endpoints are commit boundaries, so the
    commit interval does not bias the rate)."""
    samples: list[tuple[float, int]] = []
    async with GroupProgress(settings, group_id, settings.topic(topics.EVENTS)) as progress:
        baseline = await progress.committed()
        deadline = time.monotonic() + timeout_s
        while True:
            value = await progress.committed()
            now = time.monotonic()
            samples.append((now, value))
            if value > baseline and len(samples) > 1 and samples[-2][1] == baseline and on_first:
                on_first()
            if value >= target:
                break
            for proc in procs:
                proc.check()
            if now > deadline:
                raise BenchError(f"group {group_id}: {value}/{target} after {timeout_s:.0f}s")
            await asyncio.sleep(interval_s)
    moved = [(t, v) for t, v in samples if v > baseline]
    if not moved:  # already at the target: nothing to measure
        return Throughput(0, 0.0, samples)
    first = moved[0]
    last = samples[-1]
    if last[0] <= first[0]:
        # everything was committed at once: the run was shorter than a commit interval
        return Throughput(last[1] - baseline, max(1e-3, last[0] - samples[0][0]), samples)
    return Throughput(last[1] - first[1], last[0] - first[0], samples)


async def wait_for_catalog(settings: Settings, count: int, procs: list[Proc], timeout_s: float) -> float:
    changelog = topics.changelog_topic(settings, topics.ITEM_VECTORS_TABLE)
    started = time.monotonic()
    while sum((await end_offsets(settings, changelog, wait_s=1.0)).values()) < count:
        for proc in procs:
            proc.check()
        if time.monotonic() - started > timeout_s:
            raise BenchError(f"catalog of {count} items not encoded by {settings.app_id} after {timeout_s:.0f}s")
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def raw_ceiling(settings: Settings, total: int) -> float:
    """The physical ceiling: one aiokafka consumer reading every partition
    from the start and parsing each value with orjson (no group, no Faust)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, max_partition_fetch_bytes=4 * 2**20, **client_kwargs(settings))
    await consumer.start()
    try:
        partitions = await _partitions(consumer, settings.topic(topics.EVENTS))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = 0
        started = time.monotonic()  # includes the first fetch: a ceiling, not a best case
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for messages in batches.values():
                for message in messages:
                    orjson.loads(message.value)
                seen += sum(len(m) for m in batches.values())
        return total / (time.monotonic() - started)
    finally:
        await consumer.stop()


# -- freshness -----------------------------------------------------------------


async def paced_run(settings: Settings, workload: Workload, rate: int, duration_s: float, prefix: str, drain_timeout_s: float, log: Log) -> dict[str, Any]:
    """Produce ``rate`` events/s for ``duration_s`` and time each event to the
    list it triggered (send → list received, one monotonic clock).

    Events are stamped as a live producer stamps them: event time moves with
    the wall clock (from where the workload's, or the previous run's, event
    time ended), so every partition's watermark moves at the pace of the
    stream. The generator's own times (each user's clock an hour apart from
    the others', 90 s of event time between one user's events) are a
    backfill, not a live stream: replayed at 500 events/s they put
    partitions' watermarks minutes apart in event time, and the global graph
    holds a partition's events until the others catch up (p50 3.6 s at 500
    events/s, against 52 ms with per-partition graphs; docs/design/engine.md)."""
    decoder = msgspec.json.Decoder(Recommendation)
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    lists = 0
    out_topic = settings.topic(topics.RECOMMENDATIONS)
    # a short fetch wait: the embedded broker answers a waiting fetch only
    # when the wait ends, which would add half of aiokafka's 500 ms default
    # to every measured latency (Kafka answers at once either way)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, fetch_max_wait_ms=10, **client_kwargs(settings))
    await consumer.start()
    producer = AIOKafkaProducer(linger_ms=0, acks=1, **client_kwargs(settings))
    await producer.start()
    stop = asyncio.Event()
    try:
        partitions = await _partitions(consumer, out_topic)
        ends = await true_end_offsets(consumer, partitions)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, ends[tp])

        async def receive() -> None:
            nonlocal lists
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                now = time.monotonic()
                for messages in batches.values():
                    for message in messages:
                        if message.value is None:
                            continue
                        lists += 1
                        trigger = decoder.decode(message.value).trigger_event_id
                        sent = sent_at.get(trigger)
                        if sent is not None:
                            latencies.append((now - sent) * 1000)

        receiver = asyncio.create_task(receive())
        stream = live_events(workload, prefix, seed=rate)
        total = int(rate * duration_s)
        live_from = max(workload.live_ts, max((e.ts for e in workload.events), default=0)) + 1
        started = time.monotonic()
        pending: list[asyncio.Future] = []
        for n in range(total):
            due = started + n / rate
            delay = due - time.monotonic()
            if delay > 0.002:  # sleep in >= 2 ms steps; sends that are due go out together
                await asyncio.sleep(delay)
            event = msgspec.structs.replace(next(stream), ts=live_from + int((time.monotonic() - started) * 1000))
            workload.live_ts = event.ts
            sent_at[event.event_id] = time.monotonic()
            pending.append(await producer.send(settings.topic(topics.EVENTS), key=event.user_id.encode(), value=encode(event)))
        await asyncio.gather(*pending)
        produce_s = time.monotonic() - started
        # drain: until the worker's group has committed everything, then one more poll round
        group_end = sum((await end_offsets(settings, settings.topic(topics.EVENTS))).values())
        drained = True
        async with GroupProgress(settings, settings.app_id, settings.topic(topics.EVENTS)) as progress:
            deadline = time.monotonic() + drain_timeout_s
            while await progress.committed() < group_end:
                if time.monotonic() > deadline:
                    drained = False
                    break
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        stop.set()
        await receiver
    finally:
        await producer.stop()
        await consumer.stop()
    result: dict[str, Any] = {"events": total, "achieved_rate": round(total / produce_s, 1), "lists": lists, "matched": len(latencies), "drained": drained}
    if latencies:
        p = np.percentile(np.array(latencies), [50, 95, 99])
        result.update(p50=round(float(p[0]), 1), p95=round(float(p[1]), 1), p99=round(float(p[2]), 1))
    log(f"freshness {rate}/s for {duration_s:.0f}s: {lists} lists, p50 {result.get('p50')} p95 {result.get('p95')} p99 {result.get('p99')} ms{'' if drained else ' (not drained)'}")
    return result


# -- the run -------------------------------------------------------------------


def faust_dirs(data_dir: Path) -> dict[str, int]:
    """Bytes of each RocksDB table directory under a worker's data dir."""
    sizes: dict[str, int] = {}
    root = data_dir / "faust"
    for path in root.rglob("*"):
        if path.is_dir() and path.name.endswith(".db"):
            sizes[str(path.relative_to(root))] = dir_bytes(path)
    return sizes


@dataclass
class BrokerBenchConfig:
    sections: set[str]
    quick: bool
    rates: list[int]
    rate_duration_s: float
    scale_events: int
    work_dir: Path


async def _pipeline_sections(settings: Settings, workload: Workload, config: BrokerBenchConfig, log: Log) -> dict[str, Any]:
    out: dict[str, Any] = {}
    work = config.work_dir
    main = settings.model_copy(update={"app_id": "bench-pipeline", "data_dir": work / "pipeline"})
    await ensure_topics(main)
    item_records = workload.item_records()
    event_records = workload.event_records()
    users = len(workload.users)
    # The worker is restarted below, and Faust refuses to recover a table whose
    # stored offset is past the changelog's reported end. Tansu reports the end
    # as the last *batch's* base offset + 1, so the catalog's last changelog
    # record must be a batch of its own: the last item goes out alone, later.
    await publish(main, main.topic(topics.ITEMS), item_records[:-1])
    worker = start_worker(main, work / "worker.log")
    procs = [worker]
    try:
        await worker.wait_ready()
        encode_s = await wait_for_catalog(main, len(item_records) - 1, [worker], timeout_s=900)
        await asyncio.sleep(0.5)
        await publish(main, main.topic(topics.ITEMS), item_records[-1:])
        encode_s += await wait_for_catalog(main, len(item_records), [worker], timeout_s=120)
        out["catalog_encode_s"] = round(encode_s, 2)
        log(f"worker encoded {len(item_records)} items in {encode_s:.1f}s")
        measure = "pipeline" in config.sections or "state" in config.sections
        if measure:
            # The worker is paused (SIGSTOP), not stopped, while the ceilings read
            # the same events: a restarted worker comes back with an empty
            # in-memory catalog (its item mirror is not refilled from RocksDB on
            # start), which would make ranking look free. On SIGCONT it rejoins.
            worker.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        await publish(main, main.topic(topics.EVENTS), event_records)
        out["publish_eps"] = round(len(event_records) / (time.monotonic() - started), 1)
        out["events"] = len(event_records)
        out["users"] = users
        log(f"published {len(event_records):,} events ({out['publish_eps']:,.0f}/s)")
        if measure:
            out["raw_eps"] = round(await raw_ceiling(main, len(event_records)), 1)
            log(f"raw aiokafka + orjson: {out['raw_eps']:,.0f} events/s")
            noop_run = await ceiling_run(main, "noop", work, len(event_records))
            out["noop_eps"] = round(noop_run.eps, 1)
            log(f"no-op Faust agent: {noop_run.eps:,.0f} events/s")
            # the I/O floor (bench.floor_app): per batch, one state write and
            # one list send per distinct user, no model
            floor_run = await ceiling_run(main, "floor", work, len(event_records))
            out["floor_eps"] = round(floor_run.eps, 1)
            out["floor_ratio"] = round(floor_run.eps / noop_run.eps, 3) if noop_run.eps else None
            log(f"I/O-floor Faust agent: {floor_run.eps:,.0f} events/s ({out['floor_ratio']}x no-op)")
            worker.process.send_signal(signal.SIGCONT)
            rss: dict[str, float | None] = {}
            run = await measure_group(main, main.app_id, len(event_records), procs, timeout_s=3600, on_first=lambda: rss.setdefault("start", rss_mb(worker.pid)))
            rss["end"] = rss_mb(worker.pid)
            out["pipeline_eps"] = round(run.eps, 1)
            out["ratio"] = round(run.eps / noop_run.eps, 3) if noop_run.eps else None
            out["ratio_to_floor"] = round(run.eps / floor_run.eps, 3) if floor_run.eps else None
            out["pipeline_progress"] = [(round(t - run.samples[0][0], 2), v) for t, v in run.samples[:: max(1, len(run.samples) // 200)]]
            log(f"real worker: {run.eps:,.0f} events/s ({out['ratio']}x no-op, {out['ratio_to_floor']}x I/O floor)")
            # state: RocksDB under the worker's data dir, per user in state
            await asyncio.sleep(1.5)  # the last batch's writes reach RocksDB
            tables = faust_dirs(main.data_dir)
            user_state = sum(size for name, size in tables.items() if topics.USER_STATE_TABLE in name)
            out["rocksdb_bytes"] = tables
            out["bytes_per_user"] = round(user_state / users, 1) if users else None
            out["bytes_per_user_all_tables"] = round(sum(tables.values()) / users, 1) if users else None
            out["rss_mb_start"] = None if rss.get("start") is None else round(rss["start"], 1)
            out["rss_mb_end"] = None if rss["end"] is None else round(rss["end"], 1)
            log(f"state: {out['bytes_per_user']} B/user (user-state table), worker RSS {out['rss_mb_start']} → {out['rss_mb_end']} MiB")
        if "freshness" in config.sections:
            if worker.process.poll() is not None:
                worker = start_worker(main, work / "worker.log")
                procs = [worker]
            await worker.wait_ready()
            await measure_group(main, main.app_id, sum((await end_offsets(main, main.topic(topics.EVENTS))).values()), procs, timeout_s=3600)
            out["latency_ms"] = {}
            out["freshness"] = {}
            for rate in config.rates:
                run_result = await paced_run(main, workload, rate, config.rate_duration_s, f"fresh-{rate}", drain_timeout_s=120 if config.quick else 600, log=log)
                out["freshness"][str(rate)] = run_result
                if "p50" in run_result:
                    out["latency_ms"][str(rate)] = {k: run_result[k] for k in ("p50", "p95", "p99")}
                worker.check()
    finally:
        for proc in procs:
            if proc.process.poll() is None:
                proc.process.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
            proc.stop()
    return out


async def _scale_section(settings: Settings, workload: Workload, config: BrokerBenchConfig, log: Log) -> dict[str, Any]:
    """1 vs 2 workers of one app on a 4-partition ``events``. Each run has
    its own topic prefix, so the catalog is encoded and the group settled
    before a single event exists, and every run reads the same events."""
    out: dict[str, Any] = {}
    events = workload.event_records()[: config.scale_events]
    for count in (1, 2):
        run = settings.model_copy(update={"app_id": f"bench-scale{count}", "topic_prefix": f"scale{count}.", "partitions": 4})
        await ensure_topics(run)
        await publish(run, run.topic(topics.ITEMS), workload.item_records())
        workers = [start_worker(run.model_copy(update={"data_dir": config.work_dir / f"scale{count}-{i}"}), config.work_dir / f"scale{count}-{i}.log") for i in range(count)]
        try:
            for worker in workers:
                await worker.wait_ready()
            await wait_for_catalog(run, len(workload.items), workers, timeout_s=900)
            await asyncio.sleep(run.session_timeout_s)  # let the last rebalance settle before measuring
            await publish(run, run.topic(topics.EVENTS), events)
            result = await measure_group(run, run.app_id, len(events), workers, timeout_s=3600)
        finally:
            for worker in workers:
                worker.stop()
        out[str(count)] = round(result.eps, 1)
        log(f"scale: {count} worker(s): {result.eps:,.0f} events/s")
    return {"scale": out}


def run_broker_bench(settings: Settings, workload: Workload, config: BrokerBenchConfig, broker_url: str | None, log: Log = print) -> dict[str, Any]:
    """Start a broker unless one is given, then run the selected sections."""
    from streams.kafka.broker import EmbeddedBroker

    shutil.rmtree(config.work_dir, ignore_errors=True)
    config.work_dir.mkdir(parents=True)

    async def drive(url: str) -> dict[str, Any]:
        run = settings.model_copy(update={"broker": url})
        out: dict[str, Any] = {}
        if config.sections & {"pipeline", "state", "freshness"}:
            out.update(await _pipeline_sections(run, workload, config, log))
        if "scale" in config.sections:
            out.update(await _scale_section(run, workload, config, log))
        return out

    if broker_url:
        return asyncio.run(drive(broker_url))
    with EmbeddedBroker(log_path=config.work_dir / "broker.log") as broker:
        log(f"embedded broker on {broker.bootstrap}")
        return asyncio.run(drive(broker.url))
