"""State survives closing and reopening the file; optimistic concurrency; retention in steps;
catch-up from a sequence and from a time."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from svrnty_events import DeliverySemantics, EventStreaming, StreamType
from svrnty_events.config import StreamConfig, SubscriptionConfig
from svrnty_events.errors import ConcurrencyError
from svrnty_events.events import Event, record, utcnow
from svrnty_events.testing import collect, within
from svrnty_events_sqlite import SqliteStore, SqliteStoreOptions, sequence_at


class Step(Event):
    n: int


def steps(count: int, *, start: int = 0, correlation_id: str = "wf", **kw):
    return [record(Step(n=i), stream="s", correlation_id=correlation_id, **kw)
            for i in range(start, start + count)]


STREAM = StreamConfig(name="s", type=StreamType.PERSISTENT)
SUB = SubscriptionConfig(name="sub", stream="s", mode="exclusive")


async def open_store(path: Path, **options) -> SqliteStore:
    store = SqliteStore(SqliteStoreOptions(path=str(path), **options))
    await within(store.start())
    await store.create_stream(STREAM)
    await store.create_subscription(SUB)
    return store


async def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = await open_store(db)
    try:
        await store.ensure_group("sub", "")
        events = await store.append("s", steps(6))
        got = (await store.claim("sub", "", "c1", max_count=4, visibility_timeout=60)).claimed
        assert [c.event.sequence for c in got] == [0, 1, 2, 3]
        assert await store.ack("sub", "", "c1", [got[0].event.id]) == []
        assert await store.nack("sub", "", "c1", got[1].event.id, delay=60, reason="later")
        assert await store.dead_letter("sub", "", "c1", got[2].event.id, reason="poison",
                                       attempts=1, error="ValueError")
        # got[3] stays in flight: its consumer dies with the process
        await store.record_receipts("sub", "c1", [events[0].id], read=True)
        await store.record_receipts("sub", "c1", [events[1].id], read=False)
        assert await store.mark_processed("sub", events[0].id)
    finally:
        await store.close()
        await store.close()  # twice is fine

    store = await open_store(db)
    try:
        info = await store.stream_info("s")
        assert (info.length, info.first_sequence, info.next_sequence) == (6, 0, 6)
        assert await store.correlation_version("s", "wf") == 6
        # dedup by event id holds across the restart
        again = await store.append("s", [events[0]])
        assert again[0].sequence == 0 and (await store.stream_info("s")).length == 6
        assert again[0] == events[0]
        result = await store.claim("sub", "", "c2", max_count=10, visibility_timeout=60)
        # the in-flight event of the dead consumer comes back at once, its attempt counted;
        # the nacked one keeps its delay; the acked and dead-lettered ones do not come back
        assert [(c.event.sequence, c.attempt) for c in result.claimed] == [(3, 2), (4, 1),
                                                                            (5, 1)]
        assert result.claimed[0].last_reason == "host restarted before ack"
        assert result.next_due is not None and result.next_due > time.time() + 30
        [letter] = await store.list_dead_letters("sub")
        assert (letter.event, letter.reason, letter.attempts, letter.error) == (
            events[2], "poison", 1, "ValueError")
        receipts = {r.event_id: r for r in await store.list_receipts("sub", consumer_id="c1")}
        assert receipts[events[0].id].read_at is not None
        assert receipts[events[1].id].read_at is None
        assert await store.is_processed("sub", events[0].id)
        assert not await store.mark_processed("sub", events[0].id)
        assert await store.replay_dead_letters("sub") == 1
        [replayed] = (await store.claim("sub", "", "c2", max_count=5,
                                        visibility_timeout=60)).claimed
        assert (replayed.event.sequence, replayed.attempt) == (2, 1)
    finally:
        await store.close()


async def test_expected_version_conflicts_survive_restart(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = await open_store(db)
    try:
        await store.append("s", steps(3, correlation_id="order-1"), expected_version=0)
        with pytest.raises(ConcurrencyError) as err:
            await store.append("s", steps(1, correlation_id="order-1"), expected_version=0)
        assert (err.value.expected, err.value.actual) == (0, 3)
        with pytest.raises(ValueError):  # one correlation id per checked batch
            await store.append("s", [*steps(1, correlation_id="a"),
                                     *steps(1, correlation_id="b")], expected_version=0)
    finally:
        await store.close()
    store = await open_store(db)
    try:
        with pytest.raises(ConcurrencyError):
            await store.append("s", steps(1, correlation_id="order-1"), expected_version=2)
        # two writers that read version 3: exactly one wins
        results = await asyncio.gather(
            store.append("s", steps(1, correlation_id="order-1"), expected_version=3),
            store.append("s", steps(1, correlation_id="order-1"), expected_version=3),
            return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["ConcurrencyError", "list"]
        assert await store.correlation_version("s", "order-1") == 4
        assert (await store.stream_info("s")).length == 4
    finally:
        await store.close()


async def test_count_retention_runs_in_bounded_steps(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = await open_store(db, retention_step=10)
    try:
        await store.append("s", steps(300))
        # tighten retention: the backlog of 275 events goes in steps of at most 10, and other
        # operations run between the steps
        seen: list[int] = []
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                seen.append((await store.stream_info("s")).first_sequence)

        watcher = asyncio.ensure_future(watch())
        await within(store.create_stream(StreamConfig(name="s", type=StreamType.PERSISTENT,
                                                      retention_max_count=25)))
        done.set()
        await within(watcher)
        info = await store.stream_info("s")
        assert (info.length, info.first_sequence) == (25, 275)
        between = sorted({f for f in seen if 0 < f < 275})
        assert between, "retention ran as one big transaction"
        assert all(f % 10 == 0 for f in between)
    finally:
        await store.close()


async def test_age_retention_drops_old_events(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = await open_store(db, retention_step=7)
    try:
        await store.create_stream(StreamConfig(name="s", type=StreamType.PERSISTENT,
                                               retention_max_age=3600))
        old = utcnow() - timedelta(hours=2)
        await store.append("s", steps(30, timestamp=old))
        await store.append("s", steps(5, start=30))
        assert [e.decode().n for e in await store.read("s")] == [30, 31, 32, 33, 34]
        assert (await store.stream_info("s")).first_sequence == 30
    finally:
        await store.close()


def host_config(path: Path) -> EventStreaming:
    s = EventStreaming(store="sqlite", store_options={"path": str(path),
                                                       "synchronous": "normal"})
    s.add_stream("s", type=StreamType.PERSISTENT,
                 delivery_semantics=DeliverySemantics.AT_LEAST_ONCE)
    s.add_subscription("s", "audit", mode="broadcast")
    return s


async def test_catch_up_after_restart_from_cursor_sequence_and_time(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    async with host_config(db).run() as host:
        await host.publish("s", steps(10), external=False)
        c1 = await host.open_consumer("audit", "c1")
        assert [d.event.n for d in await collect(c1, 5)] == [0, 1, 2, 3, 4]
    marker = utcnow()
    await asyncio.sleep(0.01)
    async with host_config(db).run() as host:
        await host.publish("s", steps(3, start=10), external=False)
        # a consumer resuming receives what it missed, and only that
        c1 = await host.open_consumer("audit", "c1")
        assert [d.event.n for d in await collect(c1, 8)] == list(range(5, 13))
        assert await c1.fetch(timeout=0.1) == []
        # a new consumer from a sequence
        c2 = await host.open_consumer("audit", "c2", start=11)
        assert [d.event.n for d in await collect(c2, 2)] == [11, 12]
        # ... and from a time
        start = await sequence_at(host.store, "s", marker)
        assert start == 10
        async with host.subscribe("audit", "c3", start=start) as deliveries:
            got = [(await within(deliveries.__anext__())).event.n for _ in range(3)]
        assert got == [10, 11, 12]
