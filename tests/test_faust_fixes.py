"""``streams.state.faust_fixes.drain_producer_buffer_on_flush`` on Faust's real
``ProducerBuffer`` (no broker: the Kafka client is replaced by a send that
waits, like aiokafka's ``send`` waiting for metadata or a full batch)."""

from __future__ import annotations

import asyncio

import faust

from streams.state.faust_fixes import drain_producer_buffer_on_flush


async def test_flush_waits_for_a_table_write_in_transit():
    app = faust.App("faust-fixes-test", broker="kafka://127.0.0.1:1")
    buffer = app.producer.buffer
    client_ready = asyncio.Event()
    sent: list[object] = []

    async def slow_send(fut: object) -> None:
        await client_ready.wait()
        sent.append(fut)

    buffer._send_pending = slow_send  # the Kafka client's side
    drain_producer_buffer_on_flush(app)

    async def handle_pending() -> None:  # what ProducerBuffer._handle_pending does
        send = buffer._send_pending
        while True:
            message = await buffer.pending.get()
            await send(message)
            buffer.message_sent.set()

    sender = asyncio.create_task(handle_pending())
    try:
        buffer.put("state write")
        await asyncio.sleep(0.05)
        assert buffer.size == 0, "the sender took the write off the queue"
        flush = asyncio.create_task(buffer.flush())
        await asyncio.sleep(0.3)
        assert not flush.done(), "Faust's own flush returns here, with the write not yet in the client"
        client_ready.set()
        await asyncio.wait_for(flush, timeout=2.0)
        assert sent == ["state write"]
    finally:
        sender.cancel()
