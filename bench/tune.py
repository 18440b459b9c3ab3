"""Tune ranking weights on each user's second-to-last item (never the last).

The validation split drops every user's last rating entirely and holds out
the one before it; the grid below is scored there, offline, with the same
models code. ``python -m bench.tune`` prints the table; the defaults in
``models.ranking.RankingParams`` are the best row.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import replace
from pathlib import Path

from bench.evaluation import build_catalog, evaluate_recstream, leave_last_out
from models.ranking import DEFAULT_RANKING
from streams.movielens import MovieLens, read_movielens

GRID = {
    "semantic": [0.0, 0.3, 0.6],
    "trending": [0.15, 0.3, 0.6],
    "graph_seeds": [5, 10],
}


def validation_movielens(movielens: MovieLens) -> MovieLens:
    """The data without each user's last rating: its last-out is the second-to-last."""
    last: dict[str, int] = {}
    for index, rating in enumerate(movielens.ratings):
        last[rating.user_id] = index
    drop = set(last.values())
    return MovieLens(items=movielens.items, ratings=[r for i, r in enumerate(movielens.ratings) if i not in drop])


def main(path: Path) -> None:
    from models.encoder import TextEncoder

    movielens = read_movielens(path)
    catalog = build_catalog(movielens, TextEncoder(device="cpu"))
    split = leave_last_out(validation_movielens(movielens))
    print("| semantic | trending | graph_seeds | HR@10 (valid) | NDCG@10 (valid) |\n|---|---|---|---|---|")
    for values in itertools.product(*GRID.values()):
        params = replace(DEFAULT_RANKING, **dict(zip(GRID, values)))
        m = evaluate_recstream(split, catalog, ranking=params).summary(len(movielens.items), "offline")
        print(f"| {' | '.join(str(v) for v in values)} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} |", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".recstream/ml-100k"))
