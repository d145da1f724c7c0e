"""The Redis store's claims against a real redis-server, without the engine: filters (rejected
entries are settled in the claim), partitions (a partition's claims read only its key),
release of some events, and unseen releases that give the attempt back."""

from __future__ import annotations

import asyncio
import time

from svrnty_events.events import Event, partition_of, record
from svrnty_events.store import ClaimFilter, partition_group

T = 10  # seconds: the bound of every await on the store


class Tock(Event):
    n: int


class Tack(Event):
    n: int


async def append(store, events) -> list:
    return await asyncio.wait_for(store.append("s", events), T)


async def claim(store, group="", consumer="c", max_count=100, vt=30.0, **flt):
    return await asyncio.wait_for(store.claim(
        "sub", group, consumer, max_count=max_count, visibility_timeout=vt,
        filter=ClaimFilter(**flt) if flt else None), T)


def numbers(result) -> list[int]:
    return [c.event.decode().n for c in result.claimed]


async def pending_count(store, key: str, group: str) -> int:
    return (await store.redis.xpending(key, f"sub:{group}"))["pending"]


async def test_type_filter_claims_matching_events_and_settles_the_others(open_store):
    async with open_store() as store:
        await append(store, [record((Tock if i % 2 else Tack)(n=i), stream="s",
                                    correlation_id="wf") for i in range(10)])
        got = await claim(store, max_count=3, event_types=frozenset({"Tock"}))
        assert numbers(got) == [1, 3, 5]
        # the rejected events the claim looked at are settled, not held: only 3 pending
        assert await pending_count(store, store._streams["s"].log, "") == 3
        rest = await claim(store, consumer="d", event_types=frozenset({"Tock"}))
        assert numbers(rest) == [7, 9]
        assert (await claim(store, consumer="e")).claimed == []  # all settled


async def test_correlation_filter(open_store):
    async with open_store() as store:
        await append(store, [record(Tock(n=i), stream="s", correlation_id=f"wf-{i % 3}")
                             for i in range(9)])
        got = await claim(store, correlation_id="wf-1")
        assert numbers(got) == [1, 4, 7]
        assert await pending_count(store, store._streams["s"].log, "") == 3
        assert (await claim(store, consumer="d")).claimed == []  # the others were settled


async def test_a_filtered_claim_looks_at_max_scan_entries_and_says_to_come_back(open_store):
    async with open_store() as store:
        store.options.max_scan = 5
        await append(store, [record(Tack(n=i), stream="s", correlation_id="wf")
                             for i in range(12)] +
                     [record(Tock(n=12), stream="s", correlation_id="wf")])
        first = await claim(store, event_types=frozenset({"Tock"}))
        assert first.claimed == [] and first.next_due is not None  # come back at once
        for _ in range(5):
            got = await claim(store, event_types=frozenset({"Tock"}))
            if got.claimed:
                break
        assert numbers(got) == [12]


async def test_partitions_are_recorded_and_a_partition_claim_reads_only_its_key(open_store):
    async with open_store(partitions=4) as store:
        s = store._streams["s"]
        events = [record(Tock(n=i), stream="s", correlation_id=f"wf-{i}") for i in range(40)]
        recorded = await append(store, events)
        assert [e.partition for e in recorded] == [partition_of(f"wf-{i}", 4)
                                                   for i in range(40)]
        read = await asyncio.wait_for(store.read("s"), T)
        assert [e.partition for e in read] == [e.partition for e in recorded]
        by_partition = {p: [e.decode().n for e in recorded if e.partition == p]
                        for p in range(4)}
        assert sum(1 for ns in by_partition.values() if ns) >= 3
        assert await store.redis.xlen(s.log) == 40
        for p in range(4):
            assert await store.redis.xlen(s.partition(p)) == len(by_partition[p])
        for p in range(4):
            group = partition_group(p)
            await asyncio.wait_for(store.ensure_group("sub", group), T)
            got = await claim(store, group=group, partition=p)
            assert numbers(got) == by_partition[p]
            assert {c.event.partition for c in got.claimed} <= {p}
            assert [c.event.sequence for c in got.claimed] == by_partition[p]  # n == sequence
            # the group lives on the partition's key and read exactly its entries
            info = {g["name"].decode(): g
                    for g in await store.redis.xinfo_groups(s.partition(p))}
            assert info[f"sub:{group}"]["entries-read"] == len(by_partition[p])
            assert info[f"sub:{group}"]["pending"] == len(by_partition[p])
        # no partition group is left on the main log
        assert await store.redis.xinfo_groups(s.log) == []
        # acks, nacks and dead letters find the group on its key
        p = recorded[0].partition
        group = partition_group(p)
        first = recorded[0]
        assert await store.nack("sub", group, "c", first.id, delay=0) is True
        again = await claim(store, group=group, consumer="d", partition=p)
        assert [(c.event.id, c.attempt) for c in again.claimed] == [(first.id, 2)]
        assert await store.dead_letter("sub", group, "d", first.id, reason="bad",
                                       attempts=2) is True
        [letter] = await store.list_dead_letters("sub")
        assert letter.event.partition == p and letter.group == group
        assert await store.replay_dead_letters("sub") == 1
        replayed = await claim(store, group=group, consumer="e", partition=p)
        assert [(c.event.id, c.attempt) for c in replayed.claimed] == [(first.id, 1)]
        assert await store.ack("sub", group, "e", [first.id]) == []
        others = [e.id for e in recorded if e.partition == p][1:]
        assert await store.ack("sub", group, "c", others) == []
        assert await pending_count(store, s.partition(p), group) == 0


async def test_an_exclusive_group_of_a_partitioned_stream_reads_the_main_log_in_order(
        open_store):
    async with open_store(partitions=4) as store:
        await append(store, [record(Tock(n=i), stream="s", correlation_id=f"wf-{i}")
                             for i in range(20)])
        got = await claim(store)
        assert numbers(got) == list(range(20))


async def test_a_partition_group_keeps_the_cursor_ensure_group_gave_it(open_store):
    async with open_store(partitions=2) as store:
        recorded = await append(store, [record(Tock(n=i), stream="s",
                                               correlation_id=f"wf-{i}") for i in range(20)])
        await asyncio.wait_for(store.ensure_group("sub", "#1", start=10), T)
        got = await claim(store, group="#1", partition=1)
        assert numbers(got) == [e.sequence for e in recorded
                                if e.partition == 1 and e.sequence >= 10]


async def test_partition_keys_are_trimmed_with_the_log(open_store):
    async with open_store(partitions=3, retention_max_count=5) as store:
        s = store._streams["s"]
        recorded = await append(store, [record(Tock(n=i), stream="s",
                                               correlation_id=f"wf-{i}") for i in range(30)])
        assert await store.redis.xlen(s.log) == 5
        kept = recorded[-5:]
        for p in range(3):
            assert await store.redis.xlen(s.partition(p)) == sum(
                1 for e in kept if e.partition == p)


async def test_release_of_some_events_and_unseen_ones_keep_their_attempt(open_store):
    async with open_store() as store:
        recorded = await append(store, [record(Tock(n=i), stream="s", correlation_id="wf")
                                        for i in range(3)])
        a, b, c = (e.id for e in recorded)
        assert numbers(await claim(store, consumer="c1")) == [0, 1, 2]
        assert await asyncio.wait_for(
            store.release("sub", "", "c1", event_ids=[a, b], unseen=[a]), T) == 2
        got = await claim(store, consumer="c2")
        assert [(c.event.id, c.attempt) for c in got.claimed] == [(a, 1), (b, 2)]
        assert await store.ack("sub", "", "c1", [c]) == []  # c1 still held the third
        # unseen releases, again and again, never use up attempts
        for _ in range(3):
            assert await store.release("sub", "", "c2", unseen=[a]) == 2
            got = await claim(store, consumer="c2")
        assert [(c.event.id, c.attempt) for c in got.claimed] == [(a, 1), (b, 5)]
        assert await store.release("sub", "", "nobody", event_ids=[a]) == 0
        assert await store.ack("sub", "", "c2", [a, b]) == []


async def test_extend_moves_the_deadline_of_held_events_only(open_store):
    async with open_store() as store:
        recorded = await append(store, [record(Tock(n=i), stream="s", correlation_id="wf")
                                        for i in range(2)])
        a, b = (e.id for e in recorded)
        got = await claim(store, consumer="c1", vt=0.3)
        assert numbers(got) == [0, 1]
        assert await asyncio.wait_for(store.extend("sub", "", "c1", [a, "nope"],
                                                   visibility_timeout=30), T) == ["nope"]
        # wait for b's deadline (a condition, bounded): then b comes back, a stays with c1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + T
        while True:
            again = await claim(store, consumer="c2")
            if again.claimed or loop.time() > deadline:
                break
            await asyncio.wait_for(store.wait_for_change(
                "sub", "", again.version, max(again.next_due - time.time(), 0.01)
                if again.next_due else 0.05), T)
        assert [(c.event.id, c.attempt) for c in again.claimed] == [(b, 2)]
        assert await store.ack("sub", "", "c1", [a, b]) == [b]


async def test_retention_of_a_partitioned_stream_dead_letters_per_partition_group(open_store):
    async with open_store(partitions=2, retention_max_count=10) as store:
        s = store._streams["s"]
        for p in range(2):
            await asyncio.wait_for(store.ensure_group("sub", partition_group(p),
                                                      filter=ClaimFilter(partition=p)), T)
        first = await append(store, [record(Tock(n=i), stream="s", correlation_id=f"wf-{i}")
                                     for i in range(10)])
        p = first[0].partition
        held = await claim(store, group=partition_group(p), partition=p, max_count=1)
        assert [c.event.id for c in held.claimed] == [first[0].id]
        await append(store, [record(Tock(n=i), stream="s", correlation_id=f"wf-{i}")
                             for i in range(10, 30)])
        dead = await store.list_dead_letters("sub")
        # every event retention removed went to the dead-letter queue of its partition's group,
        # except the one in flight, which stays (in the log and its partition key) until settled
        assert sorted(d.event.decode().n for d in dead) == list(range(1, 20))
        assert {(d.group, d.event.partition) for d in dead} <= {("", 0), ("#1", 1)}
        assert {d.reason for d in dead} == {"retention"}
        assert await store.redis.xlen(s.log) == 11
        [(kept, _)] = await store.redis.xrange(s.partition(p), count=1)
        assert kept == b"0-1"  # the held event, first in its partition's key
        assert await store.nack("sub", partition_group(p), "c", first[0].id, delay=0) is True
        again = await claim(store, group=partition_group(p), partition=p, consumer="d",
                            max_count=1)
        assert [(c.event.id, c.attempt) for c in again.claimed] == [(first[0].id, 2)]


async def test_an_ephemeral_stream_and_its_partition_keys_drop_what_every_group_settled(
        open_store):
    async with open_store(partitions=2) as store:  # (ephemeral: the default type)
        s = store._streams["s"]
        await asyncio.wait_for(store.ensure_group("sub", ""), T)
        first = await append(store, [record(Tock(n=i), stream="s", correlation_id=f"wf-{i}")
                                     for i in range(600)])
        got = await claim(store, max_count=1000)
        assert await store.ack("sub", "", "c", [c.event.id for c in got.claimed]) == []
        await append(store, [record(Tock(n=i), stream="s", correlation_id=f"wf-{i}")
                             for i in range(600, 1100)])  # 1100 appended: trimmed to 600
        assert await store.redis.xlen(s.log) == 500
        assert sum([await store.redis.xlen(s.partition(p)) for p in range(2)]) == 500
        assert (await store.stream_info("s")).first_sequence == len(first)
