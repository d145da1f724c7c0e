"""Small helpers for tests of svrnty-events and its plugins."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: default bound of every wait on the system under test
TIMEOUT = 10.0


def self_signed_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for 127.0.0.1 / localhost, made with the
    openssl CLI in ``directory``; the test is skipped when openssl is not installed."""
    if shutil.which("openssl") is None:
        import pytest

        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30)
    return cert, key


async def within(aw: Awaitable[T], timeout: float = TIMEOUT) -> T:
    """Await with a timeout, so a hung test fails instead of hanging."""
    return await asyncio.wait_for(aw, timeout)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = TIMEOUT,
                     interval: float = 0.02) -> Any:
    """Await ``check()`` until it returns something truthy, and return that (state a system
    under test reaches by itself, e.g. a provider settling what the far side confirmed).
    TimeoutError after ``timeout`` seconds."""
    async def loop() -> Any:
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(interval)

    return await within(loop(), timeout)


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


def live_deliveries() -> dict[str, int]:
    """Delivery objects alive in this process, per consumer id, after a full collection."""
    import gc

    from ..subscriptions.delivery import Delivery

    gc.collect()
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        if type(obj) is Delivery:
            counts[obj.consumer.consumer_id] = counts.get(obj.consumer.consumer_id, 0) + 1
    return counts
