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

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailableError("store is down")

    async def claim(self, *args, **kwargs):
        self._check()
        return await super().claim(*args, **kwargs)

    async def ack(self, *args, **kwargs):
        self._check()
        return await super().ack(*args, **kwargs)

    async def append(self, *args, **kwargs):
        self._check()
        return await super().append(*args, **kwargs)

    async def wait_for_change(self, *args, **kwargs):
        self._check()
        return await super().wait_for_change(*args, **kwargs)


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
