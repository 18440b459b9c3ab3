"""`recstream bench --only serving`: the serving API under closed-loop load
while the worker processes events.

One worker (API on its metrics port) with the workload's catalog and
users. Five runs of the same paced event stream (500 events/s by default):
without HTTP load, with a lookup load, with a rank load (200 candidates per
request), with a related-items load (``GET /items/{id}/related?k=10``, the
default blend), and with related items paced at :data:`RELATED_RATE`
requests/s (the target: p99 <= 10 ms at 1,000 requests/s). The load is an
aiohttp client pool in a child process (``python -m bench.serving_bench``):
closed loop, each of ``concurrency`` clients sending its next request when
the previous one is answered, or paced, each client on its own fixed
schedule with latency counted from the scheduled send (a late answer delays
the next send but is charged for it: no coordinated omission). Reported:
requests/s, p50/p99 per route, and the event -> list p50/p99 of each run.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.pipeline_bench import BenchError, measure_group, paced_run, start_worker, wait_for_catalog
from bench.workload import Workload
from streams.kafka import topics
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import free_port
from streams.kafka.clients import end_offsets, publish
from streams.settings import Settings

Log = Callable[[str], None]
CANDIDATES = 200
RELATED_K = 10
RELATED_RATE = 1_000  # requests/s of the paced related-items run
# (result key, route, requests/s or None for closed loop)
LOADS = (("lookup", "lookup", None), ("rank", "rank", None), ("related", "related", None), ("related_paced", "related", RELATED_RATE))


async def closed_loop(base: str, mode: str, users: list[str], items: list[str], concurrency: int, duration_s: float, token: str = "",
                      rate: float | None = None) -> dict[str, Any]:
    """``concurrency`` clients, each sending its next request as soon as
    the previous is answered, for ``duration_s``; latencies in ms. With a
    ``rate`` (requests/s in all), each client sends on its own schedule
    instead and latency counts from the scheduled time."""
    from urllib.parse import quote

    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + duration_s

    interval = concurrency / rate if rate else 0.0

    async def client(http: aiohttp.ClientSession, n: int) -> None:
        scheduled = time.perf_counter() + n * interval / concurrency  # clients spread over one interval
        while time.monotonic() < deadline:
            if rate:
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
                started = scheduled
                scheduled += interval
            else:
                started = time.perf_counter()
            user = rng.choice(users)
            if mode == "lookup":
                request = http.get(f"{base}/users/{user}/recommendations", headers=headers)
            elif mode == "related":
                request = http.get(f"{base}/items/{quote(rng.choice(items), safe='')}/related?k={RELATED_K}", headers=headers)
            else:
                request = http.post(f"{base}/users/{user}/rank", json={"items": rng.sample(items, min(CANDIDATES, len(items)))}, headers=headers)
            async with request as answer:
                await answer.read()
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
            latencies.append((time.perf_counter() - started) * 1000)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.monotonic()
        await asyncio.gather(*(client(http, n) for n in range(concurrency)))
        wall = time.monotonic() - started
    p = np.percentile(np.array(latencies), [50, 99]) if latencies else [None, None]
    return {
        "mode": mode,
        "concurrency": concurrency,
        "target_req_per_s": rate,
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / wall, 1),
        "p50_ms": None if p[0] is None else round(float(p[0]), 2),
        "p99_ms": None if p[1] is None else round(float(p[1]), 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def start_load(base: str, mode: str, users: list[str], items: list[str], concurrency: int, duration_s: float, work: Path,
               rate: float | None = None, name: str | None = None) -> tuple[subprocess.Popen, Path]:
    name = name or mode
    spec = work / f"load-{name}.json"
    out = work / f"load-{name}-result.json"
    spec.write_text(json.dumps({"base": base, "mode": mode, "users": users, "items": items, "concurrency": concurrency, "duration_s": duration_s, "rate": rate}))
    process = subprocess.Popen([sys.executable, "-m", "bench.serving_bench", str(spec), str(out)])
    return process, out


async def run_serving_bench(settings: Settings, workload: Workload, work: Path, rate: int, duration_s: float, concurrency: int, log: Log) -> dict[str, Any]:
    port = free_port()
    run = settings.model_copy(update={"app_id": "bench-serving", "data_dir": work / "serving", "metrics_port": port})
    base = f"http://127.0.0.1:{port}"
    await ensure_topics(run)
    await publish(run, run.topic(topics.ITEMS), workload.item_records())
    worker = start_worker(run, work / "serving-worker.log")
    out: dict[str, Any] = {"rate": rate, "duration_s": duration_s, "concurrency": concurrency, "candidates": CANDIDATES}
    try:
        await worker.wait_ready()
        await wait_for_catalog(run, len(workload.items), [worker], timeout_s=900)
        # users with state and lists first (the lookups' targets)
        records = workload.event_records()[:4_000]
        await publish(run, run.topic(topics.EVENTS), records)
        await measure_group(run, run.app_id, sum((await end_offsets(run, run.topic(topics.EVENTS))).values()), [worker], timeout_s=1800)
        users = sorted({e.user_id for e in workload.events[: len(records)]})
        items = [item.item_id for item in workload.items]
        log(f"serving: worker ready with {len(users)} users; {rate} events/s for {duration_s:.0f}s per run")
        out["freshness_no_load"] = await paced_run(run, workload, rate, duration_s, "srv-idle", drain_timeout_s=300, log=log)
        for mode, route, load_rate in LOADS:
            process, result_path = start_load(base, route, users, items, concurrency, duration_s + 2, work, rate=load_rate, name=mode)
            try:
                await asyncio.sleep(1.0)  # the load is on before the first event
                out[f"freshness_{mode}_load"] = await paced_run(run, workload, rate, duration_s, f"srv-{mode}", drain_timeout_s=300, log=log)
            finally:
                code = await asyncio.to_thread(process.wait, duration_s + 120)
            if code != 0:
                raise BenchError(f"{mode} load generator exited with {code}")
            out[mode] = json.loads(result_path.read_text())
            load = out[mode]
            log(f"serving {mode}: {load['req_per_s']:,.0f} req/s, p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms ({concurrency} clients; statuses {load['statuses']})")
            worker.check()
    finally:
        worker.stop()
    return {"serving": out}


def run_serving(settings: Settings, workload: Workload, work: Path, broker_url: str | None, rate: int, duration_s: float, log: Log, concurrency: int = 32) -> dict[str, Any]:
    """Start an embedded broker unless one is given, then run the section."""
    import shutil

    from streams.kafka.broker import EmbeddedBroker

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if broker_url:
        return asyncio.run(run_serving_bench(settings.model_copy(update={"broker": broker_url}), workload, work, rate, duration_s, concurrency, log))
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        log(f"embedded broker on {broker.bootstrap}")
        return asyncio.run(run_serving_bench(settings.model_copy(update={"broker": broker.url}), workload, work, rate, duration_s, concurrency, log))


def summary_rows(serving: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for mode, label in (("lookup", "GET /recommendations"), ("rank", f"POST /rank ({serving.get('candidates')} candidates)"),
                        ("related", f"GET /items/.../related (k={RELATED_K})"), ("related_paced", f"GET /items/.../related (k={RELATED_K}), paced")):
        load = serving.get(mode)
        if load:
            how = f"{load['concurrency']} clients" + (f", {load['target_req_per_s']:,.0f} req/s asked" if load.get("target_req_per_s") else "")
            rows.append(("serving", label, f"{load['req_per_s']:,.0f} req/s, p50 {load['p50_ms']} / p99 {load['p99_ms']} ms ({how})"))
    for key, label in (("freshness_no_load", "no load"), ("freshness_lookup_load", "lookup load"), ("freshness_rank_load", "rank load"),
                       ("freshness_related_load", "related load"), ("freshness_related_paced_load", "related load, paced")):
        fresh = serving.get(key)
        if fresh:
            rows.append(("serving", f"event -> list, {label}", f"p50 {fresh.get('p50')} / p99 {fresh.get('p99')} ms at {fresh.get('achieved_rate')} events/s"))
    return rows


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    result = asyncio.run(closed_loop(spec["base"], spec["mode"], spec["users"], spec["items"], spec["concurrency"], spec["duration_s"], rate=spec.get("rate")))
    Path(sys.argv[2]).write_text(json.dumps(result))
