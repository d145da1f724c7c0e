"""The background consumer: reads subscriptions in-process and logs every event with its
correlation id, then acks it (the original's EventConsumerBackgroundService)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from contextlib import suppress

from svrnty_events import Delivery, EventStreamingHost, Subscriber

log = logging.getLogger("svrnty_sample.consumer")


class AnalyticsConsumer:
    """One consumer id (``analytics-<uuid>``) reading each of ``subscriptions``."""

    def __init__(self, host: EventStreamingHost, subscriptions: Sequence[str],
                 consumer_id: str | None = None) -> None:
        self.host = host
        self.subscriptions = list(subscriptions)
        self.consumer_id = consumer_id or f"analytics-{uuid.uuid4()}"
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for subscription in self.subscriptions:
            # open the consumer before returning, so no event sent after start() is missed
            subscriber = self.host.subscribe(subscription, self.consumer_id, auto_ack=False)
            await subscriber.open()
            self._tasks.append(asyncio.create_task(self._consume(subscriber),
                                                   name=f"{self.consumer_id}:{subscription}"))
        log.info("consumer %s reading %s", self.consumer_id, ", ".join(self.subscriptions))

    async def _consume(self, subscriber: Subscriber) -> None:
        async with subscriber as deliveries:
            async for delivery in deliveries:
                try:
                    self.handle(delivery)
                except Exception as exc:  # a bad event must not stop the consumer
                    log.exception("consumer %s failed on %s", self.consumer_id, delivery.id)
                    await delivery.nack(reason=f"{type(exc).__name__}: {exc}")
                else:
                    await delivery.ack()

    def handle(self, delivery: Delivery) -> None:
        log.info("event %s correlation_id=%s subscription=%s consumer=%s attempt=%d "
                 "sequence=%d data=%s", delivery.type, delivery.correlation_id,
                 delivery.subscription, self.consumer_id, delivery.attempt, delivery.sequence,
                 delivery.data.decode("utf-8", "replace"))

    async def close(self) -> None:
        """Stop reading; an event being handled goes back for redelivery. May be called twice."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task
