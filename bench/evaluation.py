"""Leave-last-out evaluation on MovieLens-100K, offline (no Kafka).

Each user's last rating (by timestamp, ties broken by file order) is held out;
every other rating is replayed in global time order through the same models
code the events agent runs (``models.recommend.process_partition_events``), then each
user's list is ranked over the full catalog with their seen items excluded
and scored against the held-out item. Baselines run on the same split:
popularity (counts over the training events) and item-kNN (cosine over
co-occurrence in users' training histories).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from models.catalog import ItemCatalog, ItemMeta, item_text
from models.encoder import TextEncoder
from models.graph import DEFAULT_GRAPH, GraphParams, ItemGraph
from models.interest import UserState
from models.ranking import DEFAULT_RANKING, RankingParams
from models.global_graph import DEFAULT_EPOCHS, EpochParams
from models.recommend import replay_offline
from streams.ops.movielens import MovieLens, Rating

K = 10


@dataclass
class Split:
    train: list[Rating]  # global time order
    test: dict[str, str]  # user -> held-out item
    seen: dict[str, set[str]] = field(default_factory=dict)


def leave_last_out(movielens: MovieLens) -> Split:
    """Hold out each user's last rating (ratings are already in time order)."""
    last: dict[str, int] = {}
    for index, rating in enumerate(movielens.ratings):
        last[rating.user_id] = index
    held = set(last.values())
    train = [r for i, r in enumerate(movielens.ratings) if i not in held]
    test = {movielens.ratings[i].user_id: movielens.ratings[i].item_id for i in held}
    seen: dict[str, set[str]] = defaultdict(set)
    for rating in train:
        seen[rating.user_id].add(rating.item_id)
    return Split(train=train, test=test, seen=dict(seen))


@dataclass
class Metrics:
    hits: float = 0.0
    ndcg: float = 0.0
    mrr: float = 0.0
    users: int = 0
    recommended: set[str] = field(default_factory=set)

    def add(self, ranked: list[str], target: str) -> None:
        self.users += 1
        self.recommended.update(ranked)
        if target in ranked[:K]:
            rank = ranked.index(target)
            self.hits += 1
            self.ndcg += 1 / math.log2(rank + 2)
            self.mrr += 1 / (rank + 1)

    def summary(self, catalog_size: int, mode: str) -> dict:
        n = max(1, self.users)
        return {
            "hr@10": round(self.hits / n, 4),
            "ndcg@10": round(self.ndcg / n, 4),
            "mrr@10": round(self.mrr / n, 4),
            "coverage": round(len(self.recommended) / max(1, catalog_size), 4),
            "users": self.users,
            "mode": mode,
        }


def build_catalog(movielens: MovieLens, encoder: TextEncoder) -> ItemCatalog:
    texts = [item_text(item) for item in movielens.items]
    vectors = encoder.encode(texts)
    catalog = ItemCatalog()
    for item, vector in zip(movielens.items, vectors):
        # stored as float16 in the item table: evaluate with the same precision
        catalog.upsert(item.item_id, vector.astype(np.float16).astype(np.float32), ItemMeta(item.title, tuple(item.categories)))
    return catalog


def evaluate_recstream(
    split: Split,
    catalog: ItemCatalog,
    partitions: int = 1,
    ranking: RankingParams = DEFAULT_RANKING,
    graph_params: GraphParams = DEFAULT_GRAPH,
    epochs: EpochParams = DEFAULT_EPOCHS,
) -> Metrics:
    """Replay the training events through the same code the events agent
    runs, each partition on its view of the global graph (or, with
    ``epochs.enabled`` off, on its own graph; users hashed like Kafka keys), and score
    each user's list as of their last training event."""
    states: dict[str, UserState] = defaultdict(UserState)
    by_partition: dict[int, list] = {p: [] for p in range(partitions)}
    for offset, rating in enumerate(split.train):
        by_partition[partition_of(rating.user_id, partitions)].append((offset, rating.to_event()))
    latest = replay_offline(by_partition, partitions, states, catalog, {}, K, ranking=ranking, epochs=epochs,
                            new_graph=lambda: ItemGraph(graph_params), final_only=True)
    lists = {user: [s.item_id for s in update.ranked] for user, update in latest.items()}
    metrics = Metrics()
    for user in sorted(split.test):
        metrics.add(lists.get(user, []), split.test[user])
    return metrics


def partition_of(user_id: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key), as producers use."""
    if partitions == 1:
        return 0
    from aiokafka.partitioner import murmur2

    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


def _last_train_index(split: Split) -> dict[str, int]:
    last: dict[str, int] = {}
    for index, rating in enumerate(split.train):
        last[rating.user_id] = index
    return last


def _top_unseen(scores: np.ndarray, seen_rows: list[int], item_ids: list[str]) -> list[str]:
    scores = scores.astype(np.float64, copy=True)
    scores[seen_rows] = -np.inf
    top = np.argpartition(-scores, K)[:K]
    return [item_ids[i] for i in top[np.argsort(-scores[top], kind="stable")] if np.isfinite(scores[i])]


def evaluate_baselines(split: Split, item_ids: list[str]) -> dict[str, Metrics]:
    """Popularity as of the event time and streaming item-kNN, prequential:
    each user's list is made at their last training event from the events
    seen so far, exactly when recstream makes its list."""
    index = {item: i for i, item in enumerate(item_ids)}
    n = len(item_ids)
    counts = np.zeros(n, dtype=np.float64)
    co = np.zeros((n, n), dtype=np.float32)
    history: dict[str, list[int]] = defaultdict(list)
    last = _last_train_index(split)
    popularity, item_knn = Metrics(), Metrics()
    for position, rating in enumerate(split.train):
        j = index[rating.item_id]
        seen = history[rating.user_id]
        if seen:
            rows = np.asarray(seen)
            co[rows, j] += 1.0
            co[j, rows] += 1.0
        counts[j] += 1.0
        seen.append(j)
        if last[rating.user_id] == position and rating.user_id in split.test:
            target = split.test[rating.user_id]
            popularity.add(_top_unseen(counts, seen, item_ids), target)
            norms = np.sqrt(counts) + 1e-9
            knn = (co[seen].sum(axis=0) / norms) if seen else np.zeros(n)
            item_knn.add(_top_unseen(knn, seen, item_ids), target)
    return {"popularity": popularity, "item_knn": item_knn}


def run_offline(movielens: MovieLens, encoder: TextEncoder, partitions: int = 1, log: Callable[[str], None] = print,
                epochs: EpochParams = DEFAULT_EPOCHS) -> dict:
    split = leave_last_out(movielens)
    item_ids = [item.item_id for item in movielens.items]
    started = time.perf_counter()
    catalog = build_catalog(movielens, encoder)
    log(f"catalog encoded in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    result = evaluate_recstream(split, catalog, partitions=partitions, epochs=epochs).summary(len(item_ids), "offline")
    result["partitions"] = partitions
    result["global_graph"] = epochs.enabled
    log(f"recstream replay + ranking in {time.perf_counter() - started:.1f}s")
    result["baselines"] = baseline_summaries(split, item_ids, "offline")
    return result


def baseline_summaries(split: Split, item_ids: list[str], mode: str) -> dict[str, dict]:
    return {name: m.summary(len(item_ids), mode) for name, m in evaluate_baselines(split, item_ids).items()}


def markdown_table(result: dict) -> str:
    rows = [("recstream", result)] + list(result.get("baselines", {}).items())
    lines = ["| model | HR@10 | NDCG@10 | MRR@10 | coverage | users | mode |", "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | {r['coverage']:.3f} | {r['users']} | {r['mode']} |")
    online = result.get("online")
    if online and online.get("hr@10") is not None:
        # the same idea on the stream: each event looked up in its user's last list
        lines.append(f"| recstream, live | {online['hr@10']:.4f} | | | | {online['events']} events | online (HR@1 {online['hr@1']:.4f}, HR@5 {online['hr@5']:.4f}) |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("recstream", result)] + list(result.get("baselines", {}).items())
    names = [n for n, _ in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [r["hr@10"] for _, r in rows], 0.4, label="HR@10")
    ax.bar(x + 0.2, [r["ndcg@10"] for _, r in rows], 0.4, label="NDCG@10")
    ax.axhline(0.22, color="tab:blue", linestyle="--", linewidth=1, label="target HR@10")
    ax.axhline(0.11, color="tab:orange", linestyle="--", linewidth=1, label="target NDCG@10")
    ax.set_xticks(x, names)
    ax.set_title(f"MovieLens-100K leave-last-out ({result['mode']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
