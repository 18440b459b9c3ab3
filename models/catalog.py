"""The in-memory item matrix that ranking scores against.

Item vectors live durably in the shared item table; this is the worker's
dense copy of it (one row per item, float32, L2-normalised), beside the same
rows quantised to integers (:mod:`models.exact`) so that scoring every
touched user of a batch is a single matrix product whose bits do not depend
on the machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import msgspec
import numpy as np

from models import exact
from models.ann import AnnIndex, AnnParams
from models.errors import StateError
from schemas.records import Item


@dataclass(frozen=True)
class ItemMeta:
    """What ranking and explanations need to know about an item besides its vector."""

    title: str
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class CandidateSearch:
    """When ranking switches from scoring every item to scoring candidates
    from an ANN index (``models.ann``): a catalog of ``min_items`` active
    items or more (0 = never); ``per_vector`` nearest items per user vector."""

    min_items: int = 50_000
    per_vector: int = 200
    ann: AnnParams = AnnParams()


@dataclass
class ItemCatalog:
    """Growable matrix of item vectors with an id index.

    Deleted items keep their row (so row numbers stay stable for the rest of
    the batch) but are masked out of every ranking. A large catalog also
    keeps an ANN index of its rows (:meth:`ann_index`), updated lazily from
    the rows changed since it was last read.
    """

    dim: int = 0  # 0 = taken from the first vector added
    candidates: CandidateSearch = field(default_factory=lambda: CandidateSearch(min_items=0))
    _ids: list[str] = field(default_factory=list)
    _rows: dict[str, int] = field(default_factory=dict)
    _meta: list[ItemMeta] = field(default_factory=list)
    _matrix: np.ndarray = field(init=False)
    _quantised: np.ndarray = field(init=False)  # rows as integers in [-127, 127] (float32)
    _inverse_norms: np.ndarray = field(init=False)  # 1 / norm of each quantised row (float32)
    _active: np.ndarray = field(init=False)
    _removals: int = 0
    _edits: int = 0  # every change of a row's vector
    _transposed: tuple[int, np.ndarray] | None = None  # (_edits it was made at, matrix.T contiguous)
    _ann: AnnIndex | None = None
    _ann_stale: set[int] = field(default_factory=set)  # rows changed since the index was read
    _ann_tracking: bool = False  # an index is built or being built: record changed rows
    # interest-label words of each row (ids into _words), flattened for the
    # label kernel on first use after a change (models.explain.interest_labels)
    _word_ids: dict[str, int] = field(default_factory=dict)
    _words: list[str] = field(default_factory=list)
    _row_words: list[tuple[int, ...]] = field(default_factory=list)
    _words_flat: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        self._matrix = np.zeros((0, self.dim), dtype=np.float32)
        self._quantised = np.zeros((0, self.dim), dtype=np.float32)
        self._inverse_norms = np.zeros(0, dtype=np.float32)
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
            self._quantised = np.zeros((0, self.dim), dtype=np.float32)
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
            self._row_words.append(self._label_word_ids(meta))
        else:
            self._meta[row] = meta
            self._row_words[row] = self._label_word_ids(meta)
            if not self._active[row]:
                self._removals += 1  # reactivated: row maps must be rebuilt
        self._matrix[row] = vector
        quantised, norm = exact.quantise(self._matrix[row])
        self._quantised[row] = quantised
        self._inverse_norms[row] = exact.inverse(np.array([norm]))[0]
        self._active[row] = True
        self._edits += 1
        if self._ann_tracking:
            self._ann_stale.add(row)

    def remove(self, item_id: str) -> None:
        """Stop recommending an item (catalog deletion)."""
        row = self._rows.get(item_id)
        if row is not None:
            self._active[row] = False
            self._matrix[row] = 0.0
            self._quantised[row] = 0.0
            self._inverse_norms[row] = 0.0
            self._removals += 1
            self._edits += 1
            if self._ann_tracking:
                self._ann_stale.add(row)

    def _label_word_ids(self, meta: ItemMeta) -> tuple[int, ...]:
        # an item labels an interest by its categories, else by its first
        # two longer title words
        words = meta.categories or tuple(w for w in meta.title.split() if len(w) > 3)[:2]
        self._words_flat = None
        return tuple(self._word_ids.setdefault(w, len(self._word_ids)) for w in words)

    def label_words(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Every row's label words as flat arrays: row r's word ids are
        ``word_ids[word_start[r]:word_start[r + 1]]``, named by ``words``."""
        if self._words_flat is None:  # every upsert resets it
            self._words = list(self._word_ids)
            lengths = np.fromiter((len(w) for w in self._row_words), dtype=np.int64, count=len(self._row_words))
            word_start = np.zeros(len(self._row_words) + 1, dtype=np.int64)
            np.cumsum(lengths, out=word_start[1:])
            word_ids = np.fromiter((i for w in self._row_words for i in w), dtype=np.int64, count=int(word_start[-1]))
            self._words_flat = (word_start, word_ids)
        return self._words_flat[0], self._words_flat[1], self._words

    def _grow(self) -> None:
        size = max(64, len(self._matrix) * 2)
        used = len(self._matrix)
        matrix = np.zeros((size, self.dim), dtype=np.float32)
        matrix[:used] = self._matrix
        quantised = np.zeros((size, self.dim), dtype=np.float32)
        quantised[:used] = self._quantised
        inverse_norms = np.zeros(size, dtype=np.float32)
        inverse_norms[:used] = self._inverse_norms
        active = np.zeros(size, dtype=bool)
        active[:used] = self._active
        self._matrix, self._quantised, self._inverse_norms, self._active = matrix, quantised, inverse_norms, active

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
    def revision(self) -> int:
        """Changes whenever any row's vector changes (added, updated or
        removed): a cache key for answers that read the vectors."""
        return self._edits

    @property
    def matrix(self) -> np.ndarray:
        """Rows ``0..n`` of the item matrix (a view; inactive rows are zero)."""
        return self._matrix[: len(self._ids)]

    @property
    def quantised(self) -> np.ndarray:
        """Rows ``0..n`` quantised to integers in [-127, 127] (float32; see
        :func:`models.exact.quantise`): what every similarity is computed from."""
        return self._quantised[: len(self._ids)]

    @property
    def inverse_norms(self) -> np.ndarray:
        """``1 / norm`` of each quantised row (float32, 0 for inactive rows)."""
        return self._inverse_norms[: len(self._ids)]

    @property
    def quantised_t(self) -> np.ndarray:
        """The quantised matrix transposed, C-contiguous, (dim, rows): what
        the similarity products multiply by. BLAS runs the small products of
        ranking about twice as fast on it as on the transposed view; it is
        rebuilt on the first product after the catalog changed (items change
        far less often than users are ranked)."""
        if self._transposed is None or self._transposed[0] != self._edits or self._transposed[1].shape[1] != len(self._ids):
            self._transposed = (self._edits, np.ascontiguousarray(self.quantised.T))
        return self._transposed[1]

    def ann_due(self) -> bool:
        """Whether the catalog has reached ``candidates.min_items`` active
        items and has no ANN index yet (build one: :meth:`ann_snapshot`)."""
        return self._ann is None and bool(self.candidates.min_items) and len(self) >= self.candidates.min_items

    def ann_snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """The active rows and a copy of their vectors, to build the index
        from (:func:`build_ann_index`, in a thread if need be); rows changed
        from now on are brought into the index after :meth:`install_ann`."""
        self._ann_tracking = True
        self._ann_stale.clear()
        rows = np.flatnonzero(self.active)
        return rows, self.matrix[rows].copy()

    def install_ann(self, index: AnnIndex) -> None:
        self._ann = index

    def ann_index(self) -> AnnIndex | None:
        """The ANN index of the active rows once the catalog has
        ``candidates.min_items`` active items (``None`` below, and ranking
        scores every item). Built here on first use unless built already
        (the worker builds it in a thread: 100,000 items take half a minute
        on one core), then brought up to date with the rows changed since
        the last call, in one batch: HNSW inserts are far cheaper batched,
        and items change far less often than users are ranked. It is kept
        once built, even if deletions take the catalog back under the
        threshold (no flapping between the two paths)."""
        if self._ann is None:
            if not self.ann_due():
                return None
            self.install_ann(build_ann_index(*self.ann_snapshot(), self.candidates.ann))
        if self._ann_stale:
            stale = np.fromiter(sorted(self._ann_stale), dtype=np.int64)
            self._ann_stale.clear()
            live = stale[self._active[stale]]
            assert self._ann is not None
            self._ann.remove(stale[~self._active[stale]])
            self._ann.add(live, self._matrix[live])
        return self._ann

    @property
    def active(self) -> np.ndarray:
        return self._active[: len(self._ids)]


def build_ann_index(rows: np.ndarray, vectors: np.ndarray, params: AnnParams) -> AnnIndex:
    """An ANN index of ``vectors`` keyed by catalog ``rows`` (thread-safe: it
    touches no catalog)."""
    index = AnnIndex(vectors.shape[1], params)
    index.add(rows, vectors)
    return index


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
