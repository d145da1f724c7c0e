"""Test support: the two services (orders on host A publishes, billing on host B consumes
through RabbitMQ) and waiting helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import msgspec

from svrnty_events import Event, EventStreaming, Workflow
from svrnty_events.testing import eventually as _eventually
from svrnty_events.testing import within

TIMEOUT = 60.0


class RabbitOrderPlaced(Event):
    order_id: int
    total: float


class RabbitOrderWorkflow(Workflow):
    pass


class PlaceRabbitOrder(msgspec.Struct):
    order_id: int
    total: float
    #: a W3C trace context the client sends along (as a traced caller would)
    traceparent: str = ""


def service_a(url: str, exchange: str, /, *, subscription: dict[str, Any] | None = None,
              **outbound: Any) -> EventStreaming:
    """Host A: stream ``orders`` (RabbitOrderWorkflow), subscription ``to-rabbitmq`` published
    to ``exchange``."""
    streaming = EventStreaming()
    streaming.add_stream(RabbitOrderWorkflow, name="orders")
    streaming.add_subscription(RabbitOrderWorkflow, "to-rabbitmq", **{
        "mode": "exclusive", "redelivery_delay": 0.05, "backoff": "exponential",
        "max_redelivery_delay": 0.5, "max_delivery_attempts": 0, **(subscription or {})})

    @streaming.command_handler(PlaceRabbitOrder, workflow=RabbitOrderWorkflow)
    def place(command: PlaceRabbitOrder, workflow: RabbitOrderWorkflow) -> None:
        workflow.emit(RabbitOrderPlaced(order_id=command.order_id, total=command.total),
                      headers={"traceparent": command.traceparent} if command.traceparent
                      else None)

    streaming.add_delivery("rabbitmq", url=url, exchange=exchange, connect_timeout=30.0,
                           reconnect_interval=0.2,
                           outbound=[{"subscription": "to-rabbitmq", **outbound}])
    return streaming


def service_b(url: str, exchange: str, queue: str, folder: Path, **inbound: Any
              ) -> EventStreaming:
    """Host B (SQLite in ``folder``): cross-service stream ``orders`` fed from ``queue``, and
    subscription ``billing`` on it."""
    streaming = EventStreaming(store="sqlite", store_options={"path": str(folder / "b.db")})
    streaming.add_stream("orders", type="persistent", scope="cross_service")
    streaming.add_subscription("orders", "billing", mode="exclusive")
    streaming.register_event_types(RabbitOrderPlaced)
    streaming.add_delivery("rabbitmq", url=url, exchange=exchange, connect_timeout=30.0,
                           reconnect_interval=0.2,
                           inbound=[{"queue": queue, "stream": "orders",
                                     "bindings": ["orders.#"], **inbound}])
    return streaming


async def bind_queue(url: str, exchange: str, queue: str, key: str = "#",
                     arguments: dict[str, Any] | None = None) -> None:
    """Declare ``exchange`` (topic, durable) and ``queue`` (durable, with ``arguments``), bound
    with ``key``: a receiver of what a host publishes, read with :func:`drain`."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        ex = await channel.declare_exchange(exchange, "topic", durable=True)
        q = await channel.declare_queue(queue, durable=True, arguments=arguments)
        await q.bind(ex, key)


async def drain(url: str, queue: str, count: int, timeout: float = TIMEOUT
                ) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Consume and ack ``count`` messages of ``queue`` (waiting for them)."""
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=True)

        async def take() -> None:
            async with q.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    got.append(message)
                    if len(got) >= count:
                        return

        await within(take(), timeout)
    return got


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = TIMEOUT) -> Any:
    """:func:`svrnty_events.testing.eventually` with this suite's default timeout."""
    return await _eventually(check, timeout)
