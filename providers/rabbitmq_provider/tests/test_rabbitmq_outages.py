"""Failures between the hosts and the broker: a broker restart mid-stream, a broker that
refuses messages. Every event is counted at the far end."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from pathlib import Path

import aio_pika
from rabbitmq_support import (
    RabbitOrderPlaced,
    bind_queue,
    drain,
    eventually,
    service_a,
    service_b,
)

from svrnty_events import EventStreaming, EventStreamingHost
from svrnty_events.config import StoreConfig
from svrnty_events.events import record

WORKFLOWS = 20


def batch(n: int, size: int) -> list:
    return [record(RabbitOrderPlaced(order_id=n + i, total=1.0), stream="orders",
                   correlation_id=f"wf-{(n + i) % WORKFLOWS}") for i in range(size)]


async def settled(host: EventStreamingHost) -> bool:
    stats = (await host.subscription_stats("to-rabbitmq"))[0]
    return stats["lag"] == 0 and stats["in_flight"] == 0


async def test_broker_restart_mid_stream_every_event_arrives_once_in_order(
        own_rabbitmq, names, tmp_path: Path):
    total, size = 1000, 10
    url = own_rabbitmq.url
    b_streaming = service_b(url, names["exchange"], names["queue"], tmp_path)
    async with service_a(url, names["exchange"]).run() as a, b_streaming.run() as b:
        appended: list[str] = []

        async def produce() -> None:
            for n in range(0, total, size):
                appended.extend(e.id for e in await a.publish("orders", batch(n, size),
                                                              external=False))
                await asyncio.sleep(0.01)  # pacing: the stream goes on through the outage

        producer = asyncio.create_task(produce())

        async def arrived(count: int) -> list:
            events = await b.read("orders")
            return events if len(events) >= count else []

        await eventually(lambda: arrived(200))
        await asyncio.to_thread(own_rabbitmq.stop)
        before = len(appended)

        async def more_appended() -> bool:
            return len(appended) >= min(before + 100, total)

        await eventually(more_appended)  # host A goes on while the broker is down
        await asyncio.to_thread(own_rabbitmq.start)
        await asyncio.wait_for(producer, 120)
        events = await eventually(lambda: arrived(total), timeout=180)
        await eventually(lambda: settled(a))
        ids = [e.id for e in events]
        assert Counter(ids) == Counter(appended)  # every event, none twice
        assert len(ids) == total
        order: dict[str, list[int]] = defaultdict(list)
        for e in events:
            order[e.correlation_id].append(e.decode().order_id)
        assert all(v == sorted(v) for v in order.values())
        assert await a.dead_letters("to-rabbitmq") == []
        await asyncio.sleep(0.5)  # a late duplicate from the broker would show up here
        assert len(await b.read("orders")) == total


async def test_a_host_stopped_while_the_broker_is_down_keeps_what_it_did_not_publish(
        own_rabbitmq, names, tmp_path: Path):
    """Host A (SQLite) holds events it cannot publish, stops within its grace while the broker
    is down, and publishes them when it starts again: nothing is lost."""
    url = own_rabbitmq.url

    def host_a() -> EventStreaming:
        streaming = service_a(url, names["exchange"])
        streaming.config.store = StoreConfig(plugin="sqlite",
                                             options={"path": str(tmp_path / "a.db")})
        streaming.config.streams[0].type = "persistent"
        return streaming

    await bind_queue(url, names["exchange"], names["queue"])
    published = []
    async with host_a().run(grace=2.0) as a:
        published += await a.publish("orders", batch(0, 50), external=False)
        await eventually(lambda: settled(a))
        await asyncio.to_thread(own_rabbitmq.stop)
        published += await a.publish("orders", batch(50, 50), external=False)
        provider = a.providers["rabbitmq"]

        async def held() -> bool:
            return provider.stats()["outbound"]["to-rabbitmq"]["broker_down"]

        await eventually(held)
        stopping = asyncio.get_running_loop().time()
    assert asyncio.get_running_loop().time() - stopping < 30  # the grace, not the outage
    await asyncio.to_thread(own_rabbitmq.start)
    async with host_a().run() as a:
        await eventually(lambda: settled(a))
        assert await a.dead_letters("to-rabbitmq") == []
    got = await drain(url, names["queue"], 100, timeout=120)
    assert {m.message_id for m in got} == {e.id for e in published}


async def test_messages_the_broker_refuses_stay_in_the_engine(rabbitmq, names):
    """A full queue with overflow = reject-publish makes the broker nack publishes: those
    events are not acked in the engine and are published again once there is room."""
    url, total = rabbitmq.url, 20
    await bind_queue(url, names["exchange"], names["queue"],
                     arguments={"x-max-length": 5, "x-overflow": "reject-publish"})
    async with service_a(url, names["exchange"]).run() as a:
        published = await a.publish("orders", batch(0, total), external=False)
        provider = a.providers["rabbitmq"]

        async def refused() -> bool:
            return provider.stats()["outbound"]["to-rabbitmq"]["refused"] >= 1

        await eventually(refused)
        stats = (await a.subscription_stats("to-rabbitmq"))[0]
        assert stats["lag"] >= total - 5  # not acked: still the engine's
        assert provider.stats()["outbound"]["to-rabbitmq"]["published"] <= 5
        got = await drain(url, names["queue"], total, timeout=120)
        await eventually(lambda: settled(a))
        assert Counter(m.message_id for m in got) == Counter(e.id for e in published)
        assert await a.dead_letters("to-rabbitmq") == []


async def test_an_unroutable_message_with_mandatory_stays_in_the_engine(rabbitmq, names):
    url = rabbitmq.url
    async with service_a(url, names["exchange"], mandatory=True).run() as a:
        published = await a.publish("orders", batch(0, 3), external=False)
        provider = a.providers["rabbitmq"]

        async def refused() -> bool:
            return provider.stats()["outbound"]["to-rabbitmq"]["refused"] >= 3

        await eventually(refused)
        assert provider.stats()["outbound"]["to-rabbitmq"]["published"] == 0
        # a queue bound now gets them all: nothing was dropped meanwhile
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(names["queue"], durable=True)
            await queue.bind(names["exchange"], "#")
        got = await drain(url, names["queue"], 3, timeout=60)
        await eventually(lambda: settled(a))
        assert sorted(m.message_id for m in got) == sorted(e.id for e in published)
