"""Bounded state over a long run: bytes per user on disk and process RSS
across 1,000,000 events (issue: "Nothing lost, nothing counted twice").

Runs the events agent's per-batch state path in process, without Kafka:
decode each touched user's state from RocksDB (rocksdict, one database per
partition like Faust's store), fold the batch in with
``process_partition_events`` (graph included), encode and write the states
back. Ranking is skipped (it holds no state); vectors are synthetic
(clustered unit vectors, 384-d) so no model is needed. Prints and writes
JSON (+ a PNG of RSS and bytes/user over the run).

    python -m bench.state_bench --events 1000000 --output bench/results/state-1m.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
from faust.stores.rocksdb import RocksDBOptions

from bench.sysinfo import rss_mb
from models.catalog import ItemCatalog, ItemMeta
from models.graph import ItemGraph
from models.interest import InterestParams, decode_state, encode_state
from models.recommend import BatchStats, process_partition_events
from schemas import Event, EventType
from streams.settings import load_settings
from streams.state.tables import store_options

DIM = 384
TYPES = [EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE, EventType.RATE, EventType.DISLIKE]
WEIGHTS = [50, 30, 6, 4, 8, 2]


def synthetic_catalog(items: int, categories: int, rng: np.random.Generator) -> ItemCatalog:
    centres = rng.normal(size=(categories, DIM)).astype(np.float32)
    catalog = ItemCatalog()
    for i in range(items):
        vector = centres[i % categories] + 0.6 * rng.normal(size=DIM).astype(np.float32)
        catalog.upsert(f"i{i}", vector / np.linalg.norm(vector), ItemMeta(f"Item {i}", (f"c{i % categories}",)))
    return catalog


def event_stream(events: int, users: int, items: int, seed: int):
    """Zipf users and items, per-user clocks, a little drift; ids unique."""
    rng = random.Random(seed)
    user_weights = [1.0 / (r + 1) ** 0.8 for r in range(users)]
    item_weights = [1.0 / (r + 1) ** 1.1 for r in range(items)]
    clock = [1_700_000_000_000] * users
    chunk = 10_000
    n = 0
    while n < events:
        size = min(chunk, events - n)
        who = rng.choices(range(users), user_weights, k=size)
        what = rng.choices(range(items), item_weights, k=size)
        kinds = rng.choices(TYPES, WEIGHTS, k=size)
        for u, i, kind in zip(who, what, kinds):
            clock[u] += 1 + int(rng.expovariate(1 / 600_000))
            value = float(rng.randrange(1, 6)) if kind is EventType.RATE else None
            yield Event(event_id=f"s{n}", user_id=f"u{u}", type=kind, ts=clock[u], item_id=f"i{i}", value=value)
            n += 1


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(events: int, users: int, items: int, partitions: int, batch: int, seed: int, data_dir: Path) -> dict:
    catalog = synthetic_catalog(items, 20, np.random.default_rng(seed))
    # the stores opened exactly as the worker's Faust tables open them
    options = RocksDBOptions(**store_options(load_settings()), use_rocksdict=True)
    dbs = [options.open(data_dir / f"p{p}") for p in range(partitions)]
    graphs = [ItemGraph() for _ in range(partitions)]
    offsets = [0] * partitions
    params = InterestParams()
    stats = BatchStats()
    samples = []
    rss_start = rss_mb()
    started = time.perf_counter()
    pending: list[Event] = []
    processed = 0
    sample_every = max(batch, events // 20)

    def flush(batch_events: list[Event]) -> None:
        by_partition: dict[int, list[tuple[int, Event]]] = defaultdict(list)
        for event in batch_events:
            p = zlib.crc32(event.user_id.encode()) % partitions
            by_partition[p].append((offsets[p], event))
            offsets[p] += 1
        for p, entries in by_partition.items():
            db = dbs[p]
            states = {e.user_id: decode_state(db.get(e.user_id.encode())) for _, e in entries}
            updates = process_partition_events(entries, states, graphs[p], catalog, {}, 10, interest=params, stats=stats, rank_from=1 << 62)
            for update in updates:
                db[update.user_id.encode()] = encode_state(update.state)

    for event in event_stream(events, users, items, seed):
        pending.append(event)
        if len(pending) == batch:
            flush(pending)
            processed += len(pending)
            pending = []
            if processed % sample_every == 0:
                samples.append({"events": processed, "rss_mb": rss_mb(), "seconds": round(time.perf_counter() - started, 1)})
                print(f"{processed:>9,} events  rss {samples[-1]['rss_mb']:.0f} MiB  {samples[-1]['seconds']:.0f} s", flush=True)
    if pending:
        flush(pending)
        processed += len(pending)
    seconds = time.perf_counter() - started
    rss_end = rss_mb()
    sizes = []
    stored_users = 0
    for db in dbs:
        for _, value in db.items():
            sizes.append(len(value))
        stored_users += sum(1 for _ in db.keys())
        db.flush()
        db.compact_range(None, None)
    for db in dbs:
        db.close()
    on_disk = dir_bytes(data_dir)
    history_full = sum(1 for s in sizes if s > 3000)
    return {
        "events": processed,
        "users_in_state": stored_users,
        "items": items,
        "seconds": round(seconds, 1),
        "events_per_s": round(processed / seconds),
        "bytes_per_user": round(on_disk / max(1, stored_users)),
        "state_bytes_mean": round(float(np.mean(sizes))),
        "state_bytes_p99": int(np.percentile(sizes, 99)),
        "state_bytes_max": int(max(sizes)),
        "users_near_caps": history_full,
        "rss_mb_start": round(rss_start or 0.0, 1),
        "rss_mb_end": round(rss_end or 0.0, 1),
        "rss_samples": samples,
        "graph_items": [len(g._ids) for g in graphs],
        "duplicates": stats.duplicates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="recstream-state-"))
    try:
        result = run(args.events, args.users, args.items, args.partitions, args.batch, args.seed, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({k: v for k, v in result.items() if k != "rss_samples"}, indent=1))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=1))
        _plot(result, args.output.with_suffix(".png"))


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["rss_samples"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([s["events"] for s in samples], [s["rss_mb"] for s in samples], marker="o")
    ax.set_xlabel("events processed")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"state path RSS; {result['bytes_per_user']} bytes/user on disk")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
