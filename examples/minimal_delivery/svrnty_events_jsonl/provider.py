"""The ``jsonl`` delivery provider: one consumer per subscription, each event appended to a
file as one JSON line, then acked."""

import asyncio
from contextlib import suppress

import msgspec

from svrnty_events import Consumer, Delivery, EventStreamingHost

from .options import JsonlOptions


class Line(msgspec.Struct):
    id: str
    type: str
    correlation_id: str
    subscription: str
    sequence: int
    attempt: int
    data: msgspec.Raw


def encode(delivery: Delivery) -> bytes:
    line = Line(delivery.id, delivery.type, delivery.correlation_id, delivery.subscription,
                delivery.sequence, delivery.attempt, msgspec.Raw(delivery.data))
    return msgspec.json.encode(line) + b"\n"


class JsonlDelivery:
    def __init__(self, host: EventStreamingHost, options: JsonlOptions) -> None:
        self.host = host
        self.options = options
        self.consumers: list[Consumer] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for name in self.options.subscriptions:
            consumer = await self.host.open_consumer(name, f"jsonl:{self.options.path}")
            self.consumers.append(consumer)
            self.tasks.append(asyncio.create_task(self.deliver(consumer)))

    async def deliver(self, consumer: Consumer) -> None:
        while True:
            deliveries = await consumer.fetch()  # waits for events; at most the window
            lines = b"".join(encode(d) for d in deliveries)
            try:
                await asyncio.to_thread(self.append, lines)
            except OSError as exc:
                for d in deliveries:  # redelivered after the subscription's backoff
                    await consumer.nack(d.id, reason=f"cannot write {self.options.path}: {exc}")
                continue
            await consumer.ack([d.id for d in deliveries])

    def append(self, lines: bytes) -> None:
        with open(self.options.path, "ab") as f:
            f.write(lines)

    async def stop(self, grace: float) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        for consumer in self.consumers:
            await consumer.close()  # what it still holds is redelivered
        self.consumers.clear()

    def endpoints(self) -> list[str]:
        return [f"jsonl: {self.options.path}"]
