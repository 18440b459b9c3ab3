"""Workarounds for faust-streaming 0.15 behaviour that breaks exactly-once
effects under kill -9 (found by ``tests/integration/test_crash.py``).

Each fix is small, names the Faust code it works around, and degrades to
Faust's own behaviour if a later Faust changes the internals it touches.
"""

from __future__ import annotations

import asyncio
import logging
import types
from typing import Any, Iterable

import faust
from faust.types import TP

log = logging.getLogger(__name__)


def drain_producer_buffer_on_flush(app: faust.App) -> None:
    """Make ``producer.flush()`` wait until every buffered table write left.

    Faust flushes the producer before it commits source offsets, so that a
    commit never passes an event whose changelog records are not written;
    recstream also flushes before it writes a graph snapshot. Two gaps in
    Faust's ``ProducerBuffer.flush`` let a flush return early, and a kill -9
    then lost state the commit or the snapshot said was safe:

    - it gives up when one message takes longer than 0.1 s to go out (a busy
      event loop is enough);
    - it waits while messages are *queued*, but the buffer's sender takes a
      message off the queue before handing it to the Kafka client, which can
      wait (metadata, a full batch): for that while the message is neither
      queued nor in the client, and the client's flush does not see it
      either. Seen under CPU contention: a few users' latest states missing
      after a take-over, behind a graph snapshot written after them.

    This flush waits until the buffer is empty and no message is in transit.
    """
    buffer = app.producer.buffer
    if not all(hasattr(buffer, name) for name in ("message_sent", "size", "_send_pending")):
        log.warning("faust ProducerBuffer changed; keeping its own flush")
        return
    buffer.in_transit = 0
    send_pending = buffer._send_pending

    async def counted_send_pending(fut: Any) -> None:
        buffer.in_transit += 1
        try:
            await send_pending(fut)
        finally:
            buffer.in_transit -= 1

    async def flush(self: Any) -> None:
        waited = 0.0
        while self.size or self.in_transit:
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                waited += 1.0
                if waited % 10 == 0:
                    log.warning("producer buffer: %d table writes still waiting after %.0f s", self.size + self.in_transit, waited)

    # ``_handle_pending`` reads ``self._send_pending`` when the buffer starts,
    # which is after the app is built
    buffer._send_pending = counted_send_pending
    buffer.flush = types.MethodType(flush, buffer)


def mark_offsets_processed(app: faust.App, tp: TP, offsets: Iterable[int]) -> int:
    """Tell Faust's consumer that ``offsets`` of ``tp`` are done.

    For the events the agent never got from Faust and read back from the
    topic itself (``streams.state.partition_log.PartitionLog.contiguous``): Faust commits only up to
    the first offset it has not seen acknowledged, so without this its
    commit for the partition stalls at that hole until a restart. Returns
    how many offsets were marked.
    """
    consumer = app.consumer
    acked = getattr(consumer, "_acked", None)
    index = getattr(consumer, "_acked_index", None)
    committed = getattr(consumer, "_committed_offset", {}).get(tp)
    if acked is None or index is None:
        return 0
    marked = 0
    for offset in offsets:
        if (committed is None or offset >= committed) and offset not in index[tp]:
            index[tp].add(offset)
            acked[tp].append(offset)
            marked += 1
    return marked


def cap_fetch_wait(max_wait_ms: int) -> None:
    """Let the worker's consumer wait at most ``max_wait_ms`` in a fetch.

    Faust 0.15 hard-codes ``fetch_max_wait_ms=1500`` for the worker's
    consumer. Apache Kafka answers a waiting fetch as soon as a record
    arrives, so there it only bounds idle polling; the embedded broker
    (Tansu) answers only when the wait is over, which put 0.1-1.5 s of pure
    waiting between an event and its list (measured: p50 320 ms at 1500 ms,
    5 ms at 50 ms). Applies to every Faust app in the process.
    """
    from faust.transport.drivers import aiokafka as driver

    original = getattr(driver.AIOKafkaConsumerThread._create_worker_consumer, "__wrapped__", driver.AIOKafkaConsumerThread._create_worker_consumer)

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        if hasattr(consumer, "_fetch_max_wait_ms"):  # read when the consumer starts
            consumer._fetch_max_wait_ms = min(consumer._fetch_max_wait_ms, max_wait_ms)
            log.info("consumer fetches wait at most %d ms", consumer._fetch_max_wait_ms)
        return consumer

    create_worker_consumer.__wrapped__ = original  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer
