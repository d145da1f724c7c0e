"""Interleavings of two claimers on one Redis group, forced at the exact step where they matter
(the store's own round trips, run in a chosen order), against a real redis-server."""

from __future__ import annotations

import asyncio

from svrnty_events import EventStreaming
from svrnty_events.events import Event, record


class Race(Event):
    n: int


def streaming(url: str, prefix: str) -> EventStreaming:
    s = EventStreaming(store="redis", store_options={"url": url, "key_prefix": prefix})
    s.add_stream("s", type="persistent")
    s.add_subscription("s", "sub", mode="exclusive", max_delivery_attempts=0)
    return s


async def publish(host, start: int, count: int) -> None:
    await host.publish("s", [record(Race(n=i), stream="s", correlation_id="c")
                             for i in range(start, start + count)], external=False)


def numbers(result) -> list[int]:
    return [c.event.decode().n for c in result.claimed]


async def test_events_read_after_another_claimer_expired_the_consumer_still_time_out(
        redis_server, key_prefix):
    """c claims again just before its held event times out; before c's read of new events
    lands, another claimer expires that event (and with it c's only timer). What c reads next
    must still come back after its visibility timeout."""
    async with streaming(redis_server.url, key_prefix).run() as host:
        store = host.store
        await store.ensure_group("sub", "")
        await publish(host, 0, 1)
        assert numbers(await store.claim("sub", "", "c", max_count=1,
                                         visibility_timeout=0.4)) == [0]
        await asyncio.sleep(0.3)
        await publish(host, 1, 3)
        run = store._run
        interleaved = []

        async def run_then_interleave(name, keys, args):
            result = await run(name, keys, args)
            if name == "claim" and args[3] == "c" and not interleaved:
                # between c's claim script and its read of new events: d claims once event 0
                # has timed out, which takes it back from c
                interleaved.append(True)
                await asyncio.sleep(0.15)
                assert numbers(await store.claim("sub", "", "d", max_count=1,
                                                 visibility_timeout=30)) == [0]
            return result

        store._run = run_then_interleave
        try:
            got = await store.claim("sub", "", "c", max_count=3, visibility_timeout=0.4)
        finally:
            store._run = run
        assert interleaved and numbers(got) == [1, 2, 3]
        await asyncio.sleep(0.5)  # c never acks: its three time out and come back
        again = await store.claim("sub", "", "e", max_count=10, visibility_timeout=30)
        assert sorted(numbers(again)) == [1, 2, 3]
        assert [c.attempt for c in again.claimed] == [2, 2, 2]


async def test_a_stale_ack_stays_refused_after_the_same_consumer_id_is_released_elsewhere(
        redis_server, key_prefix):
    """c's event times out and goes to d; then a host releases consumer id c (a reconnect
    elsewhere, dropped again). c's late ack from the first host must not settle d's event."""
    async with streaming(redis_server.url, key_prefix).run() as x, \
            streaming(redis_server.url, key_prefix).run() as y:
        await x.store.ensure_group("sub", "")
        await publish(x, 0, 1)
        [mine] = (await x.store.claim("sub", "", "c", max_count=1,
                                      visibility_timeout=0.2)).claimed
        await asyncio.sleep(0.3)
        assert numbers(await y.store.claim("sub", "", "d", max_count=1,
                                           visibility_timeout=30)) == [0]
        assert await y.store.release("sub", "", "c") == 0
        assert await x.store.ack("sub", "", "c", [mine.event.id]) == [mine.event.id]
        assert await y.store.ack("sub", "", "d", [mine.event.id]) == []  # still d's to ack
