"""Leave-last-out evaluation on MovieLens-100K, offline (no Kafka).

Each user's last rating (by timestamp, ties broken by file order) is held out;
every other rating is replayed in global time order through the same models
code the events agent runs (``models.recommend.fold_events``), then each
user's list is ranked over the full catalog with their seen items excluded
and scored against the held-out item. Baselines run on the same split:
popularity (counts over the training events) and item-kNN (cosine over
co-occurrence in users' training histories).
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from models.catalog import ItemCatalog, ItemMeta, item_text
from models.encoder import TextEncoder
from models.graph import DEFAULT_GRAPH, GraphParams, ItemGraph
from models.interest import UserState
from models.ranking import DEFAULT_RANKING, RankingParams
from models.recommend import process_partition_events
from streams.movielens import MovieLens, Rating

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
) -> Metrics:
    """Replay the training events through the same code the events agent
    runs, one graph per partition (users hashed like Kafka keys), and score
    each user's list as of their last training event."""
    states: dict[str, UserState] = defaultdict(UserState)
    graphs = [ItemGraph(graph_params) for _ in range(partitions)]
    by_partition: list[list] = [[] for _ in range(partitions)]
    for offset, rating in enumerate(split.train):
        by_partition[partition_of(rating.user_id, partitions)].append((offset, rating.to_event()))
    lists: dict[str, list[str]] = {}
    for graph, events in zip(graphs, by_partition):
        for update in process_partition_events(events, states, graph, catalog, {}, K, ranking=ranking):
            lists[update.user_id] = [s.item_id for s in update.ranked]
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


def evaluate_popularity(split: Split, item_ids: list[str]) -> Metrics:
    counts = Counter(r.item_id for r in split.train)
    order = [item for item, _ in counts.most_common()] + [i for i in item_ids if i not in counts]
    metrics = Metrics()
    for user, target in split.test.items():
        seen = split.seen.get(user, set())
        metrics.add([i for i in order[: K + len(seen)] if i not in seen][:K], target)
    return metrics


def evaluate_item_knn(split: Split, item_ids: list[str], neighbours: int = 100) -> Metrics:
    """Item-based CF: cosine over the user-item co-occurrence matrix."""
    index = {item: i for i, item in enumerate(item_ids)}
    users = sorted(split.seen)
    user_index = {u: i for i, u in enumerate(users)}
    matrix = np.zeros((len(users), len(item_ids)), dtype=np.float32)
    for rating in split.train:
        matrix[user_index[rating.user_id], index[rating.item_id]] = 1.0
    co = matrix.T @ matrix
    norms = np.sqrt(np.diag(co)) + 1e-9
    sim = co / norms[:, None] / norms[None, :]
    np.fill_diagonal(sim, 0.0)
    if neighbours < len(item_ids):
        cut = np.partition(sim, -neighbours, axis=1)[:, -neighbours][:, None]
        sim = np.where(sim >= cut, sim, 0.0)
    metrics = Metrics()
    for user, target in split.test.items():
        row = matrix[user_index[user]] if user in user_index else np.zeros(len(item_ids), dtype=np.float32)
        scores = row @ sim
        scores[row > 0] = -np.inf
        top = np.argsort(-scores, kind="stable")[:K]
        metrics.add([item_ids[i] for i in top], target)
    return metrics


def run_offline(movielens: MovieLens, encoder: TextEncoder, log: Callable[[str], None] = print) -> dict:
    split = leave_last_out(movielens)
    item_ids = [item.item_id for item in movielens.items]
    started = time.perf_counter()
    catalog = build_catalog(movielens, encoder)
    log(f"catalog encoded in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    result = evaluate_recstream(split, catalog).summary(len(item_ids), "offline")
    log(f"recstream replay + ranking in {time.perf_counter() - started:.1f}s")
    result["baselines"] = {
        "popularity": evaluate_popularity(split, item_ids).summary(len(item_ids), "offline"),
        "item_knn": evaluate_item_knn(split, item_ids).summary(len(item_ids), "offline"),
    }
    return result


def markdown_table(result: dict) -> str:
    rows = [("recstream", result)] + list(result.get("baselines", {}).items())
    lines = ["| model | HR@10 | NDCG@10 | MRR@10 | coverage | users | mode |", "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | {r['coverage']:.3f} | {r['users']} | {r['mode']} |")
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
    ax.set_xticks(x, names)
    ax.set_title(f"MovieLens-100K leave-last-out ({result['mode']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def iter_users(split: Split) -> Iterable[str]:
    return sorted(split.test)
