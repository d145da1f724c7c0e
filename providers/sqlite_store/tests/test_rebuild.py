"""Event-sourced workflow state: rebuild by correlation id with snapshots; replay with a filter
and a rate limit."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from svrnty_events import StreamType
from svrnty_events.config import StreamConfig
from svrnty_events.events import Event, RecordedEvent, record
from svrnty_events.testing import within
from svrnty_events_sqlite import SqliteStore, SqliteStoreOptions, iter_events, rebuild


class Deposited(Event):
    amount: int


class Withdrawn(Event):
    amount: int


class Account(msgspec.Struct):
    balance: int = 0
    operations: list[int] = []


def apply(state: Account, event: RecordedEvent) -> Account:
    e = event.decode()
    delta = e.amount if isinstance(e, Deposited) else -e.amount
    return Account(state.balance + delta, [*state.operations, delta])


def ops(account: str, amounts: list[int]) -> list[RecordedEvent]:
    return [record(Deposited(amount=a) if a >= 0 else Withdrawn(amount=-a), stream="s",
                   correlation_id=account) for a in amounts]


async def open_store(path: Path) -> SqliteStore:
    store = SqliteStore(SqliteStoreOptions(path=str(path)))
    await within(store.start())
    await store.create_stream(StreamConfig(name="s", type=StreamType.PERSISTENT))
    return store


async def full_replay(store: SqliteStore, account: str) -> Account:
    state = Account()
    for e in await store.read("s", correlation_id=account):
        state = apply(state, e)
    return state


async def test_snapshot_plus_replay_equals_full_replay_across_restart(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = await open_store(db)
    try:
        amounts = [(i % 7) - 2 for i in range(250)]
        for i in range(0, 250, 50):  # interleaved with another workflow's events
            await store.append("s", ops("acc-1", amounts[i:i + 50]))
            await store.append("s", ops("acc-2", [1, 2, 3]))
        first = await rebuild(store, "s", "acc-1", apply, Account(), snapshot_every=100)
        assert (first.replayed, first.from_snapshot, first.version) == (250, 0, 250)
        assert first.state == await full_replay(store, "acc-1")
        snap = await store.load_snapshot("s", "acc-1")
        assert snap is not None and snap.version == 250
    finally:
        await store.close()

    store = await open_store(db)
    try:
        await store.append("s", ops("acc-1", [10, -3]))
        calls = 0

        def counting(state: Account, event: RecordedEvent) -> Account:
            nonlocal calls
            calls += 1
            return apply(state, event)

        again = await rebuild(store, "s", "acc-1", counting, Account(), snapshot_every=100)
        assert calls == 2 and (again.from_snapshot, again.version) == (250, 252)
        assert again.state == await full_replay(store, "acc-1")
        assert again.version == await store.correlation_version("s", "acc-1")
        # another key ignores the snapshots of the first (apply changed meaning)
        other = await rebuild(store, "s", "acc-1", apply, Account(), key="v2",
                              snapshot_every=None)
        assert other.replayed == 252 and other.state == again.state
        assert await store.load_snapshot("s", "acc-1", "v2") is None
    finally:
        await store.close()


async def test_replay_with_type_filter_and_rate_limit(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "events.db")
    try:
        await store.append("s", ops("a", [1, -1, 2, -2, 3, -3, 4, -4, 5, -5]))
        started = time.monotonic()
        got = [e.decode().amount async for e in iter_events(
            store, "s", event_types=["Deposited"], rate=50, page=2)]
        elapsed = time.monotonic() - started
        assert got == [1, 2, 3, 4, 5]
        assert elapsed >= 4 / 50 * 0.9  # 5 events at 50/s: 4 gaps of 20 ms
        got = [e.sequence async for e in iter_events(store, "s", from_sequence=7)]
        assert got == [7, 8, 9]
    finally:
        await store.close()
