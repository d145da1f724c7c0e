"""A remote consumer that stops reading, or reads and never acks: whatever is published, the server
holds at most its window of events for it (counted: the engine's in-flight count, the Delivery
objects alive, the store's claims), and other consumers on the same server get everything."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc.aio

from svrnty_events import EventStreaming
from svrnty_events.testing import live_deliveries
from svrnty_events_grpc import EventClient
from svrnty_events_grpc.proto import events_pb2 as pb

from .grpc_support import (
    ledger,
    new_streaming,
    publish_jobs,
    raw_subscribe,
    running,
    target,
    within,
)

TOTAL = 50_000
WINDOW = 100


def _streaming() -> EventStreaming:
    streaming = new_streaming()
    streaming.add_stream("firehose", type="ephemeral")
    for name in ("stalled", "hoarder", "fast"):
        streaming.add_subscription("firehose", name, mode="exclusive", window=WINDOW,
                                   visibility_timeout=300.0)
    return streaming


def _in_flight(host: Any, subscription: str) -> int:
    [info] = host.consumers(subscription)
    return int(info["in_flight"])


async def test_a_consumer_that_stops_reading_or_acking_holds_at_most_its_window():
    async with running(_streaming()) as host:
        store = ledger(host)
        async with grpc.aio.insecure_channel(target(host)) as channel, \
                EventClient(target(host)) as client:
            # stops reading right after the confirmation
            stalled = raw_subscribe(channel)
            await within(stalled.write(pb.SubscribeRequest(subscribe=pb.Subscribe(
                subscription="stalled", consumer_id="stalled")).SerializeToString()))
            first = pb.SubscribeResponse.FromString(await within(stalled.read()))
            assert first.subscribed.window == WINDOW
            # reads everything it is sent, never acks
            hoarder = client.subscribe("hoarder", "hoarder", auto_ack=False)
            await within(hoarder.open())
            hoarded: list[Any] = []

            async def hoard() -> None:
                while True:
                    d = await hoarder.next(timeout=None)
                    assert d is not None
                    hoarded.append(d)

            fast_seen = 0

            async def consume_fast() -> None:
                nonlocal fast_seen
                async with client.subscribe("fast", "fast", auto_ack=False) as deliveries:
                    async for d in deliveries:
                        await d.ack()
                        fast_seen += 1
                        if fast_seen == TOTAL:
                            return

            hoarding = asyncio.ensure_future(hoard())
            fast = asyncio.ensure_future(consume_fast())
            try:
                for start in range(0, TOTAL, 10_000):
                    await publish_jobs(host, "firehose", range(start, start + 10_000))
                    await asyncio.sleep(0.05)  # let the sender loops run
                    assert _in_flight(host, "stalled") <= WINDOW
                    assert _in_flight(host, "hoarder") <= WINDOW
                    alive = live_deliveries()
                    assert alive.get("stalled", 0) <= WINDOW, alive
                    assert alive.get("hoarder", 0) <= WINDOW, alive
                await within(fast, 30)  # the others were not held up
                # the stalled and hoarding consumers hold a full window and not one event more
                assert _in_flight(host, "stalled") == WINDOW
                assert _in_flight(host, "hoarder") == WINDOW
                assert len(hoarded) == WINDOW
                handed_out = {"stalled": 0, "hoarder": 0, "fast": 0}
                for claims in store.claims.values():
                    for consumer_id, _ in claims:
                        handed_out[consumer_id] += 1
                assert handed_out == {"stalled": WINDOW, "hoarder": WINDOW, "fast": TOTAL}
                alive = live_deliveries()
                assert (alive.get("stalled"), alive.get("hoarder")) == (WINDOW, WINDOW), alive

                # once the stalled consumer reads and acks again, events flow in order
                got: list[int] = []
                while len(got) < 3 * WINDOW:
                    msg = pb.SubscribeResponse.FromString(await within(stalled.read()))
                    ids = [e.id for e in msg.events.events]
                    got.extend(e.sequence for e in msg.events.events)
                    await within(stalled.write(pb.SubscribeRequest(
                        ack=pb.Ack(event_ids=ids)).SerializeToString()))
                assert got[:3 * WINDOW] == list(range(3 * WINDOW))
                assert _in_flight(host, "stalled") <= WINDOW
            finally:
                for task in (hoarding, fast):
                    task.cancel()
                await asyncio.gather(hoarding, fast, return_exceptions=True)
                stalled.cancel()
                await within(hoarder.aclose())
