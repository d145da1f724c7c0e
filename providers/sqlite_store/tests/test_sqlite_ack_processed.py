"""process_once's last step on SQLite: the processed mark and the ack in one transaction, and
both survive a restart."""

from __future__ import annotations

from svrnty_events import Event, EventStreaming, StreamType
from svrnty_events.events import record
from svrnty_events.testing import collect


class Charge(Event):
    cents: int


def streaming(path: str) -> EventStreaming:
    s = EventStreaming(store="sqlite", store_options={"path": path})
    s.add_stream("charges", type=StreamType.PERSISTENT, delivery_semantics="exactly_once")
    s.add_subscription("charges", "billing", mode="exclusive", visibility_timeout=0.2)
    return s


async def test_processed_mark_and_ack_land_together_and_survive_a_restart(tmp_path):
    path = str(tmp_path / "events.db")
    applied: list[int] = []
    async with streaming(path).run() as host:
        await host.publish("charges", [record(Charge(cents=c), stream="charges",
                                              correlation_id="w") for c in (100, 200)],
                           external=False)
        consumer = await host.open_consumer("billing", "c")
        first, second = await collect(consumer, 2, ack=False)
        assert await first.process_once(lambda d: applied.append(d.event.cents)) is True
        store = host.store
        assert await store.is_processed("billing", first.id)
        # a mark for an event this consumer no longer holds is still recorded
        assert await store.ack_processed("billing", "", "someone-else", second.id) is False
        assert await store.is_processed("billing", second.id)
    async with streaming(path).run() as host:
        consumer = await host.open_consumer("billing", "after-restart")
        [again] = await collect(consumer, 1, ack=False)  # only the un-acked one comes back
        assert again.id == second.id
        assert await again.process_once(lambda d: applied.append(d.event.cents)) is False
        assert await consumer.fetch(timeout=0.3) == []
    assert applied == [100]
