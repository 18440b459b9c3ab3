"""Tune ranking weights on each user's second-to-last item (never the last).

The validation split drops every user's last rating entirely and holds out
the one before it; the grid below is scored there, offline, with the same
models code. ``python -m bench.tune`` prints the table; the defaults in
``models.ranking.RankingParams`` are the best row.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bench.evaluation import build_catalog, evaluate_recstream, leave_last_out
from models.graph import DEFAULT_GRAPH
from models.ranking import DEFAULT_RANKING
from streams.ops.movielens import MovieLens, read_movielens

# (ranking overrides, graph overrides): the sweep behind the defaults; the
# README lists its validation numbers.
SWEEP: list[tuple[dict, dict]] = [
    ({"graph_seeds": 10, "graph_recency": 0.7}, {"window": 10, "gap_exponent": 1.0, "backward": 0.3}),
    ({"graph_seeds": 20, "graph_recency": 0.85}, {"window": 20, "gap_exponent": 1.0, "backward": 0.3}),
    ({"graph_seeds": 30, "graph_recency": 0.9}, {"window": 30, "gap_exponent": 1.0, "backward": 0.3}),
    ({"graph_seeds": 20, "graph_recency": 0.85}, {"window": 20, "gap_exponent": 0.5, "backward": 0.3}),
    ({"graph_seeds": 20, "graph_recency": 0.85}, {"window": 20, "gap_exponent": 0.5, "backward": 0.6}),
    ({"graph_seeds": 30, "graph_recency": 0.9}, {"window": 30, "gap_exponent": 0.5, "backward": 0.6}),
    ({"semantic": 0.15}, {}),
    ({"trending": 0.15}, {}),
    ({}, {"pop_half_life_ms": 7 * 24 * 3600 * 1000}),
]

# `python -m bench.tune PATH --signal`: how low ratings and trending weigh
# (the quality-beyond-kNN step of docs/design/global-graph.md)
SIGNAL_SWEEP: list[tuple[dict, dict]] = [
    ({}, {"min_signal": 0.4}),  # 1-star ratings feed no edges or trending
    ({}, {"min_signal": 0.75}),  # 1- and 2-star ratings neither
    ({"seed_min_signal": 0.75}, {}),  # nor do they seed a user's graph part
    ({"seed_min_signal": 0.75}, {"min_signal": 0.75}),
    ({"trending_half_events": 20}, {}),  # trending halves at 20 events of the user
    ({"trending_half_events": 50}, {}),
    ({"trending_half_events": 10}, {}),
    ({"trending_half_events": 5}, {}),
    ({"trending_half_events": 20, "trending": 0.5}, {}),
    ({"trending_half_events": 10, "trending": 0.5}, {}),
    ({"trending_half_events": 20, "seed_min_signal": 0.75}, {"min_signal": 0.75}),
]


def validation_movielens(movielens: MovieLens) -> MovieLens:
    """The data without each user's last rating: its last-out is the second-to-last."""
    last: dict[str, int] = {}
    for index, rating in enumerate(movielens.ratings):
        last[rating.user_id] = index
    drop = set(last.values())
    return MovieLens(items=movielens.items, ratings=[r for i, r in enumerate(movielens.ratings) if i not in drop])


def main(path: Path, sweep: list[tuple[dict, dict]] = SWEEP) -> None:
    from models.encoder import TextEncoder

    movielens = read_movielens(path)
    catalog = build_catalog(movielens, TextEncoder(device="cpu"))
    split = leave_last_out(validation_movielens(movielens))
    print("| ranking | graph | HR@10 (valid) | NDCG@10 (valid) |\n|---|---|---|---|")
    for ranking, graph in [({}, {})] + sweep:
        m = evaluate_recstream(
            split, catalog, ranking=replace(DEFAULT_RANKING, **ranking), graph_params=replace(DEFAULT_GRAPH, **graph)
        ).summary(len(movielens.items), "offline")
        print(f"| {ranking or 'defaults'} | {graph or 'defaults'} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} |", flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=Path(".recstream/ml-100k"), help="MovieLens folder")
    parser.add_argument("--signal", action="store_true", help="the low-rating and trending sweep (SIGNAL_SWEEP)")
    parser.add_argument("--from", dest="first", type=int, default=0, help="start at this row of the sweep")
    args = parser.parse_args()
    main(args.path, (SIGNAL_SWEEP if args.signal else SWEEP)[args.first :])
