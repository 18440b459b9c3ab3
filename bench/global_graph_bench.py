"""What the global graph costs (docs/design/global-graph.md), on MovieLens-100K's
ratings, in process, by partition count: graph ops and ``graph-deltas``
bytes per event, the memory of one view and of a worker that owns every
partition, the fold time against per-partition graphs, and the time to
rebuild one view from the ops alone (a view whose snapshot is lost; also
the graph kernel's edge updates per second).

No encoder and no ranking (random item vectors; nobody ranked): the graph
work only.

    python -m bench.global_graph_bench --partitions 1,4,16
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.evaluation import partition_of
from models.catalog import ItemCatalog, ItemMeta
from models.global_graph import DEFAULT_EPOCHS, END_OF_INPUT, DeltaBoard, DeltaRecord, EpochParams, encode_delta
from models.graph import ItemGraph
from models.interest import UserState
from models.recommend import BatchStats, delta_record, process_partition_events, replay_offline
from streams.ops.loading import movielens_path
from streams.ops.movielens import read_movielens
from streams.settings import load_settings

BATCH = 500  # events per partition per delta record, like a full worker batch


def view_bytes(graph: ItemGraph) -> int:
    """The view's arrays (the edge pool and the per-item arrays)."""
    return sum(value.nbytes for value in vars(graph).values() if isinstance(value, np.ndarray))


def run(partitions: int, events: list, catalog: ItemCatalog, epochs: EpochParams) -> dict:
    by_partition: dict[int, list] = defaultdict(list)
    for event in events:
        p = partition_of(event.user_id, partitions)
        by_partition[p].append((len(by_partition[p]), event))
    graphs: dict[int, ItemGraph] = {}
    stats = BatchStats()
    started = time.perf_counter()
    replay_offline(by_partition, partitions, defaultdict(UserState), catalog, {}, 10, epochs=epochs, graphs=graphs, final_only=True, stats=stats)
    fold_s = time.perf_counter() - started
    # the ops again, partition by partition, to size the records (batches
    # of BATCH per partition) and to rebuild one view from them
    everyone = DeltaBoard(partitions, epochs)
    delta_bytes = records = ops = 0
    for p, entries in by_partition.items():
        alone = DeltaBoard(partitions, epochs)  # the others count as done: nothing waits, nothing foreign
        for q in range(partitions):
            if q != p:
                alone.add(DeltaRecord(q, END_OF_INPUT, -1, -1))
        graph, states = ItemGraph(), defaultdict(UserState)
        for start in range(0, len(entries), BATCH):
            batch = BatchStats()
            process_partition_events(entries[start : start + BATCH], states, graph, catalog, {}, 10, stats=batch, rank_only=set(),
                                     board=alone, partition=p)
            record = delta_record(p, graph, batch.ops, epochs)
            delta_bytes += len(encode_delta(record))
            everyone.add(record)
            records += 1
            ops += len(batch.ops)
    all_ops = [(op.item, op.previous, op.previous_ts, op.ts) for op in everyone.foreign_ops(-1, -1, END_OF_INPUT)]
    started = time.perf_counter()
    rebuilt = ItemGraph()
    edge_updates = rebuilt.observe_foreign_many(all_ops)  # every partition's ops into one fresh graph, one kernel call
    rebuild_s = time.perf_counter() - started
    views = [view_bytes(g) for g in graphs.values()]
    return {
        "partitions": partitions,
        "events": len(events),
        "fold_s": round(fold_s, 2),
        "events_per_s": round(len(events) / fold_s),
        "foreign_ops_folded": stats.foreign_ops,
        "delta_records": records,
        "delta_bytes_per_event": round(delta_bytes / len(events), 1),
        "view_bytes_max": max(views),
        "worker_bytes_all_partitions": sum(views),
        "ops": ops,
        "rebuild_one_view_from_deltas_s": round(rebuild_s, 2),
        # the graph kernel alone: two edge updates per linked item (both directions)
        "rebuild_edge_updates_per_s": round(edge_updates / rebuild_s) if rebuild_s > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", default="1,4,16")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    movielens = read_movielens(movielens_path(load_settings(), None))
    rng = np.random.default_rng(0)
    catalog = ItemCatalog()
    for item in movielens.items:
        v = rng.normal(size=384).astype(np.float32)
        catalog.upsert(item.item_id, v / np.linalg.norm(v), ItemMeta(item.title, tuple(item.categories)))
    events = [rating.to_event() for rating in movielens.ratings]
    results = []
    for partitions in [int(p) for p in args.partitions.split(",")]:
        for mode, epochs in (("global", DEFAULT_EPOCHS), ("per-partition", EpochParams(enabled=False))):
            if partitions == 1 and mode == "per-partition":
                continue
            result = {"mode": mode, **run(partitions, events, catalog, epochs)}
            results.append(result)
            print(json.dumps(result))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
