"""Host processes sharing one PostgreSQL database: exclusive, broadcast, consumer_group with
consumers joining and leaving, a SIGKILLed host."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from svrnty_events import EventStreaming
from svrnty_events.events import Event, record
from svrnty_events.testing import within

from svrnty_events.testing.hosts import PARTITIONS


class PgTick(Event):
    n: int


def publisher(url: str, schema: str, mode: str = "exclusive", **sub_options) -> EventStreaming:
    """The test's own host: it publishes, and it can inspect the shared delivery state."""
    streaming = EventStreaming(store="postgres", store_options={"url": url, "schema": schema})
    streaming.add_stream("s", type="persistent", partitions=PARTITIONS)
    streaming.add_subscription("s", "sub", mode=mode, max_delivery_attempts=0, **sub_options)
    return streaming


async def publish(host, start: int, count: int, correlation_id: str = "wf") -> None:
    await host.publish("s", [record(PgTick(n=i), stream="s", correlation_id=correlation_id)
                             for i in range(start, start + count)], external=False)


async def until(condition, timeout: float) -> None:
    """Wait until ``condition()`` holds over the reports of several hosts."""
    async def loop() -> None:
        while not condition():
            await asyncio.sleep(0.05)
    await within(loop(), timeout)


async def nothing_pending(host) -> None:
    probe = await host.store.claim("sub", "", "probe", max_count=10, visibility_timeout=1)
    assert probe.claimed == []


async def test_exclusive_each_event_to_exactly_one_consumer_across_hosts(
        pg_url, schema, start_host):
    total = 1000
    async with publisher(pg_url, schema).run() as host:
        a = await start_host("a", pg_url, schema)
        b = await start_host("b", pg_url, schema)
        await a.open("a1")
        await a.open("a2")
        await b.open("b1")
        for i in range(0, total, 20):
            await publish(host, i, 20, correlation_id=f"wf-{i}")
            await asyncio.sleep(0.002)
        await until(lambda: len(a.numbers()) + len(b.numbers()) >= total, 60)
        await nothing_pending(host)  # every event acked: a duplicate could only be reported
        acked = Counter(a.numbers() + b.numbers())
        assert sorted(acked) == list(range(total))  # 0 lost
        assert set(acked.values()) == {1}  # N distinct acks, no duplicate
        assert a.numbers() and b.numbers()  # both hosts took a share


async def test_broadcast_every_consumer_on_both_hosts_gets_every_event(
        pg_url, schema, start_host):
    total = 200
    async with publisher(pg_url, schema, mode="broadcast").run() as host:
        a = await start_host("a", pg_url, schema, mode="broadcast")
        b = await start_host("b", pg_url, schema, mode="broadcast")
        await a.open("a1")
        await a.open("a2")
        await b.open("b1")
        for i in range(0, total, 25):
            await publish(host, i, 25)
        await until(lambda: all(len(h.numbers(consumer=c)) >= total
                                for h, c in ((a, "a1"), (a, "a2"), (b, "b1"))), 60)
        for h, c in ((a, "a1"), (a, "a2"), (b, "b1")):
            assert h.numbers(consumer=c) == list(range(total)), c


async def test_sigkilled_host_acked_events_stay_acked_the_others_are_redelivered(
        pg_url, schema, start_host):
    visibility, total = 1.5, 200
    options = {"visibility_timeout": visibility}
    async with publisher(pg_url, schema, **options).run() as host:
        a = await start_host("a", pg_url, schema, **options)
        b = await start_host("b", pg_url, schema, **options)
        held_window = 80
        await a.open("holder", ack=False, window=held_window)
        await publish(host, 0, total)
        # the holder fills its window first (opened beside it, an acker could take every event
        # before the holder's first claim on a busy machine); the acker takes the rest
        await a.wait_until(lambda: len(a.numbers("held")) >= held_window, 30)
        await a.open("acker")
        # a has taken every event: some acked, the others held (never acked)
        await a.wait_until(lambda: len(a.numbers()) + len(a.numbers("held")) >= total, 30)
        acked, held = set(a.numbers()), set(a.numbers("held"))
        assert len(held) == held_window and len(acked) == total - held_window
        assert not acked & held
        killed_at = time.monotonic()
        a.kill()  # SIGKILL: no release, no goodbye
        await within(a.proc.wait(), 10)
        await b.open("survivor")
        await b.wait_until(lambda: len(b.numbers()) >= len(held), 30)
        assert time.monotonic() - killed_at >= visibility * 0.9  # after the visibility timeout
        await nothing_pending(host)
        redelivered = Counter(b.numbers())
        assert set(redelivered) == held and set(redelivered.values()) == {1}
        assert not acked & set(redelivered)  # no acked event came back
        assert b.attempts() == [2] * len(held)  # the attempt the killed host used counts


def per_workflow(deliveries) -> dict[str, list[tuple[float, str, int, int]]]:
    out: dict[str, list[tuple[float, str, int, int]]] = {}
    for at, consumer, wf, n, attempt in sorted(deliveries):
        out.setdefault(wf, []).append((at, consumer, n, attempt))
    return out


async def publish_workflows(host, workflows: int, per_workflow: int, start: int = 0) -> None:
    """Round-robin over the workflows: event k of workflow w has n = w * 1000 + k."""
    for k in range(start, start + per_workflow):
        await host.publish("s", [record(PgTick(n=w * 1000 + k), stream="s",
                                        correlation_id=f"wf-{w}") for w in range(workflows)],
                           external=False)


async def test_consumer_group_order_with_consumers_joining_and_leaving_across_hosts(
        pg_url, schema, start_host):
    """Consumers on two hosts join and leave while events flow: every workflow's events
    arrive once each, in order; once membership is stable, each workflow is on one consumer."""
    workflows = 24
    options = {"mode": "consumer_group", "sync_interval": 0.2}
    async with publisher(pg_url, schema, mode="consumer_group").run() as host:
        a = await start_host("a", pg_url, schema, **options)
        b = await start_host("b", pg_url, schema, **options)
        await a.open("a1")
        await publish_workflows(host, workflows, 5)
        await a.open("a2")
        await b.open("b1")
        await publish_workflows(host, workflows, 5, start=5)
        await b.open("b2")
        await publish_workflows(host, workflows, 5, start=10)
        await a.close("a2")  # leaves mid-stream: its partitions move to the others
        await publish_workflows(host, workflows, 5, start=15)

        def delivered() -> list:
            return a.deliveries() + b.deliveries()

        await until(lambda: len(delivered()) >= workflows * 20, 60)
        first = delivered()
        assert sorted(d[3] for d in first) == sorted(
            w * 1000 + k for w in range(workflows) for k in range(20))  # once each, 0 lost
        for wf, seen in per_workflow(first).items():
            assert [n % 1000 for _, _, n, _ in seen] == list(range(20)), (wf, seen)
        # stable membership now: each workflow's next events go to one consumer only
        await asyncio.sleep(1.0)  # leases renewed at sync_interval: membership settles
        await publish_workflows(host, workflows, 10, start=20)
        await until(lambda: len(delivered()) >= workflows * 30, 60)
        later = [d for d in delivered() if d[3] % 1000 >= 20]
        owners = {wf: {c for _, c, _, _ in seen} for wf, seen in per_workflow(later).items()}
        assert all(len(c) == 1 for c in owners.values()), owners
        assert {c for cs in owners.values() for c in cs} == {"a1", "b1", "b2"}
        for wf, seen in per_workflow(delivered()).items():
            assert [n % 1000 for _, _, n, _ in seen] == list(range(30)), wf
