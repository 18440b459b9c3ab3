"""Compiled kernels of the hot path (numba, no C toolchain on the user's machine).

They work on flat arrays addressed by integer index, never on item-id
strings or Python objects, so one call does what would otherwise be
hundreds of small numpy calls. ``cache=True`` keeps the machine code between
runs; ``nogil=True`` lets the worker run them off the event loop if it
wants. No ``fastmath``: every floating-point operation is a correctly
rounded IEEE operation in the order written (LLVM may not reassociate or
fuse them without it), so the kernels give the same bits on every CPU
(README, "Reproducible lists"). Decay uses the tables of
:mod:`models.exact`, read the same way as :func:`models.exact.decay`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from models import exact

_COARSE = exact._COARSE
_FINE = exact._FINE
_FRACTION_BITS = exact._FRACTION_BITS
_FINE_BITS = exact._FINE_BITS
_FINE_MASK = exact._FINE_MASK
_MAX_HALVINGS = exact._MAX_HALVINGS

jit = numba.njit(cache=True, nogil=True)


@jit
def decay(elapsed: int, half_life: int) -> float:
    """:func:`models.exact.decay`, compiled (the same bits)."""
    if elapsed <= 0:
        return 1.0
    halvings = elapsed // half_life
    if halvings >= _MAX_HALVINGS:
        return 0.0
    rest = elapsed - halvings * half_life
    step = (rest << _FRACTION_BITS) // half_life
    return math.ldexp(_COARSE[step >> _FINE_BITS] * _FINE[step & _FINE_MASK], -halvings)


@jit
def decayed_add(weight: float, stamp: int, delta: float, at: int, half_life: int) -> tuple[float, int]:
    """(weight, stamp) after adding ``delta`` at event time ``at``: the sum
    is kept at the later of the two times (late deltas are decayed to it)."""
    if at >= stamp:
        if at > stamp:
            weight = weight * decay(at - stamp, half_life)
        return weight + delta, at
    return weight + delta * decay(stamp - at, half_life), stamp


# -- the item graph's adjacency: one slab of the edge pool per item --------
#
# ``start[i]``, ``count[i]``, ``cap[i]`` locate item i's out-edges in the pool
# arrays ``targets`` (int32 item index), ``weights`` (float64) and ``stamps``
# (int64 event time of the weight). A full slab moves to the pool's end with
# twice the capacity; ``meta[0]`` is the pool's used length, ``meta[1]`` the
# slots left behind in moved slabs (reclaimed by :func:`compact_pool`).


@jit
def _append_edge(row, target, weight, stamp, start, count, cap, targets, weights, stamps, meta):
    n = count[row]
    if n == cap[row]:
        new_cap = max(8, 2 * cap[row])
        begin = meta[0]
        old = start[row]
        for e in range(n):
            targets[begin + e] = targets[old + e]
            weights[begin + e] = weights[old + e]
            stamps[begin + e] = stamps[old + e]
        meta[0] = begin + new_cap
        meta[1] += cap[row]
        start[row] = begin
        cap[row] = new_cap
    p = start[row] + n
    targets[p] = target
    weights[p] = weight
    stamps[p] = stamp
    count[row] = n + 1


@jit
def _keep_strongest(row, keep, at, half_life, start, count, targets, weights, stamps):
    """Keep a row's ``keep`` strongest edges at ``at``, strongest first
    (equal weights in their current order)."""
    begin, n = start[row], count[row]
    decayed = np.empty(n, dtype=np.float64)
    for e in range(n):
        decayed[e] = weights[begin + e] * decay(at - stamps[begin + e], half_life)
    order = np.argsort(-decayed, kind="mergesort")[:keep]
    t = targets[begin : begin + n].copy()
    w = weights[begin : begin + n].copy()
    s = stamps[begin : begin + n].copy()
    for e in range(len(order)):
        targets[begin + e] = t[order[e]]
        weights[begin + e] = w[order[e]]
        stamps[begin + e] = s[order[e]]
    count[row] = len(order)


@jit
def _link(source, target, weight, at, inbound, half_life, max_neighbours, inb, inb_ts, start, count, cap, targets, weights, stamps, meta):
    """Add ``weight`` to the edge ``source -> target`` and ``inbound`` to the
    source's incoming weight (both live in the source's row)."""
    begin, n = start[source], count[source]
    found = -1
    for e in range(begin, begin + n):
        if targets[e] == target:
            found = e
            break
    if found < 0:
        _append_edge(source, target, weight, at, start, count, cap, targets, weights, stamps, meta)
    else:
        weights[found], stamps[found] = decayed_add(weights[found], stamps[found], weight, at, half_life)
    if count[source] > 2 * max_neighbours:
        _keep_strongest(source, max_neighbours, at, half_life, start, count, targets, weights, stamps)
    inb[source], inb_ts[source] = decayed_add(inb[source], inb_ts[source], inbound, at, half_life)


@jit
def observe(
    j, previous, previous_ts, ts, offset, gap_weights, backward, half_life, pop_half_life, pair_half_life, max_neighbours,
    pop, pop_ts, inb, inb_ts, row_off, dirty, start, count, cap, targets, weights, stamps, meta,
):
    """One positive engagement with item ``j`` at ``ts`` after the user's
    ``previous`` positive items (most recent first, at most the window,
    ``j`` itself left out) at times ``previous_ts``. ``offset`` < 0: no
    watermark check; otherwise rows already past it are left alone."""
    j_new = offset < 0 or row_off[j] < offset
    if j_new:
        pop[j], pop_ts[j] = decayed_add(pop[j], pop_ts[j], 1.0, ts, pop_half_life)
    for g in range(len(previous)):
        i = previous[g]
        weight = gap_weights[g + 1] * decay(abs(ts - previous_ts[g]), pair_half_life)
        if offset < 0 or row_off[i] < offset:
            _link(i, j, weight, ts, weight * backward, half_life, max_neighbours, inb, inb_ts, start, count, cap, targets, weights, stamps, meta)
            dirty[i] = True
        if j_new:
            _link(j, i, weight * backward, ts, weight, half_life, max_neighbours, inb, inb_ts, start, count, cap, targets, weights, stamps, meta)
    if j_new:
        dirty[j] = True
    if offset >= 0:
        if j_new:
            row_off[j] = offset
        for g in range(len(previous)):
            i = previous[g]
            if row_off[i] < offset:
                row_off[i] = offset


@jit
def observe_many(
    first, items, previous, previous_ts, bounds, times, guards, reserve, gap_weights, backward, half_life, pop_half_life,
    pair_half_life, max_neighbours, pop, pop_ts, inb, inb_ts, row_guard, dirty, start, count, cap, targets, weights, stamps, meta,
):
    """:func:`observe` for ops ``first``, ``first + 1``, ... in order (op k:
    item ``items[k]`` after ``previous[bounds[k]:bounds[k + 1]]``, guard
    ``guards[k]``), in one call; stops early, returning the next op, when
    fewer than ``reserve`` pool slots are left (the caller grows the pool
    and calls again)."""
    k = first
    while k < len(items):
        if len(targets) - meta[0] < reserve:
            return k
        lo, hi = bounds[k], bounds[k + 1]
        observe(items[k], previous[lo:hi], previous_ts[lo:hi], times[k], guards[k], gap_weights, backward, half_life, pop_half_life,
                pair_half_life, max_neighbours, pop, pop_ts, inb, inb_ts, row_guard, dirty, start, count, cap, targets, weights, stamps, meta)
        k += 1
    return k


@jit
def compact_pool(start, count, cap, targets, weights, stamps, meta, items):
    """Move every slab to the front of the pool, in item order (reclaims
    the slots left behind by moved slabs)."""
    t = targets.copy()
    w = weights.copy()
    s = stamps.copy()
    p = 0
    for i in range(items):
        begin, n = start[i], count[i]
        for e in range(n):
            targets[p + e] = t[begin + e]
            weights[p + e] = w[begin + e]
            stamps[p + e] = s[begin + e]
        start[i] = p
        p += cap[i]
    meta[0] = p
    meta[1] = 0


@jit
def seed_scores(seeds, powers, at, half_life, row_map, rows, inb, inb_ts, start, count, targets, weights, stamps):
    """Graph scores per catalog row for a user's seeds (graph indices, most
    recent first; -1: unknown): the sum over seeds of ``powers[age]`` times
    the seed's out-edges normalised like cosine on a bipartite graph,
    ``w(i->j) / sqrt(out(i) * in(j))`` decayed to ``at``. Returns the scores
    (float32) and per row the seed that gave the most (index into
    ``seeds``, the earliest on a tie; -1: none)."""
    scores = np.zeros(rows, dtype=np.float32)
    best = np.zeros(rows, dtype=np.float32)
    because = np.full(rows, -1, dtype=np.int64)
    for age in range(len(seeds)):
        i = seeds[age]
        if i < 0 or count[i] == 0:
            continue
        begin, n = start[i], count[i]
        decayed = np.empty(n, dtype=np.float64)
        total = 0.0
        for e in range(n):
            decayed[e] = weights[begin + e] * decay(at - stamps[begin + e], half_life)
            total += decayed[e]
        if not total > 0:
            continue
        factor = np.float32(powers[age])
        for e in range(n):
            t = targets[begin + e]
            row = row_map[t]
            if row < 0:
                continue
            inbound = inb[t] * decay(at - inb_ts[t], half_life)
            if not inbound > 0:
                continue
            contribution = factor * np.float32(decayed[e] / math.sqrt(total * inbound))
            scores[row] += contribution
            if contribution > best[row]:
                best[row] = contribution
                because[row] = age
    return scores, because


@jit
def trending_over(at, pop_half_life, row_map, rows, pop, pop_ts):
    """Trending weight per catalog row at ``at`` (float32)."""
    out = np.zeros(rows, dtype=np.float32)
    for t in range(len(row_map)):
        row = row_map[t]
        if row >= 0:
            out[row] = np.float32(pop[t] * decay(at - pop_ts[t], pop_half_life))
    return out


@jit
def decayed_row(at, half_life, begin, n, weights, stamps):
    out = np.empty(n, dtype=np.float64)
    for e in range(n):
        out[e] = weights[begin + e] * decay(at - stamps[begin + e], half_life)
    return out


# -- ranking: one user's blended scores over the catalog (or candidates) ----


@jit
def _scaled_into(values, weight, out):
    """``out = weight * values / max(values)`` (zeros when the max is tiny),
    float32 as numpy computes ``weight * (values / top)``."""
    top = values[0] if len(values) else np.float32(0.0)
    for x in range(1, len(values)):
        if values[x] > top:
            top = values[x]
    if top > 1e-12:
        for x in range(len(values)):
            out[x] = weight * (values[x] / top)
    else:
        for x in range(len(values)):
            out[x] = weight * np.float32(0.0)


@jit
def blend(
    sims, clusters_start, clusters_n, shares, taste, short, search, disliked_start, disliked_n,
    graph, trending, active, seen, w_semantic, w_graph, w_trending, long_term, short_term, search_weight, dislike_penalty,
):
    """One user's scores per column of ``sims`` (the user's vectors' cosines
    to the catalog rows or candidates): the semantic part (best interest
    scaled by its share, or the taste; plus short-term intent and search;
    minus the nearest dislike), graph and trending parts, each scaled to
    [0, 1] and weighted, summed; inactive and ``seen`` columns -inf. Returns
    (scores, semantic part, graph part, trending part, owner: the interest
    each column is closest to, -1 none, any score > 0 before masking). Every
    weight is float32, every operation the float32 one numpy would do."""
    n = sims.shape[1]
    semantic = np.zeros(n, dtype=np.float32)
    owner = np.full(n, -1, dtype=np.int64)
    if clusters_n > 0:
        for x in range(n):
            best_c = 0
            best_sim = sims[clusters_start, x]
            weighted = sims[clusters_start, x] * shares[0]
            for c in range(1, clusters_n):
                s = sims[clusters_start + c, x]
                if s > best_sim:
                    best_sim = s
                    best_c = c
                w = s * shares[c]
                if w > weighted:
                    weighted = w
            owner[x] = best_c
            semantic[x] = long_term * weighted
    elif taste >= 0:
        for x in range(n):
            semantic[x] = long_term * sims[taste, x]
    if short >= 0:
        for x in range(n):
            semantic[x] = semantic[x] + short_term * sims[short, x]
    if search >= 0:
        for x in range(n):
            semantic[x] = semantic[x] + search_weight * sims[search, x]
    if disliked_n > 0:
        for x in range(n):
            near = max(sims[disliked_start, x], np.float32(0.0))
            for d in range(1, disliked_n):
                near = max(near, max(sims[disliked_start + d, x], np.float32(0.0)))
            semantic[x] = semantic[x] - dislike_penalty * near
    for x in range(n):
        if semantic[x] < 0:
            semantic[x] = np.float32(0.0)
    sem_part = np.empty(n, dtype=np.float32)
    graph_part = np.empty(n, dtype=np.float32)
    trend_part = np.empty(n, dtype=np.float32)
    _scaled_into(semantic, w_semantic, sem_part)
    _scaled_into(graph, w_graph, graph_part)
    _scaled_into(trending, w_trending, trend_part)
    scores = np.empty(n, dtype=np.float32)
    positive = False
    for x in range(n):
        scores[x] = (sem_part[x] + graph_part[x]) + trend_part[x]
        if scores[x] > 0:
            positive = True
        if not active[x]:
            scores[x] = -np.inf
    for x in seen:
        scores[x] = -np.inf
    return scores, sem_part, graph_part, trend_part, owner, positive


@jit
def _exact_cosine(a, b, inverse_a, inverse_b):
    """:func:`models.exact.cosines` of two int64 rows (integers in [-127,
    127]): their exact dot product, in any order, then the two inverse norms,
    each a correctly rounded float32 multiply."""
    dot = 0
    for j in range(len(a)):
        dot += a[j] * b[j]
    return (np.float32(dot) * inverse_a) * inverse_b


@jit
def row_cosines(quantised, inverse_norms, rows_a, rows_b):
    """:func:`models.exact.cosines` of catalog rows ``rows_a`` against
    ``rows_b`` (float32, len(a) x len(b)): the exact integer product (int64,
    any order), then each row's and each column's inverse norm, each a
    correctly rounded float32 multiply. For the few-by-few products of a
    list's explanations, where a BLAS call costs more than the arithmetic."""
    dim = quantised.shape[1]
    a = np.empty((len(rows_a), dim), dtype=np.int64)
    b = np.empty((len(rows_b), dim), dtype=np.int64)
    for i in range(len(rows_a)):
        for j in range(dim):
            a[i, j] = np.int64(quantised[rows_a[i], j])
    for i in range(len(rows_b)):
        for j in range(dim):
            b[i, j] = np.int64(quantised[rows_b[i], j])
    out = np.empty((len(rows_a), len(rows_b)), dtype=np.float32)
    for i in range(len(rows_a)):
        for c in range(len(rows_b)):
            out[i, c] = _exact_cosine(a[i], b[c], inverse_norms[rows_a[i]], inverse_norms[rows_b[c]])
    return out


@jit
def quantise_int8(unit):
    """``np.clip(np.round(unit * 127.0), -127, 127).astype(np.int8)``, the
    stored form of a unit vector: the product in the input's precision (a
    float32 vector by a float32 127, as numpy does it), rounded half to even.
    Empty when a component is not finite (numpy's cast of those is the
    platform's: the caller takes numpy's path)."""
    out = np.empty(len(unit), dtype=np.int8)
    for j in range(len(unit)):
        if not np.isfinite(unit[j]):
            return np.empty(0, dtype=np.int8)
    scale = np.float32(127.0)
    for j in range(len(unit)):
        v = np.rint(unit[j] * scale)
        if v > 127:
            v = 127
        elif v < -127:
            v = -127
        out[j] = np.int8(v)
    return out


# -- interest labels: each positive history item votes for its nearest interest


@jit
def interest_votes(centroids, rows, signals, quantised, inverse_norms, word_start, word_ids, top):
    """The ``top`` label words of each interest (word ids, -1: none), as
    :func:`models.explain.interest_labels` chose them with ``Counter``: each
    history item (catalog ``rows``, positive ``signals``, history order)
    votes with its signal for the words ``word_ids[word_start[r]:word_start[r + 1]]``
    of the interest whose centroid (int8 rows of ``centroids``) is nearest by
    the exact cosine of :func:`models.exact.cosines`. Votes are summed in
    history order and ties go to the word voted for first, as
    ``Counter.most_common`` (a stable sort) breaks them."""
    n_clusters, dim = centroids.shape
    # models.exact.quantise_rows of the centroids as Cluster.vector() gives them
    qi = np.empty((n_clusters, dim), dtype=np.int64)
    inv_c = np.empty(n_clusters, dtype=np.float32)
    for c in range(n_clusters):
        top_abs = 0.0
        for j in range(dim):
            top_abs = max(top_abs, abs(np.float64(np.float32(centroids[c, j]) / np.float32(127.0))))
        scale = 127.0 / top_abs if top_abs > 0 else 0.0
        sq = 0.0
        for j in range(dim):
            v = np.rint(np.float64(np.float32(centroids[c, j]) / np.float32(127.0)) * scale)
            qi[c, j] = np.int64(v)
            sq += v * v  # integers: exact in any order
        norm = math.sqrt(sq)
        inv_c[c] = np.float32(1.0 / norm) if norm > 0 else np.float32(0.0)
    n = len(rows)
    slots = 0
    for i in range(n):
        slots += word_start[rows[i] + 1] - word_start[rows[i]]
    words = np.full((n_clusters, max(slots, 1)), -1, dtype=np.int64)
    sums = np.zeros((n_clusters, max(slots, 1)), dtype=np.float64)
    used = np.zeros(n_clusters, dtype=np.int64)
    item = np.empty(dim, dtype=np.int64)
    for i in range(n):
        r = rows[i]
        for j in range(dim):
            item[j] = np.int64(quantised[r, j])
        best, best_sim = 0, np.float32(-np.inf)
        for c in range(n_clusters):
            sim = _exact_cosine(item, qi[c], inverse_norms[r], inv_c[c])
            if sim > best_sim:  # the first of equal maxima, as np.argmax
                best, best_sim = c, sim
        for w in range(word_start[r], word_start[r + 1]):
            word = word_ids[w]
            slot = -1
            for s in range(used[best]):
                if words[best, s] == word:
                    slot = s
                    break
            if slot < 0:
                slot = used[best]
                words[best, slot] = word
                used[best] += 1
            sums[best, slot] += signals[i]
    out = np.full((n_clusters, top), -1, dtype=np.int64)
    for c in range(n_clusters):
        taken = np.zeros(used[c], dtype=np.bool_)
        for t in range(min(top, used[c])):
            pick = -1
            for s in range(used[c]):
                if not taken[s] and (pick < 0 or sums[c, s] > sums[c, pick]):
                    pick = s
            taken[pick] = True
            out[c, t] = words[c, pick]
    return out


# -- the interest state's vectors: numpy's float64 sums, bit for bit --------
#
# ``models.exact.dot``/``norm`` sum in float64 with ``np.add.reduce``, whose
# order is numpy's pairwise summation (8 running sums per block of up to 128,
# halves above that, on the identity 0.0): fixed on every CPU, unlike BLAS.
# ``_pairwise`` is that order, so the kernels below give the sums numpy
# gives (tests/test_interest_kernels.py checks them against numpy).


@jit
def _pairwise_block(a, lo, n):
    """numpy's sum of up to 128 values: 8 running sums, then the rest."""
    if n < 8:
        total = 0.0
        for i in range(lo, lo + n):
            total += a[i]
        return total
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    stop = n - n % 8
    while i < stop:
        b = lo + i
        r0 += a[b]
        r1 += a[b + 1]
        r2 += a[b + 2]
        r3 += a[b + 3]
        r4 += a[b + 4]
        r5 += a[b + 5]
        r6 += a[b + 6]
        r7 += a[b + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += a[lo + i]
        i += 1
    return total


@jit
def _pairwise(a, lo, n):
    """numpy's pairwise sum: above 128 values, the sum of the two halves
    (the first a multiple of 8 long). Numpy recurses; this walks the same
    tree with explicit stacks (a recursive kernel crashed numba's cache)."""
    if n <= 128:
        return _pairwise_block(a, lo, n)
    los = np.empty(128, dtype=np.int64)
    ns = np.empty(128, dtype=np.int64)
    stages = np.empty(128, dtype=np.int64)
    values = np.empty(128, dtype=np.float64)
    top, filled = 0, 0
    los[0], ns[0], stages[0] = lo, n, 0
    top = 1
    while top > 0:
        top -= 1
        start, count, stage = los[top], ns[top], stages[top]
        if count <= 128:
            values[filled] = _pairwise_block(a, start, count)
            filled += 1
        elif stage == 0:
            half = count // 2
            half -= half % 8
            # combine after both halves; the left half is summed first
            los[top], ns[top], stages[top] = start, count, 1
            los[top + 1], ns[top + 1], stages[top + 1] = start + half, count - half, 0
            los[top + 2], ns[top + 2], stages[top + 2] = start, half, 0
            top += 3
        else:
            right = values[filled - 1]
            left = values[filled - 2]
            filled -= 1
            values[filled - 1] = left + right
    return values[0]


@jit
def sum_f64(a):
    """``np.add.reduce`` of a float64 vector (the same bits)."""
    return 0.0 + _pairwise(a, 0, len(a))


@jit
def norm_f32(v):
    """:func:`models.exact.norm` of a float32 vector (the same bits)."""
    squares = np.empty(len(v), dtype=np.float64)
    for j in range(len(v)):
        x = np.float64(v[j])
        squares[j] = x * x
    return math.sqrt(sum_f64(squares))


@jit
def _unit(v):
    """``v / (exact.norm(v) or 1.0)`` as numpy computes it: float32 by the
    float32 of the norm."""
    n = norm_f32(v)
    scale = np.float32(n if n != 0.0 else 1.0)
    out = np.empty(len(v), dtype=np.float32)
    for j in range(len(v)):
        out[j] = v[j] / scale
    return out


@jit
def _stored_norm(q, half_of_q):
    """``exact.norm`` of the float16 direction an int8 direction is stored as."""
    squares = np.empty(len(q), dtype=np.float64)
    for j in range(len(q)):
        x = np.float64(half_of_q[np.int64(q[j]) + 127])
        squares[j] = x * x
    return math.sqrt(sum_f64(squares))


@jit
def fold_taste(taste_bits, taste_norm, ref_ts, vector, signal, ts, decay_of_gap, half_to_f32, half_of_q):
    """:func:`models.interest.add_to_taste` on a float32 vector: the stored
    taste (float16 bits, or none) times its norm, decayed to the later time,
    plus ``signal * vector``; returned as the int8 direction (empty: the sum
    is zero or not finite), its norm scale and the new reference time.
    ``decay_of_gap``: ``exact.decay`` of the gap between ``ts`` and the
    state's time (computed by the caller, in Python, as before)."""
    dim = len(vector)
    taste = np.zeros(dim, dtype=np.float32)
    if len(taste_bits):
        norm32 = np.float32(taste_norm)
        for j in range(dim):
            taste[j] = half_to_f32[taste_bits[j]] * norm32
    if ts >= ref_ts:
        d32 = np.float32(decay_of_gap)
        s32 = np.float32(signal)
        for j in range(dim):
            taste[j] = taste[j] * d32 + s32 * vector[j]
        ref_ts = ts
    else:  # late: (signal * decay) in float64, then by the vector in float32
        sd32 = np.float32(signal * decay_of_gap)
        for j in range(dim):
            taste[j] = taste[j] + sd32 * vector[j]
    norm = norm_f32(taste)
    if not (norm >= 1e-12) or not math.isfinite(norm):
        return np.empty(0, dtype=np.int8), 0.0, ref_ts
    n32 = np.float32(norm)
    for j in range(dim):
        taste[j] = taste[j] / n32
    q = quantise_int8(taste)
    stored = _stored_norm(q, half_of_q)
    return q, (norm / stored if stored > 0 else norm), ref_ts


@jit
def nearest_interest(centroids, vector):
    """:func:`models.interest.update_clusters`' search: the unit vector of
    ``vector``, the first of the int8 ``centroids`` with the highest cosine
    (each centroid over 127 in float32, the products summed as
    ``exact.dot`` does), and that cosine (-1, -1.0: none)."""
    unit = _unit(vector)
    best, best_cos = -1, -1.0
    products = np.empty(len(unit), dtype=np.float64)
    scale = np.float32(127.0)
    for c in range(centroids.shape[0]):
        for j in range(len(unit)):
            products[j] = np.float64(np.float32(centroids[c, j]) / scale) * np.float64(unit[j])
        cos = sum_f64(products)
        if cos > best_cos:
            best, best_cos = c, cos
    return unit, best, best_cos


@jit
def merge_centroid(centroid, current, unit, added):
    """The int8 centroid of an interest ``unit`` joins: ``centroid / 127 *
    current + unit * added`` in float32, made a unit vector and quantised."""
    scale = np.float32(127.0)
    c32, a32 = np.float32(current), np.float32(added)
    merged = np.empty(len(unit), dtype=np.float32)
    for j in range(len(unit)):
        merged[j] = (np.float32(centroid[j]) / scale) * c32 + unit[j] * a32
    return quantise_int8(_unit(merged))


@jit
def unit_int8(vector):
    """``_quantise(vector / (exact.norm(vector) or 1.0))`` of a float32 vector."""
    return quantise_int8(_unit(vector))


def warm_up() -> None:
    """Load (or compile, the first time on a machine) every kernel, so the
    first batch a worker handles does not pay for it."""
    from models.catalog import ItemCatalog, ItemMeta
    from models.graph import ItemGraph
    from models.interest import UserState
    from models.ranking import prepare_rank, rank_requests

    catalog = ItemCatalog()
    for i in range(3):
        vector = np.zeros(4, dtype=np.float32)
        vector[i] = 1.0
        catalog.upsert(f"w{i}", vector, ItemMeta(f"w{i}"))
    graph = ItemGraph()
    graph.observe([("w0", 0, 1.0)], "w1", 1, 1)
    graph.observe_foreign_many([("w2", ["w0"], [0], 2)])
    graph.take_dirty()
    state = UserState()
    rank_requests([prepare_rank(state, catalog, graph, 2)], catalog, 2)
    interest_votes(np.zeros((1, 4), dtype=np.int8), np.zeros(1, dtype=np.int64), np.ones(1), catalog.quantised,
                   catalog.inverse_norms, np.array([0, 1], dtype=np.int64), np.zeros(1, dtype=np.int64), 2)
    quantise_int8(np.zeros(4, dtype=np.float32))
    row_cosines(catalog.quantised, catalog.inverse_norms, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
    from models.interest import HALF_OF_Q, HALF_TO_F32

    one = np.ones(4, dtype=np.float32)
    fold_taste(np.zeros(4, dtype=np.uint16), 1.0, 0, one, 1.0, 1, 1.0, HALF_TO_F32, HALF_OF_Q)
    fold_taste(np.zeros(0, dtype=np.uint16), 0.0, 0, one, 1.0, 1, 1.0, HALF_TO_F32, HALF_OF_Q)
    nearest_interest(np.zeros((1, 4), dtype=np.int8), one)
    merge_centroid(np.zeros(4, dtype=np.int8), 1.0, one, 1.0)
    unit_int8(one)
    sum_f64(np.zeros(3))
