"""Host A -> RabbitMQ -> host B, against a real broker on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aio_pika
import pytest
from rabbitmq_support import (
    PlaceRabbitOrder,
    RabbitOrderPlaced,
    bind_queue,
    drain,
    eventually,
    service_a,
    service_b,
)

from svrnty_events import EventStreamingHost
from svrnty_events.events import record

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def settled(host: EventStreamingHost, subscription: str = "to-rabbitmq") -> bool:
    stats = (await host.subscription_stats(subscription))[0]
    return stats["lag"] == 0 and stats["in_flight"] == 0


async def stream_ids(host: EventStreamingHost) -> list[str]:
    return [e.id for e in await host.read("orders")]


async def test_a_command_on_host_a_reaches_a_subscription_of_host_b(rabbitmq, names,
                                                                    tmp_path: Path):
    b_streaming = service_b(rabbitmq.url, names["exchange"], names["queue"], tmp_path)
    async with service_a(rabbitmq.url, names["exchange"]).run() as a, \
            b_streaming.run() as b:
        results = [await a.send(PlaceRabbitOrder(order_id=n, total=n * 2.5,
                                                 traceparent=TRACEPARENT if n == 0 else ""))
                   for n in range(5)]
        sent = [e for r in results for e in r.events]
        got = []
        async with b.subscribe("billing", "billing-1") as deliveries:
            async for delivery in deliveries:
                got.append(delivery)
                if len(got) == len(sent):
                    break
        assert [d.id for d in got] == [e.id for e in sent]
        for d, e, n in zip(got, sent, range(5)):
            assert d.correlation_id == e.correlation_id == results[n].workflow_id
            assert d.type == "RabbitOrderPlaced"
            assert d.stream == "orders"  # host B's stream
            assert d.event == RabbitOrderPlaced(order_id=n, total=n * 2.5)
            assert d.timestamp == e.timestamp
        assert got[0].headers["traceparent"] == TRACEPARENT
        assert "traceparent" not in got[1].headers
        assert not any(h.startswith("svrnty-") for d in got for h in d.headers)
        await eventually(lambda: settled(a))
        stats = a.providers["rabbitmq"].stats()
        assert stats["outbound"]["to-rabbitmq"]["published"] == 5
        assert b.providers["rabbitmq"].stats()["inbound"][names["queue"]]["appended"] == 5


async def test_the_message_carries_the_envelope_in_its_properties(rabbitmq, names):
    await bind_queue(rabbitmq.url, names["exchange"], names["queue"])
    async with service_a(rabbitmq.url, names["exchange"]).run() as a:
        result = await a.send(PlaceRabbitOrder(order_id=7, total=1.5, traceparent=TRACEPARENT))
        [message] = await drain(rabbitmq.url, names["queue"], 1)
        event = result.events[0]
        assert message.message_id == event.id
        assert message.correlation_id == result.workflow_id
        assert message.type == "RabbitOrderPlaced"
        assert message.content_type == "application/json"
        assert message.routing_key == "orders.RabbitOrderPlaced"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.timestamp is not None and \
            int(message.timestamp.timestamp()) == int(event.timestamp.timestamp())
        assert message.headers["traceparent"] == TRACEPARENT
        assert message.headers["svrnty-stream"] == "orders"
        assert message.headers["svrnty-sequence"] == event.sequence
        assert message.body == event.data  # the event's JSON as it is stored


async def test_routing_key_template(rabbitmq, names):
    await bind_queue(rabbitmq.url, names["exchange"], names["queue"], "billing.*.wf-9")
    async with service_a(rabbitmq.url, names["exchange"],
                         routing_key="billing.{type}.{correlation_id}").run() as a:
        await a.publish("orders", [record(RabbitOrderPlaced(order_id=1, total=1.0),
                                          stream="orders", correlation_id="wf-9")],
                        external=False)
        [message] = await drain(rabbitmq.url, names["queue"], 1)
        assert message.routing_key == "billing.RabbitOrderPlaced.wf-9"


async def test_a_redelivered_message_is_not_appended_twice(rabbitmq, names, tmp_path: Path):
    async with service_b(rabbitmq.url, names["exchange"], names["queue"], tmp_path).run() as b:
        async with await aio_pika.connect(rabbitmq.url) as connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(names["exchange"])
            for _ in range(3):  # a publisher that retried twice
                await exchange.publish(aio_pika.Message(
                    b'{"order_id": 1, "total": 2.0}', message_id="evt-1",
                    correlation_id="wf-1", type="RabbitOrderPlaced",
                    content_type="application/json"), "orders.RabbitOrderPlaced")
            await exchange.publish(aio_pika.Message(
                b'{"order_id": 2, "total": 2.0}', message_id="evt-2", correlation_id="wf-1",
                type="RabbitOrderPlaced"), "orders.RabbitOrderPlaced")

        async def both() -> list[str]:
            ids = await stream_ids(b)
            return ids if "evt-2" in ids else []

        assert await eventually(both) == ["evt-1", "evt-2"]
        queue = await _queue_state(rabbitmq.url, names["queue"])
        assert queue == 0  # all four acked


async def _queue_state(url: str, queue: str) -> int:
    """Messages ready in ``queue`` (passive declare)."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        q = await channel.declare_queue(queue, passive=True)
        return q.declaration_result.message_count


async def test_a_poison_message_goes_to_the_dead_letter_exchange_with_its_reason(
        rabbitmq, names, tmp_path: Path):
    queue = names["queue"]
    async with service_b(rabbitmq.url, names["exchange"], queue, tmp_path).run() as b:
        async with await aio_pika.connect(rabbitmq.url) as connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(names["exchange"])
            key = "orders.RabbitOrderPlaced"
            # (aio-pika gives every message an id, so "no message_id" is not tried here)
            await exchange.publish(aio_pika.Message(b"{}", message_id="evt-orphan",
                                                    type="RabbitOrderPlaced"), key)
            await exchange.publish(aio_pika.Message(b"not json", message_id="evt-bad",
                                                    correlation_id="wf-1",
                                                    type="RabbitOrderPlaced"), key)
            await exchange.publish(aio_pika.Message(b"{}", message_id="evt-untyped",
                                                    correlation_id="wf-1"), key)
            await exchange.publish(aio_pika.Message(
                b'{"order_id": 3, "total": 1.0}', message_id="evt-good", correlation_id="wf-1",
                type="RabbitOrderPlaced"), key)
        assert await eventually(lambda: stream_ids(b)) == ["evt-good"]
        dead = await drain(rabbitmq.url, f"{queue}.dead-letter", 3)
        reasons = {m.message_id: m.headers["svrnty-rejected-reason"] for m in dead}
        assert set(reasons) == {"evt-orphan", "evt-bad", "evt-untyped"}
        assert "no correlation_id" in reasons["evt-orphan"]
        assert "not valid JSON" in reasons["evt-bad"]
        assert "no type" in reasons["evt-untyped"]
        assert {m.headers["svrnty-rejected-queue"] for m in dead} == {queue}
        assert {m.body for m in dead} == {b"{}", b"not json"}
        assert await _queue_state(rabbitmq.url, queue) == 0
        assert b.providers["rabbitmq"].stats()["inbound"][queue] == {"appended": 1,
                                                                     "rejected": 3}
        await asyncio.sleep(0)
        assert Counter(await stream_ids(b)) == {"evt-good": 1}


async def test_amqps_end_to_end(rabbitmq, names, tmp_path: Path):
    if rabbitmq.tls is None:
        pytest.skip("openssl is needed to make the broker's test certificate")
    url = rabbitmq.tls_url
    b_streaming = service_b(url, names["exchange"], names["queue"], tmp_path)
    async with service_a(url, names["exchange"]).run() as a, b_streaming.run() as b:
        result = await a.send(PlaceRabbitOrder(order_id=1, total=3.0))

        async def arrived() -> list[str]:
            return await stream_ids(b)

        assert await eventually(arrived) == [result.events[0].id]
        assert "cafile" not in " ".join(a.providers["rabbitmq"].endpoints())
