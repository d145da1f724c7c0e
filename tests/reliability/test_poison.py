"""Poison messages: an event that always fails reaches the dead-letter queue after the configured
attempts with its reason, redeliveries are spaced by the backoff (no storm), and a replay from the
dead-letter queue delivers it again."""

from __future__ import annotations

import asyncio
import time

from svrnty_events import Event, EventStreaming, StreamType
from svrnty_events.events import record
from svrnty_events.testing import within


class Payment(Event):
    amount: int


async def test_poison_event_is_dead_lettered_with_spaced_retries_and_replayable():
    streaming = EventStreaming()
    streaming.add_stream("payments", type=StreamType.PERSISTENT)
    streaming.add_subscription("payments", "charger", mode="exclusive", max_delivery_attempts=4,
                               redelivery_delay=0.05, backoff="exponential",
                               backoff_multiplier=2.0)
    async with streaming.run() as host:
        events = [record(Payment(amount=a), stream="payments", correlation_id=f"p{a}")
                  for a in (10, -1, 20)]
        await host.publish("payments", events, external=False)
        poison_times: list[float] = []
        good: list[int] = []

        async def consume() -> None:
            async with host.subscribe("charger", "c1", auto_ack=False) as deliveries:
                async for d in deliveries:
                    if d.event.amount < 0:
                        poison_times.append(time.monotonic())
                        await d.nack(reason="negative amount", error="ValueError: amount < 0")
                    else:
                        good.append(d.event.amount)
                        await d.ack()
                    if len(good) == 2 and len(poison_times) == 4:
                        return

        await within(consume(), 10)
        gaps = [b - a for a, b in zip(poison_times, poison_times[1:])]
        for gap, backoff in zip(gaps, (0.05, 0.1, 0.2)):
            assert gap >= backoff * 0.9, gaps
        [letter] = await host.dead_letters("charger")
        assert letter.event.id == events[1].id
        assert (letter.attempts, letter.reason) == (4, "negative amount")
        assert letter.error == "ValueError: amount < 0"

        assert await host.replay_dead_letters("charger") == 1
        async with host.subscribe("charger", "c2", auto_ack=False) as deliveries:
            d = await deliveries.next(timeout=5)
            assert d is not None and d.id == events[1].id and d.attempt == 1
            await d.ack()
        assert await host.dead_letters("charger") == []
        await asyncio.sleep(0)
