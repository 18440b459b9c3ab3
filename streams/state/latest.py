"""The latest list the worker published per user, for lookups.

The lists go to the compacted ``recommendations`` topic; a lookup must
answer from memory, now. Each entry remembers the offset watermark of the
user state the list was ranked from, and a lookup takes it only while the
user's stored state is still at that offset: a list from before a later
event (ranked by another worker while the partition was away, say), or
from before a ``forget``, is never served. Bounded (least recently
published out first), so memory stays flat however many users there are.
"""

from __future__ import annotations

from collections import OrderedDict


class LatestLists:
    """user key -> (state offset, encoded list), at most ``capacity`` users."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lists: OrderedDict[bytes, tuple[int, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lists)

    def published(self, key: bytes, state_offset: int, value: bytes | None) -> None:
        """A list (``None``: a tombstone) went out for the state at ``state_offset``."""
        if value is None or self.capacity <= 0:
            self._lists.pop(key, None)
            return
        self._lists[key] = (state_offset, value)
        self._lists.move_to_end(key)
        while len(self._lists) > self.capacity:
            self._lists.popitem(last=False)

    def get(self, key: bytes, state_offset: int) -> bytes | None:
        """The list ranked from the state at ``state_offset``, if kept."""
        entry = self._lists.get(key)
        if entry is None or entry[0] != state_offset:
            return None
        return entry[1]

    def forget_all(self) -> None:
        self._lists.clear()
