"""A transient consumer's private cursor is forgotten when it closes; a durable one resumes."""

from __future__ import annotations

from svrnty_events import Event, EventStreaming, StreamType
from svrnty_events.events import record
from svrnty_events.testing import collect, within


class TransientPing(Event):
    n: int


def _streaming() -> EventStreaming:
    streaming = EventStreaming(store="memory")
    streaming.add_stream("s", type=StreamType.PERSISTENT)
    streaming.add_subscription("s", "fanout", mode="broadcast")
    streaming.add_subscription("s", "work", mode="exclusive")
    return streaming


async def test_a_transient_consumer_forgets_its_cursor_and_a_durable_one_resumes():
    async with _streaming().run() as host:
        await host.publish("s", [record(TransientPing(n=i), stream="s", correlation_id="w")
                                 for i in range(4)], external=False)
        for transient, expected in ((False, [2, 3]), (True, [0, 1, 2, 3])):
            name = f"browser-{transient}"
            first = await host.open_consumer("fanout", name, transient=transient)
            assert [d.event.n for d in await collect(first, 2)] == [0, 1]
            await within(first.close())
            again = await host.open_consumer("fanout", name, transient=transient)
            # durable: where it was; transient: a new cursor, from the oldest retained event
            got = await collect(again, len(expected))
            assert [d.event.n for d in got] == expected
            assert await again.fetch(timeout=0.2) == []
            await within(again.close())
        assert host.shares_group("work") and not host.shares_group("fanout")
