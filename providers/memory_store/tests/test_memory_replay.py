"""Replaying a dead letter whose consumer's own group was dropped delivers it once."""

from svrnty_events import Event, EventStreaming
from svrnty_events.events import record
from svrnty_events.testing import collect


class Note(Event):
    n: int


async def test_replay_into_a_dropped_broadcast_group_delivers_once():
    streaming = EventStreaming()
    streaming.add_stream("notes")  # ephemeral: a leaving broadcast consumer's group is dropped
    streaming.add_subscription("notes", "all", mode="broadcast")
    async with streaming.run() as host:
        await host.publish("notes", [record(Note(n=i), stream="notes", correlation_id="w")
                                     for i in range(2)], external=False)
        c1 = await host.open_consumer("all", "c1")
        first, second = await collect(c1, 2, ack=False)
        await first.dead_letter("bad note")
        await second.ack()
        await c1.close()
        assert await host.replay_dead_letters("all") == 1
        again = await host.open_consumer("all", "c1")
        got = await collect(again, 1, ack=True)
        more = await again.fetch(timeout=0.2)
        assert [d.id for d in got + more].count(first.id) == 1
