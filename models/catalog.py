"""The in-memory item matrix that ranking scores against.

Item vectors live durably in the shared item table; this is the worker's
dense copy of it (one row per item, float32, L2-normalised) so that scoring
every touched user of a batch is a single matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import msgspec
import numpy as np

from models.errors import StateError
from schemas.records import Item


@dataclass(frozen=True)
class ItemMeta:
    """What ranking and explanations need to know about an item besides its vector."""

    title: str
    categories: tuple[str, ...] = ()


@dataclass
class ItemCatalog:
    """Growable matrix of item vectors with an id index.

    Deleted items keep their row (so row numbers stay stable for the rest of
    the batch) but are masked out of every ranking.
    """

    dim: int = 0  # 0 = taken from the first vector added
    _ids: list[str] = field(default_factory=list)
    _rows: dict[str, int] = field(default_factory=dict)
    _meta: list[ItemMeta] = field(default_factory=list)
    _matrix: np.ndarray = field(init=False)
    _active: np.ndarray = field(init=False)
    _removals: int = 0

    def __post_init__(self) -> None:
        self._matrix = np.zeros((0, self.dim), dtype=np.float32)
        self._active = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return int(self._active[: len(self._ids)].sum())

    def __contains__(self, item_id: object) -> bool:
        row = self._rows.get(item_id)  # type: ignore[arg-type]
        return row is not None and bool(self._active[row])

    def upsert(self, item_id: str, vector: np.ndarray, meta: ItemMeta) -> None:
        """Add an item or replace its vector and metadata."""
        if self.dim == 0:
            self.dim = int(vector.shape[-1])
            self._matrix = np.zeros((0, self.dim), dtype=np.float32)
        elif vector.shape[-1] != self.dim:
            raise ValueError(f"item {item_id!r} has dimension {vector.shape[-1]}, catalog has {self.dim}")
        row = self._rows.get(item_id)
        if row is None:
            row = len(self._ids)
            if row == len(self._matrix):
                self._grow()
            self._ids.append(item_id)
            self._rows[item_id] = row
            self._meta.append(meta)
        else:
            self._meta[row] = meta
            if not self._active[row]:
                self._removals += 1  # reactivated: row maps must be rebuilt
        self._matrix[row] = vector
        self._active[row] = True

    def remove(self, item_id: str) -> None:
        """Stop recommending an item (catalog deletion)."""
        row = self._rows.get(item_id)
        if row is not None:
            self._active[row] = False
            self._matrix[row] = 0.0
            self._removals += 1

    def _grow(self) -> None:
        size = max(64, len(self._matrix) * 2)
        matrix = np.zeros((size, self.dim), dtype=np.float32)
        matrix[: len(self._matrix)] = self._matrix
        active = np.zeros(size, dtype=bool)
        active[: len(self._active)] = self._active
        self._matrix, self._active = matrix, active

    def row_of(self, item_id: str) -> int | None:
        """Row of an active item, or ``None``."""
        row = self._rows.get(item_id)
        return row if row is not None and self._active[row] else None

    def rows_of(self, item_ids: Iterable[str]) -> list[int]:
        """Rows of the active items among ``item_ids`` (unknown ones skipped)."""
        rows = []
        for item_id in item_ids:
            row = self.row_of(item_id)
            if row is not None:
                rows.append(row)
        return rows

    def vector(self, item_id: str) -> np.ndarray | None:
        row = self.row_of(item_id)
        return None if row is None else self._matrix[row]

    def item_id(self, row: int) -> str:
        return self._ids[row]

    def meta(self, item_id: str) -> ItemMeta | None:
        row = self._rows.get(item_id)
        return None if row is None else self._meta[row]

    def size(self) -> int:
        """Rows in use (active or not)."""
        return len(self._ids)

    def version(self) -> tuple[int, int]:
        """Changes whenever rows are added or removed (cache key)."""
        return (len(self._ids), self._removals)

    @property
    def matrix(self) -> np.ndarray:
        """Rows ``0..n`` of the item matrix (a view; inactive rows are zero)."""
        return self._matrix[: len(self._ids)]

    @property
    def active(self) -> np.ndarray:
        return self._active[: len(self._ids)]


class StoredItem(msgspec.Struct, array_like=True, frozen=True):
    """An item's row in the shared item-vector table (msgpack bytes).

    ``text_hash`` lets the catalog agent skip re-encoding an item re-published
    with the same text; the vector is float16 (half the bytes, same ranks).
    """

    text_hash: bytes
    vector: bytes
    title: str
    categories: list[str]

    def as_array(self) -> np.ndarray:
        return np.frombuffer(self.vector, dtype=np.float16).astype(np.float32)


_stored_encoder = msgspec.msgpack.Encoder()
_stored_decoder = msgspec.msgpack.Decoder(StoredItem)


def item_text(item: Item) -> str:
    """The text an item is embedded from: title, then categories, then description."""
    parts = [item.title.strip()]
    if item.categories:
        parts.append(", ".join(c.strip() for c in item.categories if c.strip()))
    if item.description.strip():
        parts.append(item.description.strip())
    return ". ".join(p for p in parts if p)


def stored_item(item: Item, text_key: bytes, vector: np.ndarray) -> StoredItem:
    return StoredItem(
        text_hash=text_key,
        vector=np.asarray(vector, dtype=np.float16).tobytes(),
        title=item.title,
        categories=list(item.categories),
    )


def encode_stored_item(record: StoredItem) -> bytes:
    return _stored_encoder.encode(record)


def decode_stored_item(data: bytes) -> StoredItem:
    try:
        return _stored_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise StateError(f"corrupt item-vector record ({len(data)} bytes): {exc}") from exc


def apply_stored_item(catalog: ItemCatalog, item_id: str, data: bytes | None) -> None:
    """Mirror one item-table change (set or delete) into the in-memory catalog."""
    if data is None:
        catalog.remove(item_id)
        return
    record = decode_stored_item(data)
    catalog.upsert(item_id, record.as_array(), ItemMeta(record.title, tuple(record.categories)))
