"""Catalog agent: items -> batched encoding -> the shared item-vector table.

The table is global (every worker holds all of it) and each worker mirrors it
into its in-memory catalog through the table's change listener, so this agent
only decides what to encode and writes the table.
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust
from faust.types import EventT

from agents.dead_letters import send_dead_letter
from agents.deps import AgentDeps
from models.catalog import ItemCatalog, build_ann_index, decode_stored_item, encode_stored_item, item_text, stored_item
from models.encoder import text_hash
from models.errors import StateError
from schemas import InvalidRecord, Item, decode_item
from streams.state.tables import acting_for, catalog_partition

log = logging.getLogger(__name__)

ITEM_BATCH = 256
ITEM_WINDOW_S = 0.5


def register_catalog_agent(app: faust.App, deps: AgentDeps) -> None:
    @app.agent(deps.items_topic, name="ingest-items")
    async def ingest_items(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(ITEM_BATCH, within=ITEM_WINDOW_S):
            await process_item_batch(deps, batch)


async def build_ann_index_off_loop(catalog: ItemCatalog) -> None:
    """Build the catalog's ANN index in a thread: 100,000 items take about
    half a minute on one core, and the loop keeps serving Faust's commits
    and this agent meanwhile (items changed during the build are brought in
    on first use); the events batch that asked for it waits."""
    rows, vectors = catalog.ann_snapshot()
    log.info("catalog has %d items: building its ANN index for candidate ranking", len(rows))
    started = time.monotonic()
    index = await asyncio.to_thread(build_ann_index, rows, vectors, catalog.candidates.ann)
    catalog.install_ann(index)
    log.info("ANN index of %d items built in %.1f s", len(rows), time.monotonic() - started)


async def process_item_batch(deps: AgentDeps, batch: list[EventT]) -> None:
    """Encode new or changed item texts once and store their vectors."""
    deps.metrics.observe_batch("items", len(batch))
    latest: dict[str, tuple[Item, EventT]] = {}
    for event in batch:
        message = event.message
        try:
            item = decode_item(message.value, key=message.key, limits=deps.limits)
        except InvalidRecord as error:
            await send_dead_letter(deps.dead_letter_topic, error, event)
            deps.counters.dead_letters += 1
            deps.counters.dead_letters_by_reason[error.reason.value] += 1
            continue
        latest[item.item_id] = (item, event)  # later offsets win

    to_encode: list[tuple[Item, EventT, str, bytes]] = []
    for item_id, (item, event) in latest.items():
        key = item_id.encode()
        with acting_for(event, catalog_partition()):
            if item.deleted:
                if key in deps.item_vectors:
                    del deps.item_vectors[key]
                continue
            text = item_text(item)
            digest = text_hash(text)
            if _unchanged(deps.item_vectors.get(key), item, digest):
                continue
        to_encode.append((item, event, text, digest))

    if to_encode:
        vectors = await deps.encoder.encode([text for _, _, text, _ in to_encode])
        for (item, event, _, digest), vector in zip(to_encode, vectors):
            with acting_for(event, catalog_partition()):
                deps.item_vectors[item.item_id.encode()] = encode_stored_item(stored_item(item, digest, vector))
        deps.counters.items += len(to_encode)
        log.info("catalog: %d items encoded, %d in catalog", len(to_encode), len(deps.catalog))


def _unchanged(stored: bytes | None, item: Item, digest: bytes) -> bool:
    """True when the table already holds this exact item text and metadata."""
    if stored is None:
        return False
    try:
        record = decode_stored_item(stored)
    except StateError:
        return False  # re-encode over a corrupt record
    return record.text_hash == digest and record.title == item.title and record.categories == list(item.categories)
