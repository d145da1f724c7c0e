"""A consumer that closes while a settlement is still on its way to the store (an automatic ack
flushed in the background, the acks of several partitions, a nack with a delay, a dead letter,
an at-most-once hand-over; a slow store) must not give those events back: the release of a
closing consumer waits for what it sent, and sends the acks deferred meanwhile. Otherwise the
release overtakes them, the store hands processed events to another consumer, and they are
processed twice (or a nacked event comes back at once, an attempt counted)."""

from __future__ import annotations

import asyncio

import pytest

from svrnty_events import Event, EventStreaming, StreamType
from svrnty_events.errors import StoreUnavailableError
from svrnty_events.events import record
from svrnty_events.testing import eventually, within
from svrnty_events_memory import MemoryStore

from .support import store_plugin


class CloseAckPing(Event):
    n: int


class SlowAckStore(MemoryStore):
    """The memory store with settlements that take ``delay`` seconds to reach it (a remote
    store under load), noting releases that ran while one was on its way."""

    ack_delay = 0.0
    settle_delay = 0.0  # nack, dead_letter
    acks_in_flight = 0
    settling = 0
    releases_overtaking = 0

    async def ack(self, *args, **kwargs):
        self.acks_in_flight += 1
        try:
            if self.ack_delay:
                await asyncio.sleep(self.ack_delay)
            return await super().ack(*args, **kwargs)
        finally:
            self.acks_in_flight -= 1

    async def _slowly(self, call):
        self.settling += 1
        try:
            if self.settle_delay:
                await asyncio.sleep(self.settle_delay)
            return await call
        finally:
            self.settling -= 1

    async def nack(self, *args, **kwargs):
        return await self._slowly(super().nack(*args, **kwargs))

    async def dead_letter(self, *args, **kwargs):
        return await self._slowly(super().dead_letter(*args, **kwargs))

    async def release(self, *args, **kwargs):
        if self.acks_in_flight or self.settling:
            self.releases_overtaking += 1
        return await super().release(*args, **kwargs)


SLOW_ACK = store_plugin("slow-ack", SlowAckStore, name="slow-ack-store")


async def test_a_closing_consumer_lets_its_acks_land_before_it_releases():
    streaming = EventStreaming(store="slow-ack", plugins=[SLOW_ACK])
    streaming.add_stream("s", type=StreamType.PERSISTENT)
    streaming.add_subscription("s", "sub", mode="exclusive")
    async with streaming.run() as host:
        store = host.store
        assert isinstance(store, SlowAckStore)
        await host.publish("s", [record(CloseAckPing(n=i), stream="s", correlation_id="w")
                                 for i in range(10)], external=False)
        store.ack_delay = 0.3
        first = host.subscribe("sub", "c1")
        await first.open()
        seen_first = [(await within(first.next(timeout=10))).event.n for _ in range(6)]
        assert seen_first == [0, 1, 2, 3, 4, 5]
        # events 0-4 are processed: their automatic acks go to the store in the background
        await eventually(lambda: asyncio.sleep(0, store.acks_in_flight == 1))
        seen_second: list[int] = []

        async def second() -> None:
            async with host.subscribe("sub", "c2") as deliveries:
                async for d in deliveries:
                    seen_second.append(d.event.n)

        consumer = asyncio.ensure_future(second())
        try:
            await within(first.aclose())
            assert store.releases_overtaking == 0
            # 5 was handed to code and not acked: it comes back (attempt 2), 6-9 were never
            # seen; 0-4 were acked before the release and never come back
            await eventually(lambda: asyncio.sleep(0, {5, 6, 7, 8, 9} <= set(seen_second)))
            await eventually(lambda: _settled(host))
            assert sorted(seen_second) == [5, 6, 7, 8, 9]  # nothing processed twice
            assert sorted(seen_first[:5] + seen_second) == list(range(10))
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)


async def _settled(host):
    [stats] = await host.subscription_stats("sub")
    return stats if stats["lag"] == 0 and stats["in_flight"] == 0 else None


def _streaming(**stream) -> EventStreaming:
    streaming = EventStreaming(store="slow-ack", plugins=[SLOW_ACK])
    mode = stream.pop("mode", "exclusive")
    streaming.add_stream("s", type=StreamType.PERSISTENT, **stream)
    streaming.add_subscription("s", "sub", mode=mode)
    return streaming


async def _publish(host, n: int, *, spread: bool = False) -> None:
    await host.publish("s", [record(CloseAckPing(n=i), stream="s",
                                    correlation_id=f"w{i}" if spread else "w")
                             for i in range(n)], external=False)


class _Second:
    """Another consumer of the subscription, taking everything it gets (automatic acks)."""

    def __init__(self, host) -> None:
        self.seen: list[int] = []
        self._task = asyncio.ensure_future(self._run(host))

    async def _run(self, host) -> None:
        async with host.subscribe("sub", "c2") as deliveries:
            async for d in deliveries:
                self.seen.append(d.event.n)

    async def has(self, wanted: set[int]) -> None:
        await eventually(lambda: asyncio.sleep(0, wanted <= set(self.seen)))

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.mark.parametrize("dead", [False, True], ids=["nack", "dead_letter"])
async def test_a_nack_or_dead_letter_on_its_way_lands_before_the_release(dead):
    async with _streaming().run() as host:
        store = host.store
        await _publish(host, 3)
        first = host.subscribe("sub", "c1", auto_ack=False)
        await first.open()
        d = await within(first.next(timeout=10))
        assert d.event.n == 0
        store.settle_delay = 0.3
        settle = asyncio.ensure_future(d.dead_letter(reason="bad") if dead
                                       else d.nack(delay=60, reason="later"))
        await eventually(lambda: asyncio.sleep(0, store.settling == 1))
        await within(first.aclose())
        await within(settle)  # no error: it landed, then the consumer let go of the rest
        assert store.releases_overtaking == 0
        second = _Second(host)
        try:
            await second.has({1, 2})
            # 0 waits out its 60 s delay (or sits in the dead-letter queue), not redelivered
            assert sorted(second.seen) == [1, 2]
            letters = await host.dead_letters("sub")
            assert [x.event.id for x in letters] == ([d.record.id] if dead else [])
        finally:
            await second.stop()


async def test_acks_deferred_while_the_close_flushes_are_sent_before_the_release(monkeypatch):
    # no background flush of deferred acks during the test: only the close sends them
    from svrnty_events.subscriptions import consumer as consumer_module
    from svrnty_events.subscriptions import subscriber as subscriber_module

    monkeypatch.setattr(consumer_module, "ACK_FLUSH_INTERVAL", 600.0)
    monkeypatch.setattr(subscriber_module, "ACK_FLUSH_INTERVAL", 600.0)
    async with _streaming().run() as host:
        store = host.store
        await _publish(host, 20)
        first = host.subscribe("sub", "c1")
        await first.open()
        seen = [(await within(first.next(timeout=10))).event.n for _ in range(2)]
        store.ack_delay = 0.5
        # a close from elsewhere (a host stop, another task) while the loop goes on: its
        # first flush (the ack of 0) is on its way while the loop takes 2, 3, 4
        close = asyncio.ensure_future(first.consumer.close("stopping"))
        await eventually(lambda: asyncio.sleep(0, store.acks_in_flight == 1))
        seen += [(await within(first.next(timeout=10))).event.n for _ in range(3)]
        assert seen == [0, 1, 2, 3, 4]
        await within(close)
        assert store.releases_overtaking == 0
        store.ack_delay = 0.0
        second = _Second(host)
        try:
            await second.has(set(range(4, 20)))
            # 0-3 were processed and acked; 4 was handed to code, not acked: redelivered
            assert sorted(second.seen) == list(range(4, 20))
        finally:
            await second.stop()


async def test_the_acks_of_every_partition_land_before_the_release():
    async with _streaming(partitions=2, mode="consumer_group").run() as host:
        store = host.store
        await _publish(host, 10, spread=True)
        first = host.subscribe("sub", "c1")
        await first.open()
        handed = [await within(first.next(timeout=10)) for _ in range(10)]
        assert len({d.group for d in handed[:-1]}) == 2  # acks to send to two groups
        store.ack_delay = 0.3
        # the background flush of 9 automatic acks: the first group's ack on its way
        await eventually(lambda: asyncio.sleep(0, store.acks_in_flight == 1))
        await within(first.consumer.close("stopping"))
        assert store.releases_overtaking == 0
        store.ack_delay = 0.0
        second = _Second(host)
        last = handed[-1].event.n
        try:
            await second.has({last})
            await eventually(lambda: _settled(host))
            assert second.seen == [last]  # only the one handed over and not acked
        finally:
            await second.stop()


async def test_an_at_most_once_hand_over_on_its_way_is_not_given_to_another_consumer():
    async with _streaming(delivery_semantics="at_most_once").run() as host:
        store = host.store
        await _publish(host, 3)
        first = host.subscribe("sub", "c1")
        await first.open()
        store.ack_delay = 0.3
        taking = asyncio.ensure_future(first.next(timeout=10))
        await eventually(lambda: asyncio.sleep(0, store.acks_in_flight == 1))
        await within(first.consumer.close("stopping"))
        got = await within(taking)
        assert store.releases_overtaking == 0
        store.ack_delay = 0.0
        second = _Second(host)
        try:
            await second.has({1, 2})
            assert got is not None and got.event.n == 0
            assert sorted(second.seen) == [1, 2]  # 0 went to c1's code only
        finally:
            await second.stop()


async def test_a_consumer_waiting_for_a_slow_ack_is_not_taken_for_dead():
    async with _streaming().run() as host:
        store = host.store
        await _publish(host, 2)
        consumer = await host.open_consumer("sub", "c1", heartbeat_timeout=0.5)
        [d] = await within(consumer.fetch(max_events=1))
        store.ack_delay = 2.0  # four heartbeat timeouts
        await within(consumer.ack([d.record.id]))
        assert not consumer.closed and store.releases_overtaking == 0
        await within(consumer.close())


class LostReplyStore(MemoryStore):
    """The memory store whose next ack is applied and then answered as unreachable (the reply
    lost on its way back)."""

    lose_next_reply = False

    async def ack(self, *args, **kwargs):
        result = await super().ack(*args, **kwargs)
        if self.lose_next_reply:
            self.lose_next_reply = False
            raise StoreUnavailableError("connection lost before the reply")
        return result


LOST_REPLY = store_plugin("lost-reply", LostReplyStore, name="lost-reply-store")


async def test_an_at_most_once_hand_over_whose_ack_reply_was_lost_still_reaches_code():
    streaming = EventStreaming(store="lost-reply", plugins=[LOST_REPLY])
    streaming.add_stream("s", type=StreamType.PERSISTENT, delivery_semantics="at_most_once")
    streaming.add_subscription("s", "sub", mode="exclusive")
    async with streaming.run() as host:
        await _publish(host, 3)
        consumer = await host.open_consumer("sub", "c1")
        host.store.lose_next_reply = True
        # the retry finds the events settled already (by the first attempt): still ours
        got = await within(consumer.fetch())
        assert [d.event.n for d in got] == [0, 1, 2]
        # nothing is left in the store to hand to anyone else
        assert await within(consumer.fetch(timeout=0.2)) == []
        await within(consumer.close())


async def test_a_fetch_of_no_event_returns_at_once():
    async with _streaming().run() as host:
        await _publish(host, 3)
        consumer = await host.open_consumer("sub", "c1")
        assert await within(consumer.wait_ready())  # all three claimed into the buffer
        [d] = await within(consumer.fetch(max_events=1))
        assert d.event.n == 0 and len(consumer.prefetched) == 2
        assert await within(consumer.fetch(max_events=0)) == []
        assert [x.event.n for x in await within(consumer.fetch())] == [1, 2]
        await within(consumer.close())
