"""Consumers crash at random while 100,000 events flow: every event is acked in the end, none is
lost, and duplicates appear only where at-least-once allows them (deliveries that were never
acked)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from svrnty_events import Event, EventStreaming, StreamType
from svrnty_events.events import record
from svrnty_events.testing import within


class CrashJob(Event):
    n: int


TOTAL = 100_000


@pytest.mark.slow
async def test_random_consumer_crashes_lose_nothing():
    streaming = EventStreaming()
    streaming.add_stream("jobs", type=StreamType.EPHEMERAL)
    streaming.add_subscription("jobs", "workers", mode="exclusive", window=50,
                               visibility_timeout=30.0, max_delivery_attempts=0)
    rng = random.Random(20261127)
    deliveries: Counter[int] = Counter()   # every hand-over
    acked: Counter[int] = Counter()        # every ack the store accepted
    crashes = 0
    async with streaming.run() as host:
        for i in range(0, TOTAL, 1000):
            await host.publish("jobs", [record(CrashJob(n=j), stream="jobs", correlation_id=f"w{j % 97}")
                                        for j in range(i, i + 1000)], external=False)

        async def worker(name: str) -> None:
            nonlocal crashes
            while sum(acked.values()) < TOTAL:
                consumer = await host.open_consumer("workers", name)
                crash_after = rng.randint(1, 3000)
                handled = 0
                try:
                    while True:
                        batch = await consumer.fetch(timeout=0.5)
                        if not batch:
                            if sum(acked.values()) >= TOTAL:
                                return
                            continue
                        for d in batch:
                            deliveries[d.event.n] += 1
                        if handled + len(batch) > crash_after:
                            # crash mid-batch: ack part of it, then the consumer dies
                            keep = batch[: crash_after - handled]
                            if keep:
                                await consumer.ack([d.id for d in keep])
                                acked.update(d.event.n for d in keep)
                            crashes += 1
                            break
                        await consumer.ack([d.id for d in batch])
                        acked.update(d.event.n for d in batch)
                        handled += len(batch)
                finally:
                    await consumer.close("crashed")

        await within(asyncio.gather(*(worker(f"w{i}") for i in range(4))), 120)
        assert crashes > 10
        assert set(acked) == set(range(TOTAL)), "every event acked"
        assert max(acked.values()) == 1, "the store accepts one ack per event"
        duplicates = sum(c - 1 for c in deliveries.values())
        # a duplicate delivery only happens for an event that a crashed consumer held un-acked
        assert duplicates <= crashes * 50  # at most one window per crash
        assert (await host.stream_info("jobs")).length <= 1024 + 512  # acked events trimmed
