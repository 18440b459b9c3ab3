"""Live quality: does the list predict what the user does next?

The offline evaluation's twin on the stream. Each user's state keeps
hashes of the items of their latest list (the one published after their
previous batch of events); every new event with an item is looked up there
before it is folded in: a hit at rank r counts for every HR@k with k > r.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from models.interest import UserState

HIT_KS = (1, 5, 10)
KEPT = max(HIT_KS)  # items of a list remembered per user


def item_hash(item_id: str) -> int:
    """32-bit hash of an item id (a collision only blurs the metric)."""
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=4).digest(), "little")


def remember_list(state: UserState, item_ids: Sequence[str]) -> None:
    """Keep the first :data:`KEPT` items of the user's new list."""
    state.last_list = np.array([item_hash(i) for i in item_ids[:KEPT]], dtype=np.uint32).tobytes()


def rank_in_last_list(state: UserState, item_id: str) -> int | None:
    """0-based rank of ``item_id`` in the user's latest list, or ``None``."""
    if not state.last_list:
        return None
    hits = np.flatnonzero(np.frombuffer(state.last_list, dtype=np.uint32) == np.uint32(item_hash(item_id)))
    return int(hits[0]) if len(hits) else None


@dataclass
class OnlineQuality:
    """Events looked up and hits at each k (integer counters)."""

    events: int = 0
    hits: dict[int, int] = field(default_factory=lambda: dict.fromkeys(HIT_KS, 0))

    def observe(self, state: UserState, item_id: str) -> None:
        """One event with ``item_id``, before it is folded into ``state``.
        Users without a list yet are not counted (nothing was predicted)."""
        if not state.last_list:
            return
        self.events += 1
        rank = rank_in_last_list(state, item_id)
        if rank is not None:
            for k in HIT_KS:
                if rank < k:
                    self.hits[k] += 1

    def add(self, other: OnlineQuality) -> None:
        self.events += other.events
        for k, n in other.hits.items():
            self.hits[k] = self.hits.get(k, 0) + n

    def hit_rate(self, k: int = 10) -> float | None:
        return self.hits.get(k, 0) / self.events if self.events else None
