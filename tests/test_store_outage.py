"""The engine rides out a store outage: consumers back off and resume, a failed ack leaves the
event held (so it can be acked again), and nothing is lost."""

from __future__ import annotations

import asyncio

import pytest

from svrnty_events import Event, EventStreaming, StreamType, hookimpl
from svrnty_events.errors import StoreUnavailableError
from svrnty_events.events import record
from svrnty_events.store import Capabilities
from svrnty_events.testing import within
from svrnty_events_memory import MemoryStore


class OutagePing(Event):
    n: int


class OutageStore(MemoryStore):
    """The memory store behind a switch that makes every call fail as an unreachable store."""

    down = False

    claims_refused = 0
    acks_refused = 0

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailableError("store is down")

    async def claim(self, *args, **kwargs):
        if self.down:
            self.claims_refused += 1
        self._check()
        return await MemoryStore.claim(self, *args, **kwargs)

    async def ack(self, *args, **kwargs):
        if self.down:
            self.acks_refused += 1
        self._check()
        return await super().ack(*args, **kwargs)

    async def append(self, *args, **kwargs):
        self._check()
        return await super().append(*args, **kwargs)

    async def wait_for_change(self, *args, **kwargs):
        self._check()
        return await super().wait_for_change(*args, **kwargs)

    #: extend calls that failed / went through (conditions the tests wait on)
    extends_failed = 0
    extends_done = 0

    async def extend(self, *args, **kwargs):
        if self.down:
            self.extends_failed += 1
        self._check()
        result = await super().extend(*args, **kwargs)
        self.extends_done += 1
        return result


class OutagePlugin:
    @hookimpl
    def register_event_stores(self, register):
        register("outage", OutageStore)


async def test_consumers_back_off_and_resume_after_an_outage():
    streaming = EventStreaming(store="outage", plugins=[OutagePlugin()])
    streaming.add_stream("s", type=StreamType.PERSISTENT)
    streaming.add_subscription("s", "sub", mode="exclusive")
    async with streaming.run() as host:
        store = host.store
        assert isinstance(store, OutageStore)
        await host.publish("s", [record(OutagePing(n=i), stream="s", correlation_id="c")
                                 for i in range(5)], external=False)
        consumer = await host.open_consumer("sub", "c1")
        first = await within(consumer.fetch(max_events=2))
        assert [d.event.n for d in first] == [0, 1]

        store.down = True
        with pytest.raises(StoreUnavailableError):
            await first[0].ack()
        assert set(consumer.held) == {first[0].id, first[1].id}  # still held: ack can be retried
        assert await consumer.fetch(timeout=0.3) == []  # backs off instead of failing
        fetching = asyncio.ensure_future(consumer.fetch())
        await asyncio.sleep(0.2)
        assert not fetching.done()
        store.down = False
        await host.publish("s", [record(OutagePing(n=5), stream="s", correlation_id="c")],
                           external=False)
        rest = await within(fetching)
        await consumer.ack([d.id for d in [*first, *rest]])
        more = await within(consumer.fetch(timeout=1))
        await consumer.ack([d.id for d in more])
        assert sorted(d.event.n for d in [*first, *rest, *more]) == [0, 1, 2, 3, 4, 5]


class SharedOutageStore(OutageStore):
    """The same, declared shared by several hosts (so consumer_group syncs through leases), and
    whose release fails too while it is down."""

    capabilities = Capabilities(durable=False, idempotent_append=True, shared=True)

    async def release(self, *args, **kwargs):
        self._check()
        return await super().release(*args, **kwargs)


class SharedOutagePlugin:
    @hookimpl
    def register_event_stores(self, register):
        register("shared-outage", SharedOutageStore)


async def test_a_consumer_whose_release_failed_still_leaves_the_group():
    """The store cannot take the events back when a consumer closes: the consumer leaves the
    mode all the same (no ghost member keeps its partitions), its events come back after their
    visibility timeout, and the other consumer then gets every workflow."""
    streaming = EventStreaming(store="shared-outage", plugins=[SharedOutagePlugin()])
    streaming.add_stream("s", type=StreamType.PERSISTENT, partitions=8)
    streaming.add_subscription("s", "sub", mode="consumer_group", visibility_timeout=0.5,
                               options={"sync_interval": 0.05})
    async with streaming.run() as host:
        store = host.store
        a = await host.open_consumer("sub", "a")
        b = await host.open_consumer("sub", "b")
        await asyncio.sleep(0.2)  # both members synced: the partitions are split
        await host.publish("s", [record(OutagePing(n=i), stream="s", correlation_id=f"wf-{i}")
                                 for i in range(16)], external=False)
        got_a = await within(a.fetch(timeout=1))
        assert got_a  # a owns some workflows and holds their events
        store.down = True
        with pytest.raises(StoreUnavailableError):  # the release fails: events stay in flight
            await a.close("disconnected")
        store.down = False
        mode = host.engine.runtime("sub").mode
        assert mode.members == ["b"]
        seen: list[int] = []
        while len(set(seen)) < 16:
            batch = await within(b.fetch(timeout=3))
            assert batch, f"b got {sorted(set(seen))} only"
            seen += [d.event.n for d in batch]
            await b.ack([d.id for d in batch])
        assert sorted(set(seen)) == list(range(16))  # a's events came back to b: 0 lost


async def wait_for(condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_refresh_of_the_buffer_that_failed_is_tried_again():
    """Prefetched events are extended by an engine task at half their visibility timeout; when
    the store is down at that moment, the refresh is tried again soon (not only at the next
    claim), so the buffer outlives the outage and no other consumer gets those events."""
    streaming = EventStreaming(store="outage", plugins=[OutagePlugin()])
    streaming.add_stream("s", type=StreamType.PERSISTENT)
    streaming.add_subscription("s", "sub", mode="exclusive", visibility_timeout=2.0)
    async with streaming.run() as host:
        store = host.store
        await host.publish("s", [record(OutagePing(n=i), stream="s", correlation_id="c")
                                 for i in range(5)], external=False)
        slow = await host.open_consumer("sub", "slow")
        assert await within(slow.wait_ready())
        [first] = await slow.take(1)  # the other four wait in the buffer
        await slow.ack([first.id])
        store.down = True
        await within(wait_for(lambda: store.extends_failed >= 1))  # the refresh failed
        store.down = False
        await within(wait_for(lambda: store.extends_done >= 1))  # and was tried again
        other = await host.open_consumer("sub", "other")
        # past the deadline of the first claim (2 s after it): the buffer is still the slow one's
        assert await other.fetch(timeout=2.5) == []
        rest = await within(slow.fetch())
        await slow.ack([d.id for d in rest])
        assert [d.event.n for d in [first, *rest]] == [0, 1, 2, 3, 4]
        assert all(d.attempt == 1 for d in rest)


async def test_automatic_acks_that_met_an_outage_are_sent_once_it_is_over():
    """An automatic ack the store refused stays with the consumer and goes once the store is
    back: the loop goes on, the event is not redelivered."""
    streaming = EventStreaming(store="outage", plugins=[OutagePlugin()])
    streaming.add_stream("s", type=StreamType.PERSISTENT)
    streaming.add_subscription("s", "sub", mode="exclusive", visibility_timeout=30)
    async with streaming.run() as host:
        store = host.store
        await host.publish("s", [record(OutagePing(n=i), stream="s", correlation_id="c")
                                 for i in range(3)], external=False)
        seen: list[int] = []
        async with host.subscribe("sub", "c", window=1) as deliveries:
            d = await within(deliveries.next(timeout=5))
            seen.append(d.event.n)
            store.down = True  # the ack of the first meets the outage: the loop waits it out
            waiting = asyncio.ensure_future(deliveries.next(timeout=20))
            # refused with the next claim, then by the flush that tries again
            await within(wait_for(lambda: store.acks_refused >= 2))
            store.down = False
            d = await within(waiting)
            seen.append(d.event.n)
            while len(seen) < 3:
                d = await within(deliveries.next(timeout=5))
                seen.append(d.event.n)
        assert seen == [0, 1, 2]
        other = await host.open_consumer("sub", "other")
        assert await other.fetch(timeout=0.3) == []  # all three acked
