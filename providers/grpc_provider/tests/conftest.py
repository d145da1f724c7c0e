"""Fixtures: real hosts with the gRPC provider on 127.0.0.1 port 0, and real clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import svrnty_events_memory.plugin

import svrnty_events_grpc.plugin
from svrnty_events import Event, EventStreaming, Workflow
from svrnty_events.events import record
from svrnty_events.testing import self_signed_certificate
from svrnty_events_grpc import EventClient

#: bound of every wait on the system under test
TIMEOUT = 10.0


class OrderPlaced(Event):
    order_id: int
    amount: float
    items: list[str] = []


class OrderShipped(Event):
    order_id: int


class OrderClosed(Event):
    order_id: int


class OrderWorkflow(Workflow):
    pass


async def within(aw: Any, timeout: float = TIMEOUT) -> Any:
    return await asyncio.wait_for(aw, timeout)


def build_streaming(*, plugins: tuple[object, ...] = (), **grpc_options: Any) -> EventStreaming:
    """Streams ``orders`` (internal) and ``inbox`` (cross_service) with short timeouts."""
    streaming = EventStreaming(load_entrypoints=False, plugins=[
        svrnty_events_memory.plugin, svrnty_events_grpc.plugin, *plugins])
    streaming.add_stream(OrderWorkflow, name="orders")
    streaming.add_stream("inbox", scope="cross_service")
    fast = {"visibility_timeout": 0.3, "redelivery_delay": 0.1}
    streaming.add_subscription("orders", "all", mode="broadcast", **fast)
    streaming.add_subscription("orders", "work", mode="exclusive", visibility_timeout=30.0)
    streaming.add_subscription("orders", "quick", mode="exclusive", **fast)
    streaming.add_subscription("orders", "shipping", mode="broadcast",
                               event_types=[OrderShipped], **fast)
    streaming.add_subscription("orders", "tracking", mode="broadcast",
                               terminal_event_types=[OrderClosed], **fast)
    streaming.add_subscription("orders", "fragile", mode="exclusive", max_delivery_attempts=1,
                               **fast)
    streaming.add_subscription("inbox", "inbox", mode="broadcast", **fast)
    streaming.add_delivery("grpc", **{"port": 0, **grpc_options})
    return streaming


@asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[Any]:
    async with build_streaming(**kwargs).run() as host:
        yield host


def target(host: Any) -> str:
    return f"127.0.0.1:{host.providers['grpc'].port}"


async def append(host: Any, *events: Any, correlation_id: str = "wf-1",
                 stream: str = "orders") -> list[Any]:
    return await host.publish(stream, [record(e, stream=stream, correlation_id=correlation_id)
                                       for e in events], external=False)


@pytest.fixture
async def host() -> AsyncIterator[Any]:
    async with running() as h:
        yield h


@pytest.fixture
async def client(host: Any) -> AsyncIterator[EventClient]:
    async with EventClient(target(host)) as c:
        yield c


@pytest.fixture
def self_signed(tmp_path: Path) -> Callable[[], tuple[Path, Path]]:
    """A self-signed certificate for 127.0.0.1 / localhost, made with the openssl CLI."""
    return lambda: self_signed_certificate(tmp_path)
