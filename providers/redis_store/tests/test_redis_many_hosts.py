"""Two host processes sharing one Redis: exclusive, broadcast, a SIGKILLed host, catch-up."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from svrnty_events import EventStreaming
from svrnty_events.events import Event, record
from svrnty_events.testing import within

from svrnty_events.testing.hosts import PARTITIONS


class Tick(Event):
    n: int


def publisher(url: str, prefix: str, mode: str = "exclusive", **sub_options) -> EventStreaming:
    """The test's own host: it publishes, and it can inspect the shared delivery state."""
    streaming = EventStreaming(store="redis", store_options={"url": url, "key_prefix": prefix})
    streaming.add_stream("s", type="persistent", partitions=PARTITIONS)
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

        # each host's condition on its own reports (a wait on one host's reports does not
        # wake up for the other's)
        await a.wait_until(lambda: all(len(a.numbers(consumer=c)) >= total
                                       for c in ("a1", "a2")), 30)
        await b.wait_until(lambda: len(b.numbers(consumer="b1")) >= total, 30)
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


async def publish_workflows(host, workflows: int, per_workflow: int, start: int = 0) -> None:
    """Round-robin over the workflows: event k of workflow w has n = w * 1000 + k."""
    for k in range(start, start + per_workflow):
        await host.publish("s", [record(Tick(n=w * 1000 + k), stream="s",
                                        correlation_id=f"wf-{w}") for w in range(workflows)],
                           external=False)


async def until(condition) -> None:
    """Wait until ``condition()`` holds over the reports of several hosts."""
    while not condition():
        await asyncio.sleep(0.05)


def per_workflow(deliveries) -> dict[str, list[tuple[float, str, int, int]]]:
    out: dict[str, list[tuple[float, str, int, int]]] = {}
    for at, consumer, wf, n, attempt in sorted(deliveries):
        out.setdefault(wf, []).append((at, consumer, n, attempt))
    return out


async def test_consumer_group_partitions_agree_across_hosts(redis_server, key_prefix,
                                                            start_host):
    """Four consumers on two hosts: every workflow's events in order, and, once membership is
    stable, each workflow on one consumer."""
    url, workflows = redis_server.url, 24
    options = {"mode": "consumer_group", "sync_interval": 0.2}
    a = await start_host("a", url, key_prefix, **options)
    b = await start_host("b", url, key_prefix, **options)
    await a.open("a1")
    async with publisher(url, key_prefix).run() as host:
        # partitions move while events flow: a1 alone, then a2, b1 and b2 join
        await publish_workflows(host, workflows, 5)
        await a.open("a2")
        await b.open("b1")
        await publish_workflows(host, workflows, 5, start=5)
        await b.open("b2")
        await publish_workflows(host, workflows, 5, start=10)
        total = workflows * 15

        def delivered() -> list:
            return a.deliveries() + b.deliveries()

        await within(until(lambda: len(delivered()) >= total), 30)
        await asyncio.sleep(1.0)  # membership settles; a duplicate would show up now
        first = delivered()
        assert sorted(d[3] for d in first) == sorted(
            w * 1000 + k for w in range(workflows) for k in range(15))  # once each, 0 lost
        for wf, seen in per_workflow(first).items():
            assert [n % 1000 for _, _, n, _ in seen] == list(range(15)), (wf, seen)
        # stable membership now: each workflow's next events go to one consumer only
        await publish_workflows(host, workflows, 10, start=15)
        await within(until(lambda: len(delivered()) >= total + workflows * 10), 30)
        later = [d for d in delivered() if d[3] % 1000 >= 15]
        owners = {wf: {c for _, c, _, _ in seen} for wf, seen in per_workflow(later).items()}
        assert all(len(c) == 1 for c in owners.values()), owners
        assert {c for cs in owners.values() for c in cs} == {"a1", "a2", "b1", "b2"}
        for wf, seen in per_workflow(delivered()).items():
            assert [n % 1000 for _, _, n, _ in seen] == list(range(25)), wf


async def test_consumer_group_partitions_of_a_killed_host_move_in_order(
        redis_server, key_prefix, start_host):
    """A host dies holding events: its partitions move to the other host once its leases
    expire, and each workflow's held events come back before its later events."""
    url, workflows = redis_server.url, 12
    options = {"mode": "consumer_group", "sync_interval": 0.2, "visibility_timeout": 1.5}
    a = await start_host("a", url, key_prefix, **options)
    b = await start_host("b", url, key_prefix, **options)
    await a.open("a1")
    await b.open("b1", ack=False, window=1000)
    async with publisher(url, key_prefix).run() as host:
        await asyncio.sleep(1.0)  # both members known: partitions split between a1 and b1
        await publish_workflows(host, workflows, 3)
        await within(until(lambda: len(a.deliveries()) + len({
            d[3] for d in b.deliveries("held")}) >= workflows * 3), 20)
        held = b.deliveries("held")
        assert held and a.deliveries()  # both hosts own partitions
        b_workflows = {wf for _, _, wf, _, _ in held}
        b.kill()
        await publish_workflows(host, workflows, 3, start=3)
        await a.wait_until(lambda: len(a.deliveries()) >= workflows * 6, 30)
        seen = per_workflow(a.deliveries())
        for wf in b_workflows:
            # b1's three, redelivered, then the three appended after it died
            assert [n % 1000 for _, _, n, _ in seen[wf]] == list(range(6)), (wf, seen[wf])
            assert all(attempt >= 2 for _, _, _, attempt in seen[wf][:3]), (wf, seen[wf])
            assert [attempt for _, _, _, attempt in seen[wf][3:]] == [1, 1, 1], (wf, seen[wf])
        for wf in set(seen) - b_workflows:
            assert [n % 1000 for _, _, n, _ in seen[wf]] == list(range(6)), wf
