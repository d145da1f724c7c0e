"""consumer_group on a store shared by several hosts: two mode instances (two hosts) agree
through the store's leases (here the memory store's, the EventStore default)."""

from __future__ import annotations

import asyncio

import msgspec

from svrnty_events.config import StreamConfig, SubscriptionConfig
from svrnty_events.events import record
from svrnty_events.modes import ConsumerGroup, ConsumerGroupOptions, Leases
from svrnty_events.testing.conformance import ConformanceTick
from svrnty_events_memory.store import MemoryStore

PARTITIONS = 8


def host_mode(visibility_timeout: float = 30.0, interval: float = 0.05) -> ConsumerGroup:
    config = SubscriptionConfig(name="sub", stream="s", mode="consumer_group",
                                visibility_timeout=visibility_timeout)
    mode = ConsumerGroup(config, ConsumerGroupOptions(sync_interval=interval))
    mode.stream = StreamConfig(name="s", partitions=PARTITIONS)
    mode.shared_store = True
    return mode


def event_in(mode: ConsumerGroup, partition: int):
    """An event whose workflow hashes to ``partition``."""
    for i in range(10_000):
        if mode.partition_of(f"wf-{i}") == partition:
            event = record(ConformanceTick(n=i), stream="s", correlation_id=f"wf-{i}")
            return msgspec.structs.replace(event, partition=partition)  # as a store records it
    raise AssertionError("no workflow for the partition")


def takers(modes: dict[str, ConsumerGroup], partition: int) -> list[str]:
    """Consumers (of any host) that would claim ``partition`` now."""
    return [c for c, m in modes.items() if partition in m.assignment(c).partitions]


async def test_partitions_split_between_hosts_and_move_when_free():
    leases = Leases(MemoryStore(), "sub", "")
    a, b = host_mode(), host_mode()
    a.join("a1")
    assert await a.sync(leases) is True  # alone: a1 takes every partition
    everyone = {"a1": a, "b1": b}
    assert all(takers(everyone, p) == ["a1"] for p in range(PARTITIONS))
    b.join("b1")
    await b.sync(leases)
    # b1 knows a1 now, but a1 still holds every lease: b1 takes nothing yet
    assert all(takers(everyone, p) in (["a1"], []) for p in range(PARTITIONS))
    # a partition that a claim of a1 is reading stays put until that claim ends (it may still
    # hand events of it over)
    moving = next(p for p in range(PARTITIONS) if b.owner_of(p) == "b1")
    assert moving in a.assignment("a1").partitions
    a.claim_started("a1", [moving])
    await a.sync(leases)
    assert a._leased[moving] == "a1"
    a.claim_ended("a1", [moving])
    await a.sync(leases)  # a1 sees b1 and gives up b1's partitions (it holds none of them)
    assert await b.sync(leases) is True
    owners = {p: takers(everyone, p) for p in range(PARTITIONS)}
    assert all(len(t) == 1 for t in owners.values()), owners  # exactly one taker each
    assert {t[0] for t in owners.values()} == {"a1", "b1"}
    assert all(owners[p] == [a.owner_of(p)] and a.owner_of(p) == b.owner_of(p)
               for p in range(PARTITIONS))  # both hosts agree on the owners


async def test_a_partition_moves_only_once_its_holder_settled():
    leases = Leases(MemoryStore(), "sub", "")
    a, b = host_mode(), host_mode()
    a.join("a1")
    await a.sync(leases)
    b.join("b1")
    await b.sync(leases)
    moving = next(p for p in range(PARTITIONS) if b.owner_of(p) == "b1")
    event = event_in(a, moving)
    a.delivered("a1", [event])  # a1 still holds an event of a partition that goes to b1
    await a.sync(leases)
    await b.sync(leases)
    everyone = {"a1": a, "b1": b}
    assert takers(everyone, moving) == []  # a1 no longer takes it, b1 may not yet
    a.settled("a1", [event])
    await a.sync(leases)
    await b.sync(leases)
    assert takers(everyone, moving) == ["b1"]


async def test_a_host_that_leaves_hands_over_at_once():
    leases = Leases(MemoryStore(), "sub", "")
    a, b = host_mode(), host_mode()
    a.join("a1")
    b.join("b1")
    for _ in range(3):
        await a.sync(leases)
        await b.sync(leases)
    everyone = {"a1": a, "b1": b}
    assert any(takers(everyone, p) == ["a1"] for p in range(PARTITIONS))  # a1 was busy
    a.leave("a1")
    await a.sync(leases)  # the last sync of a host gives up its memberships and leases
    assert not a.lingering
    assert await b.sync(leases) is True
    assert all(takers({"a1": a, "b1": b}, p) == ["b1"] for p in range(PARTITIONS))


async def test_a_dead_host_leases_expire_after_the_visibility_timeout():
    leases = Leases(MemoryStore(), "sub", "")
    a, b = host_mode(visibility_timeout=0.3), host_mode(visibility_timeout=0.3)
    a.join("a1")
    b.join("b1")
    for _ in range(3):
        await a.sync(leases)
        await b.sync(leases)
    theirs = [p for p in range(PARTITIONS) if a.owner_of(p) == "a1"]
    assert theirs
    # host a stops syncing (it died): its membership lapses first, its partitions only once
    # its leases expire, when its in-flight events have come back too
    await asyncio.sleep(0.2)
    await b.sync(leases)
    assert all(b.owner_of(p) == "b1" for p in theirs)
    assert not set(theirs) & set(b.assignment("b1").partitions)
    await asyncio.sleep(0.3)
    await b.sync(leases)
    assert list(b.assignment("b1").partitions) == list(range(PARTITIONS))


async def test_a_host_that_cannot_renew_stops_taking_events():
    leases = Leases(MemoryStore(), "sub", "")
    a = host_mode(visibility_timeout=0.1, interval=0.05)
    a.join("a1")
    await a.sync(leases)
    assert 0 in a.assignment("a1").partitions
    await asyncio.sleep(0.2)  # no sync since: its leases may have passed to another host
    assert list(a.assignment("a1").partitions) == []
    # the late sync renews them, and says so: the consumers that stopped must be woken
    assert await a.sync(leases) is True
    assert 0 in a.assignment("a1").partitions
