"""Claims with a ClaimFilter pushed into SQL, partitions recorded on append, and release of
some held events with unseen attempts given back."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from svrnty_events.config import RetentionPolicy, StreamConfig, StreamType, SubscriptionConfig
from svrnty_events.errors import ConfigError
from svrnty_events.events import Event, partition_of, record
from svrnty_events.store import ClaimFilter
from svrnty_events.testing import within
from svrnty_events_sqlite import SqliteStore, SqliteStoreOptions


class Placed(Event):
    n: int


class Shipped(Event):
    n: int


def stream(partitions: int = 1, **kw: object) -> StreamConfig:
    return StreamConfig(name="s", type=StreamType.PERSISTENT, partitions=partitions, **kw)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture
async def store(path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(SqliteStoreOptions(path=str(path)))
    await within(store.start())
    try:
        yield store
    finally:
        await within(store.close())


async def setup(store: SqliteStore, partitions: int = 1, **kw: object) -> None:
    await within(store.create_stream(stream(partitions, **kw)))
    await within(store.create_subscription(SubscriptionConfig(name="sub", stream="s",
                                                              mode="broadcast")))


def cursor_of(path: Path, group: str) -> int:
    # a second connection reads the WAL file beside the store's own
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT cursor FROM groups WHERE name = ?", (group,)).fetchone()[0]


async def claim(store: SqliteStore, group: str, f: ClaimFilter | None, max_count: int = 100):
    return await within(store.claim("sub", group, "c", max_count=max_count,
                                    visibility_timeout=60, filter=f))


async def test_types_filter_claims_matching_events_and_the_cursor_passes_the_others(
        store: SqliteStore, path: Path) -> None:
    await setup(store)
    await store.append("s", [record(Placed(n=0), stream="s", correlation_id="a"),
                             record(Shipped(n=1), stream="s", correlation_id="a"),
                             record(Placed(n=2), stream="s", correlation_id="a"),
                             record(Shipped(n=3), stream="s", correlation_id="a")])
    only_placed = ClaimFilter(event_types=frozenset({"Placed"}))
    got = await claim(store, "g", only_placed, max_count=1)
    assert [c.event.sequence for c in got.claimed] == [0]
    assert cursor_of(path, "g") == 1  # room filled: the cursor stops after the last claimed
    got = await claim(store, "g", only_placed)
    assert [c.event.sequence for c in got.claimed] == [2]
    assert cursor_of(path, "g") == 4  # fewer than room matched: everything was looked at
    assert (await claim(store, "g", only_placed)).claimed == []


async def test_correlation_filter_reads_one_workflow_through_its_index(
        store: SqliteStore, path: Path) -> None:
    await setup(store)
    await store.append("s", [record(Placed(n=i), stream="s", correlation_id=f"wf-{i % 3}")
                             for i in range(9)])
    wf1 = ClaimFilter(correlation_id="wf-1")
    plans = await claim_plans(store, "g", wf1, max_count=2)
    assert any("events_by_correlation" in p for p in plans), plans
    got = await claim(store, "g", wf1)
    assert [c.event.sequence for c in got.claimed] == [7]  # 1 and 4 went to the first claim
    assert cursor_of(path, "g") == 9


async def test_partitions_are_recorded_on_append_and_read_back(store: SqliteStore) -> None:
    await setup(store, partitions=4)
    ids = [f"order-{i}" for i in range(20)]
    recorded = await store.append("s", [record(Placed(n=i), stream="s", correlation_id=c)
                                        for i, c in enumerate(ids)])
    expected = [partition_of(c, 4) for c in ids]
    assert len(set(expected)) > 1
    assert [e.partition for e in recorded] == expected
    assert [e.partition for e in await store.read("s")] == expected
    # a duplicate append returns the recorded original, partition included
    assert (await store.append("s", [recorded[3]]))[0].partition == expected[3]
    # dead letters keep it
    got = await claim(store, "g", None, max_count=1)
    assert await store.dead_letter("sub", "g", "c", got.claimed[0].event.id, reason="x",
                                   attempts=1)
    [letter] = await store.list_dead_letters("sub")
    assert letter.event.partition == expected[0]


async def test_partitioned_claim_returns_only_its_partition_through_the_partition_index(
        store: SqliteStore, path: Path) -> None:
    await setup(store, partitions=3)
    ids = [f"order-{i}" for i in range(30)]
    await store.append("s", [record(Placed(n=i), stream="s", correlation_id=c)
                             for i, c in enumerate(ids)])
    mine = [seq for seq, c in enumerate(ids) if partition_of(c, 3) == 1]
    plans = await claim_plans(store, "#1", ClaimFilter(partition=1), max_count=2)
    new_events = [p for p in plans if "events_by_part" in p]
    assert new_events, plans
    assert not any("SCAN" in p for p in plans if "events" in p and "pending" not in p), plans
    got = await claim(store, "#1", ClaimFilter(partition=1))
    assert [c.event.sequence for c in got.claimed] == mine[2:]
    assert {c.event.partition for c in got.claimed} == {1}
    assert cursor_of(path, "#1") == 30


async def claim_plans(store: SqliteStore, group: str, f: ClaimFilter,
                      max_count: int) -> list[str]:
    """Run a claim and return the query plan of every SELECT it ran (EXPLAIN QUERY PLAN)."""
    statements: list[str] = []
    await within(store._db.call(lambda conn: conn.set_trace_callback(statements.append)))
    try:
        got = await claim(store, group, f, max_count=max_count)
    finally:
        await within(store._db.call(lambda conn: conn.set_trace_callback(None)))
    assert got.claimed and all(f.matches(c.event) for c in got.claimed)

    def explain(conn: sqlite3.Connection) -> list[str]:
        return [" ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
                for sql in statements if sql.lstrip().upper().startswith("SELECT")]

    return await within(store._db.call(explain))


async def test_waiting_events_the_filter_does_not_match_are_settled(
        store: SqliteStore, path: Path) -> None:
    # e.g. the subscription's event types changed between two runs of the host
    await setup(store)
    placed, shipped = await store.append("s", [
        record(Placed(n=0), stream="s", correlation_id="a"),
        record(Shipped(n=1), stream="s", correlation_id="a")])
    await claim(store, "g", None)
    assert await store.nack("sub", "g", "c", placed.id, delay=0)
    assert await store.nack("sub", "g", "c", shipped.id, delay=0)
    got = await claim(store, "g", ClaimFilter(event_types=frozenset({"Shipped"})))
    assert [c.event.id for c in got.claimed] == [shipped.id]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT event_id FROM pending").fetchall() == [(shipped.id,)]


async def test_an_idle_filtered_group_does_not_hold_back_ephemeral_trimming(
        store: SqliteStore) -> None:
    await within(store.create_stream(StreamConfig(name="s", type=StreamType.EPHEMERAL)))
    await within(store.create_subscription(SubscriptionConfig(name="sub", stream="s",
                                                              mode="broadcast")))
    await store.ensure_group("sub", "g")
    never = ClaimFilter(event_types=frozenset({"Shipped"}))
    await store.append("s", [record(Placed(n=i), stream="s", correlation_id="a")
                             for i in range(1100)])
    assert (await claim(store, "g", never)).claimed == []
    await store.append("s", [record(Placed(n=i), stream="s", correlation_id="a")
                             for i in range(600)])
    # trimmed in steps of retention_step (1000) while the stream holds 1024 or more; had the
    # cursor stayed at 0, nothing would have been trimmed
    assert (await store.stream_info("s")).first_sequence >= 1000


async def test_release_some_events_and_give_back_unseen_attempts(store: SqliteStore) -> None:
    await setup(store)
    a, b, c = await store.append("s", [record(Placed(n=i), stream="s", correlation_id="w")
                                       for i in range(3)])
    got = await claim(store, "g", None)
    assert [x.attempt for x in got.claimed] == [1, 1, 1]
    # c is unseen but not released: its attempt stays
    assert await store.release("sub", "g", "c", event_ids=[a.id, b.id],
                               unseen=[a.id, c.id]) == 2
    again = await claim(store, "g", None)
    assert [(x.event.id, x.attempt) for x in again.claimed] == [(a.id, 1), (b.id, 2)]
    assert await store.ack("sub", "g", "c", [c.id]) == []  # c was held all along
    assert await store.release("sub", "g", "c", unseen=[b.id]) == 2  # all it holds
    last = await claim(store, "g", None)
    assert [(x.event.id, x.attempt) for x in last.claimed] == [(a.id, 2), (b.id, 2)]


async def test_partitions_of_a_stream_change_only_while_it_is_empty(path: Path) -> None:
    store = SqliteStore(SqliteStoreOptions(path=str(path)))
    await within(store.start())
    try:
        await store.create_stream(stream(1))
        await store.create_stream(stream(4))  # empty: allowed
        [e] = await store.append("s", [record(Placed(n=0), stream="s", correlation_id="x")])
        assert e.partition == partition_of("x", 4)
        await store.create_stream(stream(4, description="same partitions"))
        with pytest.raises(ConfigError, match="4 partition"):
            await store.create_stream(stream(2))
    finally:
        await within(store.close())
    store = SqliteStore(SqliteStoreOptions(path=str(path)))
    await within(store.start())
    try:  # the stored count survives a restart
        with pytest.raises(ConfigError):
            await store.create_stream(stream(1))
        await store.create_stream(stream(4))
    finally:
        await within(store.close())


async def test_extend_moves_the_deadline_of_held_events_only(store: SqliteStore) -> None:
    await setup(store)
    a, b = await store.append("s", [record(Placed(n=i), stream="s", correlation_id="w")
                                    for i in range(2)])
    got = await within(store.claim("sub", "g", "c", max_count=1, visibility_timeout=0.05))
    assert [x.event.id for x in got.claimed] == [a.id]
    assert await store.extend("sub", "g", "c", [a.id, b.id], visibility_timeout=60) == [b.id]
    assert await store.extend("sub", "g", "other", [a.id], visibility_timeout=60) == [a.id]
    # a's deadline is a minute away now: another consumer gets b only
    other = await within(store.claim("sub", "g", "d", max_count=5, visibility_timeout=60))
    assert [x.event.id for x in other.claimed] == [b.id]
    assert other.next_due is not None and other.next_due > time.time() + 30


async def test_retention_knows_from_the_group_filter_which_events_it_holds(
        store: SqliteStore) -> None:
    # keep_unsettled keeps what a group has not settled; a group of Shipped events does not
    # hold Placed ones, so they go as the count limit says even before the group claims
    await setup(store, retention_max_count=5, retention_policy=RetentionPolicy.KEEP_UNSETTLED)
    only_shipped = ClaimFilter(event_types=frozenset({"Shipped"}))
    await store.ensure_group("sub", "g", filter=only_shipped)
    appended = await store.append("s", [
        *(record(Placed(n=i), stream="s", correlation_id="a") for i in range(20)),
        record(Shipped(n=20), stream="s", correlation_id="a")])
    # the group has read nothing, yet the Placed events are not its own: they go down to the
    # count limit (the last 5 are kept), the Shipped one stays until the group settles it
    info = await store.stream_info("s")
    assert (info.first_sequence, info.length) == (16, 5)
    got = await claim(store, "g", only_shipped)
    assert [c.event.id for c in got.claimed] == [appended[-1].id]
