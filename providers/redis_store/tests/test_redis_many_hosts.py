"""Two host processes sharing one Redis: exclusive, broadcast, a SIGKILLed host, catch-up."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from svrnty_events import EventStreaming
from svrnty_events.events import Event, record
from svrnty_events.testing import within


class Tick(Event):
    n: int


def publisher(url: str, prefix: str, mode: str = "exclusive", **sub_options) -> EventStreaming:
    """The test's own host: it publishes, and it can inspect the shared delivery state."""
    streaming = EventStreaming(store="redis", store_options={"url": url, "key_prefix": prefix})
    streaming.add_stream("s", type="persistent")
    streaming.add_subscription("s", "sub", mode=mode, max_delivery_attempts=0, **sub_options)
    return streaming


async def publish(host, start: int, count: int, correlation_id: str = "wf") -> None:
    await host.publish("s", [record(Tick(n=i), stream="s", correlation_id=correlation_id)
                             for i in range(start, start + count)], external=False)


async def test_exclusive_each_event_to_exactly_one_consumer_across_hosts(
        redis_server, key_prefix, start_host):
    url, total = redis_server.url, 600
    a = await start_host("a", url, key_prefix)
    b = await start_host("b", url, key_prefix)
    await a.open("a1")
    await a.open("a2")
    await b.open("b1")
    async with publisher(url, key_prefix).run() as host:
        for i in range(0, total, 20):
            await publish(host, i, 20, correlation_id=f"wf-{i}")
            await asyncio.sleep(0.005)

        def all_acked() -> bool:
            return len(a.numbers()) + len(b.numbers()) >= total

        await a.wait_until(all_acked, 30)
        await asyncio.sleep(0.3)  # a duplicate would show up now
        acked = Counter(a.numbers() + b.numbers())
        assert sorted(acked) == list(range(total))  # 0 lost
        assert set(acked.values()) == {1}  # N distinct acks, no duplicate
        assert a.numbers() and b.numbers()  # both hosts took a share
        probe = await host.store.claim("sub", "", "probe", max_count=10, visibility_timeout=1)
        assert probe.claimed == []  # nothing left pending


async def test_broadcast_every_consumer_on_both_hosts_gets_every_event(
        redis_server, key_prefix, start_host):
    url, total = redis_server.url, 100
    a = await start_host("a", url, key_prefix, mode="broadcast")
    b = await start_host("b", url, key_prefix, mode="broadcast")
    await a.open("a1")
    await a.open("a2")
    await b.open("b1")
    async with publisher(url, key_prefix, mode="broadcast").run() as host:
        for i in range(0, total, 25):
            await publish(host, i, 25)

        def done() -> bool:
            return all(len(h.numbers(consumer=c)) >= total
                       for h, c in ((a, "a1"), (a, "a2"), (b, "b1")))

        await a.wait_until(done, 30)
        await b.wait_until(done, 1)
        for h, c in ((a, "a1"), (a, "a2"), (b, "b1")):
            assert h.numbers(consumer=c) == list(range(total)), c


async def test_sigkilled_host_in_flight_events_redelivered_on_the_other(
        redis_server, key_prefix, start_host):
    url, visibility = redis_server.url, 1.5
    a = await start_host("a", url, key_prefix, visibility_timeout=visibility)
    b = await start_host("b", url, key_prefix, visibility_timeout=visibility)
    async with publisher(url, key_prefix, visibility_timeout=visibility).run() as host:
        await a.open("holder", ack=False, window=100)
        await publish(host, 0, 10)
        await a.wait_until(lambda: len(a.numbers("held")) == 10, 10)
        held_at = time.monotonic()
        a.kill()  # SIGKILL: no release, no goodbye
        await within(a.proc.wait(), 10)
        await b.open("survivor")
        await b.wait_until(lambda: len(b.numbers()) >= 10, 15)
        redelivered_after = time.monotonic() - held_at
        assert sorted(b.numbers()) == list(range(10))
        assert b.attempts() == [2] * 10  # the attempt the killed host used counts
        assert redelivered_after >= visibility * 0.9  # not before the visibility timeout


async def test_catch_up_from_a_sequence(redis_server, key_prefix, start_host):
    url = redis_server.url
    async with publisher(url, key_prefix, mode="broadcast").run() as host:
        await publish(host, 0, 10)
        a = await start_host("a", url, key_prefix, mode="broadcast")
        await a.open("late", start=6)
        await a.open("from-oldest")
        await a.wait_until(lambda: len(a.numbers(consumer="from-oldest")) >= 10, 10)
        await a.wait_until(lambda: len(a.numbers(consumer="late")) >= 4, 10)
        await publish(host, 10, 2)
        await a.wait_until(lambda: len(a.numbers(consumer="late")) >= 6, 10)
        assert a.numbers(consumer="late") == [6, 7, 8, 9, 10, 11]
        assert a.numbers(consumer="from-oldest")[:10] == list(range(10))
        # the same at the store level: a new group starts at the given sequence
        store = host.store
        await store.ensure_group("sub", "direct", start=8)
        got = await store.claim("sub", "direct", "direct", max_count=10, visibility_timeout=5)
        assert [c.event.sequence for c in got.claimed] == [8, 9, 10, 11]
