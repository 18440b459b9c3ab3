"""Every ranked user of a chunk in one compiled call: blend, masks, diverse
top-k and the reason of each listed item.

:func:`models.ranking.rank_requests` computes the similarities of every
user's vectors against the catalog in one exact matrix product, then hands
them, with each user's graph and trending scores and a few small per-user
arrays, to :func:`rank_lists`. Python is left to build the per-user inputs
from the state objects and the :class:`models.ranking.ScoredItem` records
from the output arrays; the per-user Python it replaces (blend call, top-k,
the diversity pass and the explanations: about 170 us a list) is the
slow, readable reference of ``tests/reference/ranking.py``, which the
property tests hold this kernel to, bit for bit.

Same rules as :mod:`models.kernels`: no fastmath, float32 operations in the
order numpy performs them, ties broken by index.
"""

from __future__ import annotations

import numpy as np

from models.kernels import blend, jit, row_cosines, sum_f64

# reason codes of the output (models.ranking turns them into the record's text)
OFTEN_AFTER, TRENDING, MATCHES_SEARCH, SIMILAR_TO_INTEREST, SIMILAR_TO = 0, 1, 2, 3, 4
REASONS = ("often_after", "trending", "matches_search", "similar_to_interest", "similar_to")


@jit
def _top_k_into(scores, k, out):
    """:func:`models.exact.top_k` into ``out``: the ``k`` best finite
    scores, best first, equal scores in index order; returns how many."""
    count = 0
    for x in range(len(scores)):
        s = scores[x]
        if not np.isfinite(s):
            continue
        if count == k:
            if not s > scores[out[k - 1]]:
                continue
            j = k - 1  # the worst drops out
        else:
            j = count
            count += 1
        while j > 0 and s > scores[out[j - 1]]:
            out[j] = out[j - 1]
            j -= 1
        out[j] = x
    return count


@jit
def _sort_by_descending(indices, count, keys):
    """Sort ``indices[:count]`` by ``keys[index]``, largest first, in place
    and stable (equal keys keep their order): Python's ``sorted(...,
    key=lambda i: -keys[i])`` and numpy's stable argsort of ``-keys``, on
    the few items of a list or of a state's interests."""
    for i in range(1, count):
        current = indices[i]
        j = i
        while j > 0 and -keys[current] < -keys[indices[j - 1]]:
            indices[j] = indices[j - 1]
            j -= 1
        indices[j] = current


@jit
def _diverse_into(scores, owner, weights, k, min_share, ranked, count):
    """``models.ranking._diverse_top_k`` on the top-k in ``ranked[:count]``
    (in place): every interest with at least ``min_share`` of the weight
    gets a slot, taken from the lowest-ranked item of the most represented
    interest. ``weights``: every interest of the state (as the reference
    reads them), ``owner``: per column, the interest it is closest to."""
    interests = len(weights)
    if interests < 2 or count < k:
        return
    total = sum_f64(weights)  # numpy's pairwise sum, as weights.sum()
    if total <= 0:
        return
    # interests by weight, heaviest first, ties in index order (a stable
    # argsort of -weights; a state has a handful)
    order = np.arange(interests)
    _sort_by_descending(order, interests, weights)
    # owner values run from -1 (no interest) to interests - 1: offset by one
    present = np.zeros(interests + 1, dtype=np.bool_)
    for position in range(count):
        present[owner[ranked[position]] + 1] = True
    counts = np.zeros(interests + 1, dtype=np.int64)
    for o in range(interests):
        index = order[o]
        if weights[index] / total < min_share or present[index + 1]:
            continue
        # the best column of this interest not listed yet (ties: lowest index)
        best = -1
        for x in range(len(scores)):
            if owner[x] != index or not np.isfinite(scores[x]):
                continue
            listed = False
            for position in range(count):
                if ranked[position] == x:
                    listed = True
                    break
            if listed:
                continue
            if best < 0 or scores[x] > scores[best]:
                best = x
        if best < 0:
            continue
        # the most represented interest of the list; on a tie the lowest
        # (the reference's dict of a set of small ints iterates in order)
        counts[:] = 0
        for position in range(count):
            counts[owner[ranked[position]] + 1] += 1
        crowded = -2
        for value in range(interests + 1):
            if counts[value] > 0 and (crowded == -2 or counts[value] > counts[crowded + 1]):
                crowded = value - 1
        for position in range(count - 1, -1, -1):
            if owner[ranked[position]] == crowded and counts[crowded + 1] > 1:
                ranked[position] = best
                present[index + 1] = True
                break
    # best first again; equal scores keep their places
    _sort_by_descending(ranked, count, scores)


@jit
def _explain_into(top, count, sem_part, graph_part, trend_part, because, search_sims, has_search, recent_rows,
                  quantised, inverse_norms, out_reason, out_because):
    """``models.ranking._explain_all``'s choice for each listed item: the
    part that contributed most (semantic, graph, trending: the first of
    equal ones), then for a semantic item the nearest recent item or the
    search. ``out_because``: the seed index (often_after) or the recent
    item index (similar_to), else -1."""
    if count == 0:
        return
    has_recent = len(recent_rows) > 0
    if has_recent:
        sims = row_cosines(quantised, inverse_norms, top[:count], recent_rows)
    for position in range(count):
        r = top[position]
        out_because[position] = -1
        kind = 0
        best = sem_part[r]
        if graph_part[r] > best:
            kind, best = 1, graph_part[r]
        if trend_part[r] > best:
            kind = 2
        if kind == 1 and because[r] >= 0:
            out_reason[position] = OFTEN_AFTER
            out_because[position] = because[r]
        elif kind == 2 or sem_part[r] <= 0:
            out_reason[position] = TRENDING
        else:
            best_sim = -np.inf
            nearest = -1
            if has_recent:
                nearest = 0
                for c in range(1, len(recent_rows)):
                    if sims[position, c] > sims[position, nearest]:
                        nearest = c
                best_sim = np.float64(sims[position, nearest])
            if has_search and np.float64(search_sims[r]) > best_sim:
                out_reason[position] = MATCHES_SEARCH
            elif nearest < 0:
                out_reason[position] = SIMILAR_TO_INTEREST
            else:
                out_reason[position] = SIMILAR_TO
                out_because[position] = nearest


@jit
def rank_lists(
    sims, clusters_start, clusters_n, shares, taste, short, search, disliked_start, disliked_n,
    graph, graph_because, trending, active, seen, seen_at, trend_weights, interest_weights, interest_at, recent, recent_at,
    w_semantic, w_graph, long_term, short_term, search_weight, dislike_penalty, min_share, quantised, inverse_norms, k,
    out_rows, out_count, out_scores, out_reason, out_because,
):
    """Each user ``u``'s list (``models.ranking._rank_one`` over every
    catalog row): ``sims`` holds every user's vectors' cosines to the
    catalog (rows named per user by ``clusters_start`` and friends, as
    ``models.ranking._Query``; ``shares`` by row of ``sims``), ``graph``,
    ``graph_because``, ``trending``: one row per user; ``seen``,
    ``interest_weights`` and ``recent`` flat, user ``u``'s part at
    ``[*_at[u], *_at[u + 1])``. Writes the listed rows, their scores,
    reason codes and ``because`` indices, and the count per user (0: no
    positive score, an empty list)."""
    no_search = np.zeros(0, dtype=np.float32)
    for u in range(len(clusters_start)):
        scores, sem_part, graph_part, trend_part, owner, positive = blend(
            sims, clusters_start[u], clusters_n[u], shares[clusters_start[u]:clusters_start[u] + clusters_n[u]],
            taste[u], short[u], search[u], disliked_start[u], disliked_n[u],
            graph[u], trending[u], active, seen[seen_at[u]:seen_at[u + 1]],
            w_semantic, w_graph, trend_weights[u], long_term, short_term, search_weight, dislike_penalty,
        )
        if not positive:
            out_count[u] = 0
            continue
        top = out_rows[u]
        count = _top_k_into(scores, k, top)
        _diverse_into(scores, owner, interest_weights[interest_at[u]:interest_at[u + 1]], k, min_share, top, count)
        out_count[u] = count
        for position in range(count):
            out_scores[u, position] = scores[top[position]]
        search_row = sims[search[u]] if search[u] >= 0 else no_search
        _explain_into(top, count, sem_part, graph_part, trend_part, graph_because[u], search_row, search[u] >= 0,
                      recent[recent_at[u]:recent_at[u + 1]], quantised, inverse_norms, out_reason[u], out_because[u])
