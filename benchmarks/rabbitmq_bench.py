"""Outbound RabbitMQ throughput: events of a subscription published by the ``rabbitmq``
provider with publisher confirms (and acked in the engine), against raw aio-pika publishing the
same messages with confirms, in windows of the same size, to the same broker and queue, in
alternating rounds."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import aio_pika

from svrnty_events import EventStreaming
from svrnty_events_rabbitmq.server import RabbitMQServer, find_rabbitmq_server

from .common import Result, ticks

WINDOW = 256


async def _queue(url: str, exchange: str, queue: str) -> None:
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        ex = await channel.declare_exchange(exchange, "topic", durable=True)
        q = await channel.declare_queue(queue, durable=True)
        await q.bind(ex, "#")
        await q.purge()


async def raw(url: str, exchange: str, n: int) -> float:
    """aio-pika alone: the same messages, ``WINDOW`` published and confirmed at a time."""
    body = b'{"n":1,"sent_ns":0}'
    now = datetime.now(timezone.utc)
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        ex = await channel.get_exchange(exchange)
        started = time.perf_counter()
        for first in range(0, n, WINDOW):
            await asyncio.gather(*(ex.publish(aio_pika.Message(
                body, content_type="application/json", message_id=uuid.uuid4().hex,
                correlation_id="bench", type="Tick", timestamp=now, app_id="svrnty-events",
                headers={"svrnty-stream": "s", "svrnty-sequence": i,
                         "svrnty-timestamp": now.isoformat()},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT), "s.Tick")
                for i in range(first, min(first + WINDOW, n))))
        return n / (time.perf_counter() - started)


async def ours(url: str, exchange: str, n: int) -> float:
    """The provider: ``n`` events appended, published and confirmed, acked in the engine."""
    streaming = EventStreaming()
    streaming.add_stream("s")
    streaming.add_subscription("s", "out", mode="exclusive", window=WINDOW)
    streaming.add_delivery("rabbitmq", url=url, exchange=exchange,
                           outbound=[{"subscription": "out", "window": WINDOW}])
    events = ticks("s", n)
    async with streaming.run() as host:
        started = time.perf_counter()
        for first in range(0, n, 1000):
            await host.publish("s", events[first:first + 1000], external=False)
        provider = host.providers["rabbitmq"]
        while provider.stats()["outbound"]["out"]["published"] < n:
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - started
    return n / elapsed


async def run(quick: bool, progress) -> list[Result]:  # type: ignore[no-untyped-def]
    if find_rabbitmq_server() is None:
        progress("rabbitmq: skipped (rabbitmq-server is not installed)")
        return []
    n = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as folder:
        server = RabbitMQServer(Path(folder))
        progress("rabbitmq: starting a broker")
        server.start()
        try:
            exchange, queue = "bench.events", "bench.events.queue"
            without: list[float] = []
            with_it: list[float] = []
            for r in range(3):
                progress(f"rabbitmq outbound: round {r + 1} of 3 ({n:,} events each way)")
                await _queue(server.url, exchange, queue)
                without.append(await raw(server.url, exchange, n))
                await _queue(server.url, exchange, queue)
                with_it.append(await ours(server.url, exchange, n))
        finally:
            server.close()
    base, best = max(without), max(with_it)
    return [Result("rabbitmq outbound (confirms, window 256)", best,
                   baseline="raw aio-pika publish + confirms", baseline_events_per_s=base,
                   ratio=best / base)]
