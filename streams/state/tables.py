"""RocksDB-backed Faust tables and the helpers that write to them safely."""

from __future__ import annotations

import contextlib
import logging
import weakref
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Iterator

import faust
from faust.streams import _current_event
from faust.types import TP, EventT

from streams.settings import Settings
from streams.kafka.topics import ITEM_GRAPH_TABLE, ITEM_VECTORS_TABLE, ITEMS_PARTITIONS, USER_STATE_TABLE

log = logging.getLogger(__name__)

ChangeListener = Callable[[str, "bytes | None"], None]


class _OnPartition:
    """An event as a table write sees it, moved to another partition: the
    item table's changelog has one partition, whatever ``items`` has."""

    __slots__ = ("message", "__weakref__")

    def __init__(self, event: EventT, partition: int) -> None:
        message = event.message
        self.message = SimpleNamespace(topic=message.topic, partition=partition, offset=message.offset, timestamp=message.timestamp)


@contextlib.contextmanager
def acting_for(event: EventT, partition: int | None = None) -> Iterator[None]:
    """Make ``event`` the current event while writing a table.

    Faust routes a table write to the partition of the *current* event, and
    ``Stream.take_events`` (our batching) runs its consumer in another task,
    so inside the batch there is none (faust-streaming issue 497). Setting it
    per write sends every changelog record to the partition the user's events
    came from, which is what recovery after a restart reads back. (We do not
    use ``Stream._set_current_event``: it also moves the stream's own pointer
    and can leave an event un-acked.)
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def partition_items(table: faust.Table, partition: int, after: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
    """Up to ``limit`` raw (key, value) pairs of one partition of a RocksDB
    table, in key order, after key ``after`` (``None``: from the start).

    Faust has no public per-partition iteration; this reads the store's
    per-partition database directly (read only), which is what a sweep over
    millions of keys needs: a cursor, not a full scan per call.
    """
    store = table.data
    db = store._db_for_partition(partition)  # faust.stores.rocksdb.Store
    out: list[tuple[bytes, bytes]] = []
    for key, value in db.items(from_key=after) if after is not None else db.items():
        if key == after or key == store.offset_key:
            continue
        out.append((key, value))
        if len(out) >= limit:
            break
    return out


def count_partition_keys(table: faust.Table, partition: int) -> int | None:
    """Keys in one partition of a RocksDB table, or ``None`` when this
    worker has no open database for it (not assigned, or not yet opened).

    Reads the store's already-open per-partition database only: opening one
    for a partition another worker owns would be a side effect of a scrape.
    """
    store = table.data
    db = getattr(store, "_dbs", {}).get(partition)  # faust.stores.rocksdb.Store
    if db is None:
        return None
    return sum(1 for key in db.keys() if key != store.offset_key)


class ObservedGlobalTable(faust.GlobalTable):
    """A GlobalTable that reports every change, local or from the changelog.

    The worker mirrors the item table into an in-memory matrix for ranking;
    this keeps the mirror in step on every worker: local writes arrive through
    ``on_key_set``/``on_key_del``, other workers' writes and recovery through
    ``apply_changelog_batch``. The listener must be idempotent.
    """

    def __init__(self, *args: Any, on_change: ChangeListener, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_change = on_change
        self._mirrored_store = False

    async def on_recovery_completed(self, active_tps: Any, standby_tps: Any) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        if not self._mirrored_store:
            # A restart on an existing data dir recovers only the changelog
            # records written since the store's persisted offset; the rest is
            # already on disk and never passes apply_changelog_batch, so the
            # listener hears of it here, once per process.
            self._mirrored_store = True
            count = 0
            for key, value in self.data.items():
                self._on_change(_text(key), value)
                count += 1
            log.info("%s: %d rows loaded from the local store", self.name, count)

    def partition_for_key(self, key: Any) -> int | None:
        # One changelog partition, written from any partition of ``items``
        # (the writes act for partition 0, see acting_for): Faust's check that
        # the source topic has as many partitions does not apply.
        return catalog_partition()

    def on_key_set(self, key: Any, value: Any) -> None:
        super().on_key_set(key, value)
        self._on_change(_text(key), value)

    def on_key_del(self, key: Any) -> None:
        super().on_key_del(key)
        self._on_change(_text(key), None)

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        events = list(batch)
        super().apply_changelog_batch(events)
        for event in events:
            value = None if event.message.value is None else event.value
            self._on_change(_text(self._to_key(event.key)), value)


def _text(key: Any) -> str:
    return key.decode() if isinstance(key, (bytes, bytearray)) else str(key)


def store_options(settings: Settings) -> dict[str, int]:
    """RocksDB options for every partition store of recstream's tables.

    Faust's defaults give each partition's database a 2 GiB block cache and
    up to 3 memtables of 64 MiB, so a worker's memory kept climbing for
    hundreds of thousands of events (the caches filling up) before it could
    level off. These bound each store to ``2 * write buffer + block cache``.
    """
    return {
        "write_buffer_size": settings.rocksdb_write_buffer_mb * 2**20,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.rocksdb_block_cache_mb * 2**20,
        "block_cache_compressed_size": settings.rocksdb_block_cache_mb * 2**20,
    }


def user_state_table(app: faust.App, settings: Settings) -> faust.Table:
    """user_id -> msgpack interest state, partitioned like ``events``."""
    return app.Table(
        USER_STATE_TABLE,
        partitions=settings.partitions,
        key_type=bytes,  # bytes types make Faust use the raw codec for
        value_type=bytes,  # store and changelog; models own the encoding
        help="Per-user interest state (models.interest.UserState, msgpack)",
        options=store_options(settings),
    )


def item_graph_table(app: faust.App, settings: Settings) -> faust.Table:
    """``<partition>/<item_id>`` -> graph row, one graph per ``events`` partition.

    Rows are written in the context of that partition's events, so each
    partition's graph lives (and recovers) with the partition. The key prefix
    lets a worker load one partition's rows through the public table API.
    """
    return app.Table(
        ITEM_GRAPH_TABLE,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        help="Per-partition item graph (models.graph.GraphRow, msgpack)",
        options=store_options(settings),
    )


GRAPH_OFFSET_KEY = "\x00offset"


def graph_row_key(partition: int, item_id: str) -> bytes:
    """Key of one item's graph row in the partition's graph."""
    return f"{partition}/{item_id}".encode()


def graph_offset_key(partition: int) -> bytes:
    """Key of the partition graph's offset watermark."""
    return graph_row_key(partition, GRAPH_OFFSET_KEY)


def partition_graph_records(
    records: Iterable[tuple[bytes, "bytes | None"]], partition: int
) -> tuple[int, list[tuple[str, bytes]]]:
    """(offset watermark, [(item_id, row bytes)]) of one partition's graph,
    from the item-graph table's or changelog's key/value pairs."""
    mark, rows = partition_graph_snapshot(records, partition)
    return (int(mark.split()[0]) if mark else -1), rows


def partition_graph_snapshot(
    records: Iterable[tuple[bytes, "bytes | None"]], partition: int
) -> tuple[str | None, list[tuple[str, bytes]]]:
    """(the graph's mark, ``models.graph.ItemGraph.mark``, or None, and its
    rows) of one partition, from the table's or changelog's pairs."""
    prefix = f"{partition}/".encode()
    mark, rows = None, []
    for key, value in records:
        if value is None or not key.startswith(prefix):
            continue
        name = key[len(prefix) :].decode()
        if name == GRAPH_OFFSET_KEY:
            mark = value.decode()
        else:
            rows.append((name, value))
    return mark, rows


def catalog_partition() -> int:
    """The item table's changelog partition, which every catalog write goes to."""
    return ITEMS_PARTITIONS - 1


def item_vector_table(app: faust.App, settings: Settings, on_change: ChangeListener) -> ObservedGlobalTable:
    """item_id -> stored item (vector, text hash, title), on every worker."""
    table = ObservedGlobalTable(
        app,
        name=ITEM_VECTORS_TABLE,
        beacon=app.tables.beacon,
        partitions=ITEMS_PARTITIONS,
        standby_buffer_size=1,
        recovery_buffer_size=1,
        is_global=True,
        key_type=bytes,  # bytes types make Faust use the raw codec for
        value_type=bytes,  # store and changelog; models own the encoding
        help="Item vectors (models.catalog.StoredItem, msgpack)",
        on_change=on_change,
        options=store_options(settings),
    )
    return app.tables.add(table)


def recover_to_true_end(app: faust.App, settings: Settings) -> None:
    """Make Faust's table recovery read each changelog to its true end.

    Recovery reads a changelog partition up to the end offset the broker
    reports (ListOffsets). The embedded broker (Tansu 0.6) reports the base
    offset of the last record batch + 1, so recovery stopped after the first
    record of the last batch and the rest of that batch -- often hundreds of
    state writes of one agent batch -- never reached the new owner's store:
    after a take-over, users lost their latest events. This asks
    :func:`streams.kafka.clients.end_offsets` (which finds the true end) instead.
    Only for Tansu; Apache Kafka reports the end correctly.
    """
    from streams.kafka.clients import end_offsets

    consumer = app.consumer

    async def true_highwaters(*partitions: TP) -> dict[TP, int]:
        by_topic: dict[str, list[TP]] = {}
        for tp in partitions:
            by_topic.setdefault(tp.topic, []).append(tp)
        out: dict[TP, int] = {}
        for topic, tps in by_topic.items():
            ends = await end_offsets(settings, topic, wait_s=5.0)
            for tp in tps:
                out[tp] = ends.get(tp.partition, 0)
        return out

    consumer.highwaters = true_highwaters  # type: ignore[method-assign]



def read_in_partition(table: faust.Table, partition: int, key: bytes) -> bytes | None:
    """The raw value of ``key`` in one partition of a RocksDB table, read
    outside any event (an API request): straight from that partition's
    database, which the caller has checked this worker owns."""
    store = table.data
    return store._db_for_partition(partition).get(key)  # faust.stores.rocksdb.Store
