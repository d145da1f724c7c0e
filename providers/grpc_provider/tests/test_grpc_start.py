"""Catch-up over gRPC: the subscribe message places a new consumer's cursor (from a sequence,
from a time, from the beginning, new only)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from conftest import OrderPlaced, append, target, within

from svrnty_events_grpc import EventClient


async def _take(client: EventClient, consumer: str, count: int, **options) -> list[int]:
    async with client.subscribe("all", consumer, **options) as deliveries:
        return [(await within(deliveries.__anext__())).sequence for _ in range(count)]


async def test_start_positions_place_a_new_cursor(host):
    await append(host, *[OrderPlaced(order_id=i, amount=1.0) for i in range(3)])
    await asyncio.sleep(0.02)
    middle = datetime.now(timezone.utc)
    await append(host, *[OrderPlaced(order_id=i, amount=1.0) for i in range(3, 6)])
    async with EventClient(target(host)) as client:
        assert await _take(client, "from-4", 2, start=4) == [4, 5]
        assert await _take(client, "from-time", 3, start=middle) == [3, 4, 5]
        assert await _take(client, "from-start", 6, start="beginning") == [0, 1, 2, 3, 4, 5]
        async with client.subscribe("all", "new-only", start="new") as deliveries:
            await append(host, OrderPlaced(order_id=6, amount=1.0))
            assert (await within(deliveries.__anext__())).sequence == 6
