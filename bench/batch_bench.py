"""The events agent's per-batch model work in process, ranking included:
decode states, fold + rank (``process_partition_events``), build and encode
one list per user, encode the states, snapshot the graph's dirty rows; then
the graph kernel alone (the run's graph ops into a fresh graph, one call:
edge updates per second).

No Kafka and no encoder (vectors are synthetic, clustered by the workload's
categories), so it isolates what the worker's event loop spends on models
code per event: run it under py-spy or cProfile to see where that goes.

    python -m bench.batch_bench --events 20000 --batch 500
    python -m bench.batch_bench --batch 20 --snapshot-every 1   # paced load: small batches, snapshot each
    python -m bench.batch_bench --items 100000 --compare-ann     # full vs ANN-candidate ranking, side by side
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import zlib
from collections import defaultdict

import numpy as np
from threadpoolctl import threadpool_limits

from bench.workload import CATEGORIES, WorkloadSpec, generate
from models.ann import AnnParams
from models.catalog import CandidateSearch, ItemCatalog, ItemMeta
from models.global_graph import END_OF_INPUT, DeltaBoard, DeltaRecord
from models.graph import ItemGraph
from models.interest import decode_state, encode_state
from models.recommend import BatchStats, build_recommendation, process_partition_events
from schemas import EventType, encode_record

DIM = 384


def run(events: int, users: int, items: int, partitions: int, batch: int, snapshot_every: int, seed: int, ann_min_items: int = 0, ann_candidates: int = 200) -> dict:
    workload = generate(WorkloadSpec(users=users, items=items, events=events, seed=seed))
    rng = np.random.default_rng(seed)
    centres = {c: rng.normal(size=DIM).astype(np.float32) for c in CATEGORIES}
    # as the worker configures it (streams.app.candidate_search)
    catalog = ItemCatalog(candidates=CandidateSearch(min_items=ann_min_items, per_vector=ann_candidates, ann=AnnParams(threads=1)))
    for item in workload.items:
        vector = centres[item.categories[0]] + 0.7 * rng.normal(size=DIM).astype(np.float32)
        catalog.upsert(item.item_id, vector / np.linalg.norm(vector), ItemMeta(item.title, tuple(item.categories)))
    queries: dict[str, np.ndarray] = {}
    for event in workload.events:
        if event.type is EventType.SEARCH and event.text and event.text not in queries:
            # a search names a topic: a vector among the items' (a random
            # direction would be unlike anything the encoder gives, and
            # far from every item)
            v = centres[CATEGORIES[int(rng.integers(len(CATEGORIES)))]] + 0.7 * rng.normal(size=DIM).astype(np.float32)
            queries[event.text] = v / np.linalg.norm(v)
    stores: list[dict[bytes, bytes]] = [{} for _ in range(partitions)]
    graphs = [ItemGraph() for _ in range(partitions)]
    # each partition on a board where the others are done: its graph ops are
    # recorded as a worker's with the global graph (for the kernel timing
    # below), and nothing waits or comes in from elsewhere
    boards = []
    for p in range(partitions):
        board = DeltaBoard(partitions)
        for q in range(partitions):
            if q != p:
                board.add(DeltaRecord(q, END_OF_INPUT, -1, -1))
        boards.append(board)
    ops: list[tuple] = []
    offsets = [0] * partitions
    stats = BatchStats()
    lists = rows = 0
    index_started = time.perf_counter()
    index = catalog.ann_index()  # built before the clock starts, as a worker builds it on its first batch
    index_s = time.perf_counter() - index_started
    final: dict[str, list[str]] = {}
    digest = hashlib.sha256()  # over every list record, in order: the same lists, score and reason, or not
    started, cpu_started = time.perf_counter(), time.process_time()
    for n, start in enumerate(range(0, len(workload.events), batch)):
        by_partition = defaultdict(list)
        for event in workload.events[start : start + batch]:
            p = zlib.crc32(event.user_id.encode()) % partitions
            by_partition[p].append((offsets[p], event))
            offsets[p] += 1
        for p, entries in by_partition.items():
            store = stores[p]
            states = {e.user_id: decode_state(store.get(e.user_id.encode())) for _, e in entries}
            updates = process_partition_events(entries, states, graphs[p], catalog, queries, 10, stats=stats, board=boards[p], partition=p)
            ops += [(op.item, op.previous, op.previous_ts, op.ts) for op in stats.ops]
            stats.ops = []
            for update in updates:
                store[update.user_id.encode()] = encode_state(update.state)
                record = build_recommendation(update.user_id, update.state, update.ranked, catalog, trigger=update.trigger, model_version="bench", generated_at=0)
                digest.update(encode_record(record))
                final[update.user_id] = [s.item_id for s in update.ranked]
                lists += 1
            if n % snapshot_every == 0:
                rows += len(graphs[p].take_dirty())
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    # the graph kernel alone: every op of the run into one fresh graph, one call
    kernel_started = time.perf_counter()
    edge_updates = ItemGraph().observe_foreign_many(ops)
    kernel_s = time.perf_counter() - kernel_started
    return {"events": len(workload.events), "batch": batch, "seconds": round(seconds, 2), "events_per_s": round(len(workload.events) / seconds),
            "cpu_us_per_event": round(cpu_seconds / len(workload.events) * 1e6),
            "lists": lists, "graph_rows_written": rows, "items": items,
            "graph_kernel_edge_updates": edge_updates, "graph_kernel_edge_updates_per_s": round(edge_updates / kernel_s) if kernel_s > 0 else None,
            "ranking": "ann-candidates" if index is not None else "every-item", "index_build_s": round(index_s, 2) if index is not None else None,
            "lists_sha256": digest.hexdigest()[:16], "_final": final}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--snapshot-every", type=int, default=10, help="batches between graph snapshots (the worker: every 5 s, or each batch once caught up)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--ann-min-items", type=int, default=0, help="rank ANN candidates from this catalog size (0: every item)")
    parser.add_argument("--ann-candidates", type=int, default=200, help="nearest items per user vector (RECSTREAM_ANN_CANDIDATES)")
    parser.add_argument("--compare-ann", action="store_true", help="run every-item and ANN-candidate ranking on the same events; report both and the lists' overlap")
    args = parser.parse_args()
    threadpool_limits(limits=1, user_api="blas")  # as the worker does (streams.app)
    from models.kernels import warm_up

    warm_up()  # as the worker does before its first batch
    common = (args.events, args.users, args.items, args.partitions, args.batch, args.snapshot_every, args.seed)
    if not args.compare_ann:
        result = run(*common, ann_min_items=args.ann_min_items, ann_candidates=args.ann_candidates)
        result.pop("_final")
        print(json.dumps(result))
        return
    exact, ann = run(*common, ann_min_items=0), run(*common, ann_min_items=1, ann_candidates=args.ann_candidates)
    # overlap@k of each user's last list (same events, so the same users)
    a, b = exact.pop("_final"), ann.pop("_final")
    overlaps = [len(set(a[u]) & set(b[u])) / max(1, len(a[u])) for u in a if a[u]]
    print(json.dumps({"every_item": exact, "ann_candidates": ann, "speedup": round(ann["events_per_s"] / exact["events_per_s"], 2),
                      "final_list_overlap_at_k": round(float(np.mean(overlaps)), 4) if overlaps else None}))


if __name__ == "__main__":
    main()
