"""Small helpers for tests of svrnty-events and its plugins."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

#: default bound of every wait on the system under test
TIMEOUT = 10.0


async def within(aw: Awaitable[T], timeout: float = TIMEOUT) -> T:
    """Await with a timeout, so a hung test fails instead of hanging."""
    return await asyncio.wait_for(aw, timeout)


async def collect(consumer: Any, count: int, *, timeout: float = TIMEOUT,
                  ack: bool = True) -> list[Any]:
    """Fetch ``count`` deliveries from an engine Consumer (acking them unless ``ack=False``)."""
    out: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(out) < count:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"got {len(out)} of {count} deliveries in {timeout}s")
        batch = await consumer.fetch(max_events=count - len(out), timeout=remaining)
        if ack and batch:
            await consumer.ack([d.id for d in batch])
        out.extend(batch)
    return out
