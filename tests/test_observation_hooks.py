"""The observation hooks report each append, hand-over, settlement and consumer change once, in
the order they happened; a host whose plugins implement none of them makes no call at all."""

from __future__ import annotations

import asyncio
from typing import Any

from svrnty_events import EventStreaming, hookimpl
from svrnty_events.events import Event, record

from .support import store_plugin

TIMEOUT = 30.0


class ObservedTick(Event):
    n: int


class Recorder:
    """A plugin that writes down every observation."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    @hookimpl
    def events_appended(self, stream: str, events: Any) -> None:
        self.calls.append(("appended", stream, [e.sequence for e in events]))

    @hookimpl
    def events_delivered(self, subscription: str, consumer_id: str, deliveries: Any) -> None:
        self.calls.append(("delivered", subscription, consumer_id,
                           [(d.event.n, d.attempt) for d in deliveries]))

    @hookimpl
    def events_acked(self, subscription: str, consumer_id: str, deliveries: Any) -> None:
        self.calls.append(("acked", subscription, consumer_id, [d.event.n for d in deliveries]))

    @hookimpl
    def events_nacked(self, subscription: str, consumer_id: str, deliveries: Any,
                      delay: float) -> None:
        self.calls.append(("nacked", subscription, consumer_id,
                           [d.event.n for d in deliveries], delay))

    @hookimpl
    def events_dead_lettered(self, subscription: str, consumer_id: str, events: Any,
                             reason: str) -> None:
        self.calls.append(("dead_lettered", subscription, consumer_id, len(events), reason))

    @hookimpl
    def consumer_joined(self, subscription: str, consumer_id: str) -> None:
        self.calls.append(("joined", subscription, consumer_id))

    @hookimpl
    def consumer_left(self, subscription: str, consumer_id: str, reason: str) -> None:
        self.calls.append(("left", subscription, consumer_id, reason))


def streaming(*plugins: object) -> EventStreaming:
    s = EventStreaming(load_entrypoints=False, plugins=[store_plugin(), *plugins])
    s.add_stream("observed")
    s.add_subscription("observed", "work", mode="exclusive", max_delivery_attempts=2)
    s.add_subscription("observed", "feed", mode="broadcast")
    return s


def ticks(*ns: int) -> list[Any]:
    return [record(ObservedTick(n=n), stream="observed", correlation_id=f"wf-{n}") for n in ns]


async def test_each_step_is_reported_once() -> None:
    recorder = Recorder()
    async with streaming(recorder).run() as host:
        await host.publish("observed", ticks(1, 2, 3), external=False)
        consumer = await host.open_consumer("work", "w1")
        got: list[Any] = []
        async with asyncio.timeout(TIMEOUT):
            while len(got) < 3:
                got += await consumer.fetch(timeout=TIMEOUT)
        by_n = {d.event.n: d for d in got}
        await by_n[1].ack()
        await by_n[2].nack(delay=0.0)
        await by_n[3].dead_letter(reason="bad")
        async with asyncio.timeout(TIMEOUT):
            [again] = await consumer.fetch(timeout=TIMEOUT)
        assert (again.event.n, again.attempt) == (2, 2)
        await again.nack(delay=0.0, reason="still bad")  # the last attempt: dead-lettered
        await consumer.close()

    delivered = [c for c in recorder.calls if c[0] == "delivered"]
    assert sorted(x for c in delivered for x in c[3]) == [(1, 1), (2, 1), (2, 2), (3, 1)]
    assert [c for c in recorder.calls if c[0] not in ("delivered", "appended")] == [
        ("joined", "work", "w1"),
        ("acked", "work", "w1", [1]),
        ("nacked", "work", "w1", [2], 0.0),
        ("dead_lettered", "work", "w1", 1, "bad"),
        ("dead_lettered", "work", "w1", 1, "still bad"),
        ("left", "work", "w1", "closed"),
    ]
    assert [c for c in recorder.calls if c[0] == "appended"] == [
        ("appended", "observed", [0, 1, 2])]


async def test_the_in_process_iterator_reports_deliveries_before_their_acks() -> None:
    recorder = Recorder()
    async with streaming(recorder).run() as host:
        await host.publish("observed", ticks(*range(10)), external=False)
        seen = 0
        async with asyncio.timeout(TIMEOUT):
            async with host.subscribe("feed", "reader") as deliveries:
                async for _ in deliveries:
                    seen += 1
                    if seen == 10:
                        break
    steps = [c for c in recorder.calls if c[0] in ("delivered", "acked")]
    delivered = [n for c in steps if c[0] == "delivered" for n, _ in c[3]]
    acked = [n for c in steps if c[0] == "acked" for n in c[3]]
    assert sorted(delivered) == sorted(acked) == list(range(10))
    # batched: fewer calls than events, and no ack before its delivery was reported
    assert len([c for c in steps if c[0] == "delivered"]) < 10
    reported: set[int] = set()
    for c in steps:
        if c[0] == "delivered":
            reported.update(n for n, _ in c[3])
        else:
            assert set(c[3]) <= reported
    assert recorder.calls[-1] == ("left", "feed", "reader", "unsubscribed")


async def test_no_observer_no_calls() -> None:
    async with streaming().run() as host:
        assert host.engine.observers is None
