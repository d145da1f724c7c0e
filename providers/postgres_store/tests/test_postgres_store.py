"""What the conformance suite does not pin down for a shared, durable store: two store
instances (two hosts) see one log and one delivery state, catch-up by sequence and by time,
snapshots, leases on the server's clock, partitions read through their index."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import timedelta

from svrnty_events.config import StreamConfig, SubscriptionConfig
from svrnty_events.events import Event, record, utcnow
from svrnty_events.store import ClaimFilter
from svrnty_events.testing import eventually, within
from svrnty_events_postgres import PostgresStore, PostgresStoreOptions, Snapshot, rebuild
from svrnty_events_postgres.rows import NOW


class StoreTick(Event):
    n: int


@asynccontextmanager
async def opened(url: str, schema: str, **stream):
    store = PostgresStore(PostgresStoreOptions(url=url, schema=schema))
    await within(store.start(), 30)
    try:
        await store.create_stream(StreamConfig(name="s", type="persistent", **stream))
        await store.create_subscription(SubscriptionConfig(name="sub", stream="s",
                                                           mode="exclusive"))
        yield store
    finally:
        await store.close()


def ticks(start: int, count: int, correlation_id: str = "wf", **kw) -> list:
    return [record(StoreTick(n=i), stream="s", correlation_id=correlation_id, **kw)
            for i in range(start, start + count)]


async def test_two_hosts_share_the_log_and_the_delivery_state(pg_url, schema):
    async with opened(pg_url, schema) as a, opened(pg_url, schema) as b:
        await a.ensure_group("sub", "")
        await a.append("s", ticks(0, 6))
        await b.append("s", ticks(6, 2))  # sequences continue across hosts
        assert [e.sequence for e in await b.read("s")] == list(range(8))
        got_a = (await a.claim("sub", "", "ca", max_count=3, visibility_timeout=30)).claimed
        got_b = (await b.claim("sub", "", "cb", max_count=10, visibility_timeout=30)).claimed
        assert [c.event.sequence for c in got_a] == [0, 1, 2]
        assert [c.event.sequence for c in got_b] == [3, 4, 5, 6, 7]
        assert await b.ack("sub", "", "cb", [got_a[0].event.id]) == [got_a[0].event.id]
        # one delivery state: what ca holds is ca's on every host
        assert await b.release("sub", "", "ca") == 3
        assert await a.release("sub", "", "ca") == 0
        again = (await b.claim("sub", "", "cb", max_count=10, visibility_timeout=30)).claimed
        assert [(c.event.sequence, c.attempt) for c in again] == [(0, 2), (1, 2), (2, 2)]
        # leases: one table for both hosts, on the server's clock
        assert await a.leases("sub", "", acquire={"p:0": ("ca", 30)}) == {"p:0": "ca"}
        assert await b.leases("sub", "", acquire={"p:0": ("cb", 30)}) == {"p:0": "ca"}
    async with opened(pg_url, schema) as c:  # durable: a new host finds the state
        assert (await c.stream_info("s")).length == 8
        rest = (await c.claim("sub", "", "cc", max_count=10, visibility_timeout=30)).claimed
        assert rest == []  # everything is acked or held by cb (30 s deadline)


async def test_catch_up_by_sequence_and_by_time(pg_url, schema):
    async with opened(pg_url, schema) as store:
        old = utcnow() - timedelta(hours=2)
        await store.append("s", ticks(0, 5, timestamp=old))
        cut = utcnow() - timedelta(minutes=1)
        await store.append("s", ticks(5, 5))
        assert [e.decode().n for e in await store.read("s", since=cut)] == [5, 6, 7, 8, 9]
        assert [e.sequence for e in await store.read("s", from_sequence=7)] == [7, 8, 9]
        await store.ensure_group("sub", "late", start=8)
        got = await store.claim("sub", "late", "c", max_count=10, visibility_timeout=5)
        assert [c.event.sequence for c in got.claimed] == [8, 9]


async def test_snapshots_keep_the_latest_and_rebuild_from_them(pg_url, schema):
    async with opened(pg_url, schema) as store:
        await store.append("s", ticks(0, 10))
        taken = utcnow()
        await store.save_snapshot(Snapshot("s", "wf", "default", 6, 5, b"15", taken))
        await store.save_snapshot(Snapshot("s", "wf", "default", 3, 2, b"3", taken))  # older
        snap = await store.load_snapshot("s", "wf")
        assert (snap.version, snap.sequence, snap.state) == (6, 5, b"15")
        assert await store.load_snapshot("s", "other") is None
        rebuilt = await rebuild(store, "s", "wf", initial=0,
                                apply=lambda total, e: total + e.decode().n)
        assert rebuilt.state == sum(range(10))


async def test_a_partition_claim_reads_its_partition_only(pg_url, schema):
    async with opened(pg_url, schema, partitions=4) as store:
        batch = [e for w in range(8) for e in ticks(w * 10, 3, correlation_id=f"wf-{w}")]
        out = await store.append("s", batch)
        for p in range(4):
            await store.ensure_group("sub", f"#{p}")
            got = await store.claim("sub", f"#{p}", "c", max_count=100, visibility_timeout=5,
                                    filter=ClaimFilter(partition=p))
            assert [c.event.id for c in got.claimed] == [e.id for e in out if e.partition == p]


async def test_a_cancelled_claim_gives_back_what_it_took_at_once(pg_url, schema):
    """Cancelled at any point, a claim leaves nothing invisible until its visibility timeout
    (60 s here): what it took is claimable at once, with no attempt counted."""
    async with opened(pg_url, schema) as store:
        for i, delay in enumerate((0, 0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02)):
            group = f"g{i}"
            await store.ensure_group("sub", group)
            claim = asyncio.ensure_future(store.claim("sub", group, "cancelled", max_count=3,
                                                      visibility_timeout=60))
            if i == 0:
                await store.append("s", ticks(0, 3))
            await asyncio.sleep(delay)
            claim.cancel()
            taken = None
            try:
                taken = await within(claim, 10)  # it had finished: it keeps its events
            except asyncio.CancelledError:
                pass

            async def the_rest():
                got: list = []
                while len(got) < 3 - (len(taken.claimed) if taken else 0):
                    got += (await store.claim("sub", group, "other", max_count=3,
                                              visibility_timeout=60)).claimed
                    await asyncio.sleep(0.01)
                return got

            rest = await within(the_rest(), 10)
            assert all(c.attempt == 1 for c in rest), (delay, rest)
            held = [c.event.sequence for c in (taken.claimed if taken else [])]
            assert sorted(held + [c.event.sequence for c in rest]) == [0, 1, 2], delay


async def rows(store, schema: str) -> tuple[int, int]:
    """(batches rows, pending rows) of the schema."""
    async with store.connection() as conn:
        return (await conn.fetchval(f'SELECT count(*) FROM "{schema}".batches'),
                await conn.fetchval(f'SELECT count(*) FROM "{schema}".pending'))


async def test_a_claim_writes_one_row_and_other_changes_detach_it_first(pg_url, schema):
    async with opened(pg_url, schema) as a, opened(pg_url, schema) as b:
        await a.ensure_group("sub", "")
        await a.append("s", ticks(0, 30))
        first = (await a.claim("sub", "", "c", max_count=10, visibility_timeout=30)).claimed
        assert [c.attempt for c in first] == [1] * 10
        assert await rows(a, schema) == (1, 0)  # one row for the claim's 10 events
        ids = [c.event.id for c in first]
        assert await a.ack("sub", "", "c", ids) == []  # all of it: the row goes
        assert await rows(a, schema) == (0, 0)
        # part of a batch: detached into its pending rows, the rest stays held
        second = (await a.claim("sub", "", "c", max_count=10, visibility_timeout=30)).claimed
        ids = [c.event.id for c in second]
        assert await a.ack("sub", "", "c", ids[:4]) == []
        assert await rows(a, schema) == (0, 6)
        assert await a.nack("sub", "", "c", ids[4], delay=0.0)
        # another host (which does not know the batch) settles what this one holds: refused
        assert await b.ack("sub", "", "x", ids[5:]) == ids[5:]
        assert await b.ack("sub", "", "c", ids[5:]) == []
        assert await rows(a, schema) == (0, 1)  # the nacked one waits for redelivery
        again = (await a.claim("sub", "", "d", max_count=1, visibility_timeout=30)).claimed
        assert [(c.event.id, c.attempt) for c in again] == [(ids[4], 2)]
        assert await a.ack("sub", "", "d", [ids[4]]) == []
        # a batch past its deadline comes back whole, before new events, at attempt 2
        third = (await a.claim("sub", "", "c", max_count=5, visibility_timeout=0.2)).claimed
        assert await rows(a, schema) == (1, 0)

        async def expired() -> bool:  # on the server's clock; no claim meanwhile
            async with a.connection() as conn:
                return await conn.fetchval(f'SELECT bool_and(due <= {NOW}) FROM "{schema}".'
                                           "batches")

        await eventually(expired, 30)
        late = (await b.claim("sub", "", "e", max_count=100, visibility_timeout=30)).claimed
        assert [c.event.id for c in late[:5]] == [c.event.id for c in third]
        assert {(c.attempt, c.last_reason) for c in late[:5]} == {
            (2, "visibility timeout expired")}
        assert [c.attempt for c in late[5:]] == [1] * 5  # then the new ones
        assert await a.ack("sub", "", "c", [c.event.id for c in third]) == [
            c.event.id for c in third]  # not c's any more
        assert await b.ack("sub", "", "e", [c.event.id for c in late]) == []
        assert await rows(a, schema) == (0, 0)
        assert await a.group_lags("sub") == {"": 0}
