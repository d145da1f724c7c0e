"""process_once's last step on SQLite: the processed mark and the ack in one transaction, and
both survive a restart; process_in_transaction runs the effect in that transaction too."""

from __future__ import annotations

import pytest

from svrnty_events import Event, EventStreaming, StreamType
from svrnty_events.config import StreamConfig, SubscriptionConfig
from svrnty_events.events import record
from svrnty_events.testing import collect, within
from svrnty_events_sqlite import SqliteStore, SqliteStoreOptions


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


async def test_an_effect_runs_in_the_store_transaction_with_the_mark_and_the_ack(tmp_path):
    store = SqliteStore(SqliteStoreOptions(path=str(tmp_path / "events.db")))
    await within(store.start())
    try:
        await store.create_stream(StreamConfig(name="charges", type=StreamType.PERSISTENT))
        await store.create_subscription(SubscriptionConfig(name="billing", stream="charges"))
        a, b = await store.append("charges", [record(Charge(cents=c), stream="charges",
                                                     correlation_id="w") for c in (1, 2)])
        await within(store.claim("billing", "g", "c", max_count=2, visibility_timeout=60))

        def effect(conn):
            conn.execute("CREATE TABLE IF NOT EXISTS ledger (cents INTEGER)")
            conn.execute("INSERT INTO ledger VALUES (1)")

        def failing(conn):
            effect(conn)
            raise RuntimeError("effect failed")

        with pytest.raises(RuntimeError, match="effect failed"):
            await store.process_in_transaction("billing", "g", "c", b.id, failing)
        assert not await store.is_processed("billing", f"{b.id}@g")  # all rolled back
        assert await store.process_in_transaction("billing", "g", "c", a.id, effect) is True
        assert await store.is_processed("billing", f"{a.id}@g")
        assert await store.ack("billing", "g", "c", [a.id]) == [a.id]  # acked with it
        assert await store.process_in_transaction("billing", "g", "c", a.id, effect) is None
        assert await store.process_in_transaction("billing", "g", "c", b.id, effect) is True
        rows = await store._db.query("SELECT COUNT(*) FROM ledger")
        assert rows == [(2,)]  # one row per applied effect; the failed one left none
    finally:
        await within(store.close())
