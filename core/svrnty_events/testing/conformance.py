"""The store conformance suite, in two layers (as eventsourcing's recorder tests): the store
primitives (:class:`StorePrimitives`: append, read, claim with filters and partitions, ack,
nack, release, dead letters, receipts, leases), then every delivery semantic run through the
engine on that store (:class:`EngineSemantics`). :class:`StoreConformance` is both: subclass it
and override the ``event_store_config`` fixture (see the package docstring)."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from ..config import DeliverySemantics, StreamType
from ..errors import ConcurrencyError, UnknownDeliveryError
from ..events import Event, RecordedEvent, partition_of, record, utcnow
from ..host import EventStreaming
from ..hookspecs import hookimpl
from ..modes import Assignment, Mode
from ..store import ClaimFilter, partition_group
from ..subscriptions import Delivery
from ..subscriptions.consumer import ACK_FLUSH_INTERVAL
from .helpers import collect, live_deliveries, within
from .schedules import ScheduleConformance


class ConformanceTick(Event):
    n: int


class ConformanceOther(Event):
    n: int


class ConformanceDone(Event):
    n: int


def ticks(stream: str, count: int, *, correlation_id: str = "wf-1", start: int = 0,
          type: type = ConformanceTick) -> list[RecordedEvent]:
    return [record(type(n=i), stream=stream, correlation_id=correlation_id)
            for i in range(start, start + count)]


class LastConsumerMode(Mode):
    """A third-party mode for the suite: every event goes to the consumer that joined last (it
    is given every partition; the others none)."""

    shared = True
    partitioned = True

    def __init__(self, subscription: Any, options: Any = None) -> None:
        super().__init__(subscription, options)
        self.members: list[str] = []

    def join(self, consumer_id: str) -> None:
        self.members.append(consumer_id)

    def leave(self, consumer_id: str) -> None:
        self.members.remove(consumer_id)

    def assignment(self, consumer_id: str) -> Assignment:
        if self.members and self.members[-1] == consumer_id:
            return Assignment(range(self.stream.partitions))
        return Assignment(())


class LastConsumerPlugin:
    @hookimpl
    def register_subscription_modes(self, register: Callable[..., None]) -> None:
        register("last_consumer", LastConsumerMode)


@pytest.mark.asyncio
class _Kit:
    """What both layers share: ``make`` builds an EventStreaming on the store under test."""

    #: set True in a store whose release cannot give back the attempt of a prefetched event
    #: that was never handed over (its delivery counter only grows)
    release_counts_unseen = False

    @pytest.fixture
    def make(self, event_store_config: tuple[str, dict]) -> Callable[..., EventStreaming]:
        name, options = event_store_config

        def make(*, stream_type: StreamType = StreamType.PERSISTENT,
                 semantics: DeliverySemantics = DeliverySemantics.AT_LEAST_ONCE,
                 subscriptions: dict[str, dict[str, Any]] | None = None,
                 plugins: tuple = (), **stream_options: Any) -> EventStreaming:
            streaming = EventStreaming(store=name, store_options=dict(options), plugins=plugins)
            streaming.add_stream("s", type=stream_type, delivery_semantics=semantics,
                                 **stream_options)
            for sub, opts in (subscriptions or {"sub": {}}).items():
                streaming.add_subscription("s", sub, **opts)
            return streaming

        return make



class StorePrimitives(_Kit):
    """Layer 1: the store's primitives, called directly."""

    async def test_append_assigns_sequences_and_read_replays(self, make):
        async with make().run() as host:
            out = await host.publish("s", ticks("s", 5), external=False)
            assert [e.sequence for e in out] == [0, 1, 2, 3, 4]
            more = await host.publish("s", ticks("s", 2, correlation_id="wf-2", start=5,
                                                 type=ConformanceOther), external=False)
            assert [e.sequence for e in more] == [5, 6]
            events = await host.read("s", from_sequence=3)
            assert [e.sequence for e in events] == [3, 4, 5, 6]
            assert [e.decode().n for e in events] == [3, 4, 5, 6]
            assert len(await host.read("s", from_sequence=0, limit=2)) == 2
            assert [e.sequence for e in await host.read("s", correlation_id="wf-2")] == [5, 6]
            assert [e.sequence for e in await host.read("s", event_types=["ConformanceOther"])
                    ] == [5, 6]
            assert await host.read("s", since=utcnow() + timedelta(seconds=60)) == []
            info = await host.stream_info("s")
            assert (info.length, info.first_sequence, info.next_sequence) == (7, 0, 7)

    async def test_leases_are_taken_renewed_released_and_expire(self, make):
        async with make().run() as host:
            store = host.store
            table = await store.leases("sub", "", acquire={"p:1": ("a", 30), "m:a": ("a", 0.3)})
            assert table == {"p:1": "a", "m:a": "a"}
            # a lease held by another cannot be taken; a free one can
            table = await store.leases("sub", "", acquire={"p:1": ("b", 30), "p:2": ("b", 30)})
            assert table == {"p:1": "a", "p:2": "b", "m:a": "a"}
            # only its holder can release a lease
            assert (await store.leases("sub", "", release={"p:1": "b"}))["p:1"] == "a"
            # a release and a take in one step: the lease changes hands at once
            table = await store.leases("sub", "", release={"p:1": "a"},
                                       acquire={"p:1": ("b", 30)})
            assert table["p:1"] == "b"
            # renewal by the holder: m:b outlives m:a, which is not renewed and expires
            await store.leases("sub", "", acquire={"m:b": ("b", 0.3)})
            await asyncio.sleep(0.2)
            await store.leases("sub", "", acquire={"m:b": ("b", 0.3)})
            await asyncio.sleep(0.2)
            table = await store.leases("sub", "")
            assert table == {"p:1": "b", "p:2": "b", "m:b": "b"}
            # an expired lease is free for anyone
            table = await store.leases("sub", "", acquire={"m:a": ("c", 30)})
            assert table["m:a"] == "c"
            # each group has leases of its own
            assert await store.leases("sub", "other") == {}

    async def test_append_is_idempotent_by_event_id(self, make):
        async with make().run() as host:
            batch = ticks("s", 3)
            first = await host.publish("s", batch, external=False)
            again = await host.publish("s", [batch[1], *ticks("s", 1, start=9)], external=False)
            assert again[0].sequence == first[1].sequence
            assert again[1].sequence == 3
            assert (await host.stream_info("s")).length == 4

    async def test_append_checks_expected_version(self, make):
        async with make().run() as host:
            store = host.store
            await store.append("s", ticks("s", 2, correlation_id="wf"), expected_version=0)
            assert await store.correlation_version("s", "wf") == 2
            with pytest.raises(ConcurrencyError) as err:
                await store.append("s", ticks("s", 1, correlation_id="wf"), expected_version=1)
            assert (err.value.expected, err.value.actual) == (1, 2)
            assert (await host.stream_info("s")).length == 2  # nothing appended

    async def test_claim_ack_and_unknown_ack(self, make):
        async with make().run() as host:
            store = host.store
            await store.ensure_group("sub", "g")
            await host.publish("s", ticks("s", 3), external=False)
            result = await store.claim("sub", "g", "c1", max_count=2, visibility_timeout=30)
            assert [c.event.sequence for c in result.claimed] == [0, 1]
            assert [c.attempt for c in result.claimed] == [1, 1]
            missing = await store.ack("sub", "g", "c1", [result.claimed[0].event.id, "nope"])
            assert missing == ["nope"]
            # another consumer cannot ack what c1 holds
            assert await store.ack("sub", "g", "c2", [result.claimed[1].event.id]) == [
                result.claimed[1].event.id]
            rest = await store.claim("sub", "g", "c2", max_count=10, visibility_timeout=30)
            assert [c.event.sequence for c in rest.claimed] == [2]

    async def test_nack_delay_and_visibility_timeout_redeliver(self, make):
        async with make().run() as host:
            store = host.store
            await store.ensure_group("sub", "g")
            await host.publish("s", ticks("s", 2), external=False)
            got = (await store.claim("sub", "g", "c", max_count=2,
                                     visibility_timeout=0.3)).claimed
            assert await store.nack("sub", "g", "c", got[0].event.id, delay=0.2, reason="later")
            now = await store.claim("sub", "g", "c", max_count=5, visibility_timeout=30)
            assert now.claimed == [] and now.next_due is not None
            await asyncio.sleep(max(now.next_due - time.time(), 0) + 0.05)
            again = await store.claim("sub", "g", "c", max_count=5, visibility_timeout=30)
            assert [(c.event.sequence, c.attempt, c.last_reason) for c in again.claimed] == [
                (0, 2, "later")]
            await asyncio.sleep(0.35)  # got[1] was claimed with a 0.3 s visibility timeout
            expired = await store.claim("sub", "g", "c2", max_count=5, visibility_timeout=30)
            assert [(c.event.sequence, c.attempt) for c in expired.claimed] == [(1, 2)]

    async def test_release_returns_held_events_at_once(self, make):
        async with make().run() as host:
            store = host.store
            await store.ensure_group("sub", "g")
            await host.publish("s", ticks("s", 3), external=False)
            await store.claim("sub", "g", "c1", max_count=3, visibility_timeout=60)
            assert await store.release("sub", "g", "c1") == 3
            got = await store.claim("sub", "g", "c2", max_count=3, visibility_timeout=60)
            assert [(c.event.sequence, c.attempt) for c in got.claimed] == [(0, 2), (1, 2),
                                                                             (2, 2)]

    async def test_claim_filters_settle_what_does_not_belong_to_the_group(self, make):
        async with make().run() as host:
            store = host.store
            await store.ensure_group("sub", "types")
            await store.ensure_group("sub", "wf")
            await host.publish("s", [*ticks("s", 2), *ticks("s", 2, type=ConformanceOther),
                                     *ticks("s", 2, correlation_id="wf-2", start=2)],
                               external=False)
            only_ticks = ClaimFilter(event_types=frozenset({"ConformanceTick"}))
            got = await store.claim("sub", "types", "a", max_count=10, visibility_timeout=60,
                                    filter=only_ticks)
            assert [(c.event.type, c.event.decode().n) for c in got.claimed] == [
                ("ConformanceTick", 0), ("ConformanceTick", 1), ("ConformanceTick", 2),
                ("ConformanceTick", 3)]
            wf2 = ClaimFilter(correlation_id="wf-2")
            got = await store.claim("sub", "wf", "b", max_count=1, visibility_timeout=60,
                                    filter=wf2)
            assert [c.event.decode().n for c in got.claimed] == [2]
            got = await store.claim("sub", "wf", "b", max_count=10, visibility_timeout=60,
                                    filter=wf2)
            assert [c.event.decode().n for c in got.claimed] == [3]
            # what the filters passed is settled for those groups: nothing comes back
            for group, f in (("types", only_ticks), ("wf", wf2)):
                assert await store.release("sub", group, "a") + \
                    await store.release("sub", group, "b") == (4 if group == "types" else 2)
            again = await store.claim("sub", "types", "c", max_count=10, visibility_timeout=60,
                                      filter=only_ticks)
            assert len(again.claimed) == 4  # the released ticks, and nothing else
            await host.publish("s", ticks("s", 1, type=ConformanceOther, start=9),
                               external=False)
            assert (await store.claim("sub", "types", "c", max_count=10, visibility_timeout=60,
                                      filter=only_ticks)).claimed == []

    async def test_partitions_are_fixed_on_append_and_claimed_apart(self, make):
        async with make(partitions=4).run() as host:
            store = host.store
            workflows = [f"wf-{i}" for i in range(12)]
            for n in range(3):
                await host.publish("s", [record(ConformanceTick(n=n), stream="s",
                                                correlation_id=wf) for wf in workflows],
                                   external=False)
            events = await store.read("s")
            assert len(events) == 36
            assert all(e.partition == partition_of(e.correlation_id, 4) for e in events)
            assert {e.partition for e in events} == {0, 1, 2, 3}
            for p in range(4):
                group = partition_group(p)
                await store.ensure_group("sub", group)
                got: list[RecordedEvent] = []
                while True:
                    batch = await store.claim("sub", group, "c", max_count=5,
                                              visibility_timeout=60,
                                              filter=ClaimFilter(partition=p))
                    if not batch.claimed:
                        break
                    got += [c.event for c in batch.claimed]
                expected = [e for e in events if e.partition == p]
                assert [e.id for e in got] == [e.id for e in expected], p
                assert all(c.partition == p for c in got)

    async def test_partition_count_of_a_stream_with_events_cannot_change(self, make):
        from ..config import StreamConfig
        from ..errors import ConfigError

        async with make(partitions=2).run() as host:
            store = host.store
            await store.create_stream(StreamConfig(name="empty", partitions=2))
            await store.create_stream(StreamConfig(name="empty", partitions=8))  # empty: fine
            await host.publish("s", ticks("s", 1), external=False)
            with pytest.raises(ConfigError, match=r"streams\.s\.partitions: .*2 partition"):
                await store.create_stream(StreamConfig(name="s", type=StreamType.PERSISTENT,
                                                       partitions=3))

    async def test_release_of_some_events_unseen_gives_their_attempt_back(self, make):
        async with make().run() as host:
            store = host.store
            await store.ensure_group("sub", "g")
            await host.publish("s", ticks("s", 3), external=False)
            got = await store.claim("sub", "g", "c1", max_count=3, visibility_timeout=60)
            ids = [c.event.id for c in got.claimed]
            assert await store.release("sub", "g", "c1", event_ids=ids[1:], unseen=ids[1:]) == 2
            assert await store.release("sub", "g", "other", event_ids=ids[:1]) == 0
            again = await store.claim("sub", "g", "c2", max_count=3, visibility_timeout=60)
            assert [(c.event.id, c.attempt) for c in again.claimed] == [(ids[1], 1),
                                                                         (ids[2], 1)]
            assert await store.ack("sub", "g", "c1", ids[:1]) == []  # c1 still held the first

    async def test_dead_letters_list_replay_purge(self, make):
        async with make().run() as host:
            store = host.store
            await store.ensure_group("sub", "g")
            await host.publish("s", ticks("s", 2), external=False)
            got = (await store.claim("sub", "g", "c", max_count=2, visibility_timeout=60)).claimed
            for c in got:
                assert await store.dead_letter("sub", "g", "c", c.event.id, reason="poison",
                                               attempts=3, error="ValueError: bad")
            letters = await host.dead_letters("sub")
            assert [(d.event.sequence, d.reason, d.attempts, d.error) for d in letters] == [
                (0, "poison", 3, "ValueError: bad"), (1, "poison", 3, "ValueError: bad")]
            assert await host.replay_dead_letters("sub", [got[0].event.id]) == 1
            again = (await store.claim("sub", "g", "c", max_count=5, visibility_timeout=60)
                     ).claimed
            assert [(c.event.sequence, c.attempt) for c in again] == [(0, 1)]
            assert await host.purge_dead_letters("sub") == 1
            assert await host.dead_letters("sub") == []

    async def test_group_lags_count_what_each_group_has_not_settled(self, make):
        async with make().run() as host:
            store = host.store
            try:
                await store.group_lags("sub")
            except NotImplementedError:
                pytest.skip(f"{type(store).__name__} does not report group lags")
            await store.ensure_group("sub", "g")
            await store.ensure_group("sub", "idle")
            await host.publish("s", ticks("s", 10), external=False)
            lags = await store.group_lags("sub")
            assert lags["g"] == 10 and lags["idle"] == 10
            got = (await store.claim("sub", "g", "c", max_count=6, visibility_timeout=60)).claimed
            assert len(got) == 6
            assert (await store.group_lags("sub"))["g"] == 10  # in flight: not settled
            await store.ack("sub", "g", "c", [c.event.id for c in got[:3]])
            await store.nack("sub", "g", "c", got[3].event.id, delay=30.0)
            assert await store.dead_letter("sub", "g", "c", got[4].event.id, reason="poison",
                                           attempts=1)
            # 3 acked and 1 dead-lettered are settled; the nacked (delayed), the one still in
            # flight and the 4 never claimed are not
            lags = await store.group_lags("sub")
            assert lags["g"] == 6 and lags["idle"] == 10
            await host.publish("s", ticks("s", 2, start=10), external=False)
            assert (await store.group_lags("sub"))["g"] == 8

    async def test_receipts_and_processed_marks(self, make):
        async with make().run() as host:
            store = host.store
            await store.record_receipts("sub", "c1", ["e1", "e2"], read=False)
            await store.record_receipts("sub", "c1", ["e1"], read=True)
            receipts = {r.event_id: r for r in await host.receipts("sub", consumer_id="c1")}
            assert set(receipts) == {"e1", "e2"}
            assert receipts["e1"].read_at is not None and receipts["e2"].read_at is None
            assert [r.consumer_id for r in await host.receipts("sub", event_id="e2")] == ["c1"]
            assert await store.mark_processed("sub", "e1") is True
            assert await store.mark_processed("sub", "e1") is False
            assert await store.is_processed("sub", "e1") and not await store.is_processed(
                "sub", "e2")

    async def test_wait_for_change_is_woken_by_append(self, make):
        async with make().run() as host:
            store = host.store
            await store.ensure_group("sub", "g")
            result = await store.claim("sub", "g", "c", max_count=1, visibility_timeout=60)
            assert result.claimed == []
            waiter = asyncio.ensure_future(
                store.wait_for_change("sub", "g", result.version, 30.0))
            await asyncio.sleep(0.05)
            assert not waiter.done()
            started = time.monotonic()
            await host.publish("s", ticks("s", 1), external=False)
            await within(waiter, 5)
            assert time.monotonic() - started < 5  # woken, not timed out
            # a stale version returns at once
            await within(store.wait_for_change("sub", "g", result.version, 30.0), 1)

    async def test_new_group_starts_at_oldest_retained_or_given_start(self, make):
        async with make().run() as host:
            store = host.store
            await host.publish("s", ticks("s", 4), external=False)
            await store.ensure_group("sub", "from-start")
            await store.ensure_group("sub", "from-2", start=2)
            a = await store.claim("sub", "from-start", "c", max_count=10, visibility_timeout=9)
            b = await store.claim("sub", "from-2", "c", max_count=10, visibility_timeout=9)
            assert [c.event.sequence for c in a.claimed] == [0, 1, 2, 3]
            assert [c.event.sequence for c in b.claimed] == [2, 3]

    async def test_retention_by_count(self, make):
        async with make(retention_max_count=10).run() as host:
            await host.publish("s", ticks("s", 25), external=False)
            info = await host.stream_info("s")
            assert info.length == 10 and info.first_sequence == 15
            assert [e.sequence for e in await host.read("s")][0] == 15

    async def test_retention_by_age(self, make):
        async with make(retention_max_age=0.2).run() as host:
            await host.publish("s", ticks("s", 5), external=False)
            await asyncio.sleep(0.3)
            await host.publish("s", ticks("s", 2, start=5), external=False)
            assert [e.decode().n for e in await host.read("s")] == [5, 6]

    async def test_ephemeral_stream_drops_what_every_subscription_acked(self, make):
        streaming = make(stream_type=StreamType.EPHEMERAL,
                         subscriptions={"a": {"mode": "exclusive"}, "b": {"mode": "exclusive"}})
        async with streaming.run() as host:
            await host.publish("s", ticks("s", 3000), external=False)
            a = await host.open_consumer("a", "ca")
            await collect(a, 3000)
            assert (await host.stream_info("s")).length == 3000  # b has not acked yet
            b = await host.open_consumer("b", "cb")
            await collect(b, 3000)
            await host.publish("s", ticks("s", 1100, start=3000), external=False)
            assert (await host.stream_info("s")).first_sequence >= 3000



class EngineSemantics(_Kit):
    """Layer 2: every delivery semantic, through the engine, on the store under test."""

    # --- modes --------------------------------------------------------------------------------

    async def test_broadcast_every_consumer_gets_every_event(self, make):
        async with make(subscriptions={"sub": {"mode": "broadcast"}}).run() as host:
            consumers = [await host.open_consumer("sub", f"c{i}") for i in range(3)]
            await host.publish("s", ticks("s", 50), external=False)
            for c in consumers:
                got = await collect(c, 50)
                assert [d.event.n for d in got] == list(range(50))

    async def test_exclusive_four_consumers_ten_thousand_events_once_each(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "window": 50}})
        async with streaming.run() as host:
            consumers = [await host.open_consumer("sub", f"c{i}") for i in range(4)]
            acked: Counter[int] = Counter()
            per_consumer: Counter[str] = Counter()
            total = 10_000
            done = asyncio.Event()

            async def run(consumer):
                while not done.is_set():
                    batch = await consumer.fetch(timeout=0.2)
                    for d in batch:
                        acked[d.event.n] += 1
                        per_consumer[consumer.consumer_id] += 1
                    if batch:
                        await consumer.ack([d.id for d in batch])
                        await asyncio.sleep(0)
                    if sum(acked.values()) >= total:
                        done.set()

            tasks = [asyncio.ensure_future(run(c)) for c in consumers]
            for i in range(0, total, 500):
                await host.publish("s", ticks("s", 500, start=i, correlation_id=f"wf-{i}"),
                                   external=False)
                await asyncio.sleep(0)
            await within(done.wait(), 30)
            await within(asyncio.gather(*tasks), 5)
            assert sorted(acked) == list(range(total))
            assert set(acked.values()) == {1}
            assert len(per_consumer) == 4  # the work was shared

    async def test_consumer_group_keeps_workflow_order_across_rebalance(self, make):
        streaming = make(subscriptions={"sub": {"mode": "consumer_group", "window": 5}},
                         partitions=16)
        async with streaming.run() as host:
            workflows = [f"wf-{i}" for i in range(20)]
            per_workflow = 30
            seen: dict[str, list[int]] = defaultdict(list)
            owner: dict[str, set[str]] = defaultdict(set)
            consumers = {f"c{i}": await host.open_consumer("sub", f"c{i}") for i in range(3)}
            total = len(workflows) * per_workflow
            acked = 0
            for n in range(per_workflow):
                batch = [record(ConformanceTick(n=n), stream="s", correlation_id=wf)
                         for wf in workflows]
                await host.publish("s", batch, external=False)
            left = False
            deadline = time.monotonic() + 30
            while acked < total and time.monotonic() < deadline:
                for cid, consumer in list(consumers.items()):
                    batch = await consumer.fetch(timeout=0.01)
                    for d in batch:
                        seen[d.correlation_id].append(d.event.n)
                        owner[d.correlation_id].add(cid)
                    if not batch:
                        continue
                    if not left and acked > total // 3 and cid == "c0":
                        # c0 leaves mid-stream holding un-acked events
                        await consumer.close("left")
                        del consumers[cid]
                        left = True
                        for d in batch:  # its deliveries were never acked
                            seen[d.correlation_id].remove(d.event.n)
                        continue
                    await consumer.ack([d.id for d in batch])
                    acked += len(batch)
            assert left and acked == total
            for wf in workflows:
                assert seen[wf] == list(range(per_workflow)), wf
            assert any(len(o) > 1 for o in owner.values())  # some partition moved

    async def test_consumer_group_redelivers_a_stalled_holders_event_to_the_new_owner(self, make):
        streaming = make(subscriptions={"sub": {"mode": "consumer_group", "window": 1,
                                                "visibility_timeout": 0.2}}, partitions=64)
        async with streaming.run() as host:
            mode = host.engine.runtime("sub").mode
            stalled = await host.open_consumer("sub", "c0")
            await host.publish("s", ticks("s", 1, correlation_id="w"), external=False)
            [held] = await collect(stalled, 1, ack=False)  # and never acks
            others = []
            while mode.owner_of(mode.partition_of("w")) == "c0":
                others.append(await host.open_consumer("sub", f"c{len(others) + 1}"))
            owner = next(c for c in others
                         if c.consumer_id == mode.owner_of(mode.partition_of("w")))
            [again] = await collect(owner, 1, timeout=5)
            assert (again.id, again.attempt) == (held.id, 2)

    async def test_read_receipt_records_delivered_and_read(self, make):
        async with make(subscriptions={"sub": {"mode": "read_receipt"}}).run() as host:
            c1 = await host.open_consumer("sub", "c1")
            c2 = await host.open_consumer("sub", "c2")
            [event] = await host.publish("s", ticks("s", 1), external=False)
            [d1] = await collect(c1, 1, ack=False)
            await collect(c2, 1, ack=True)
            receipts = {r.consumer_id: r for r in await host.receipts("sub", event_id=event.id)}
            assert set(receipts) == {"c1", "c2"}
            assert receipts["c1"].read_at is None and receipts["c2"].read_at is not None
            await d1.mark_read()
            [r] = await host.receipts("sub", event_id=event.id, consumer_id="c1")
            assert r.read_at is not None

    async def test_third_party_mode_through_the_plugin_manager(self, make):
        streaming = make(subscriptions={"sub": {"mode": "last_consumer"}},
                         plugins=(LastConsumerPlugin(),))
        async with streaming.run() as host:
            first = await host.open_consumer("sub", "first")
            last = await host.open_consumer("sub", "last")
            await host.publish("s", ticks("s", 5), external=False)
            got = await collect(last, 5)
            assert [d.event.n for d in got] == [0, 1, 2, 3, 4]
            assert await first.fetch(timeout=0.1) == []

    # --- delivery semantics -----------------------------------------------------------------------

    async def test_at_most_once_never_redelivers(self, make):
        streaming = make(semantics=DeliverySemantics.AT_MOST_ONCE,
                         subscriptions={"sub": {"mode": "exclusive", "visibility_timeout": 0.1}})
        async with streaming.run() as host:
            c = await host.open_consumer("sub", "c")
            await host.publish("s", ticks("s", 3), external=False)
            got = await collect(c, 3, ack=False)
            assert [d.attempt for d in got] == [1, 1, 1]
            await c.ack([got[0].id])  # done when handed over: acking changes nothing
            await got[1].nack(delay=0.0)  # nor does a nack bring it back
            await asyncio.sleep(0.2)
            await c.close()
            other = await host.open_consumer("sub", "other")
            assert await other.fetch(timeout=0.3) == []

    async def test_visibility_timeout_redelivers_with_attempt(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive",
                                                "visibility_timeout": 0.2}})
        async with streaming.run() as host:
            c = await host.open_consumer("sub", "c")
            await host.publish("s", ticks("s", 1), external=False)
            [first] = await collect(c, 1, ack=False)
            started = time.monotonic()
            [again] = await collect(c, 1, timeout=5)
            assert again.id == first.id and (first.attempt, again.attempt) == (1, 2)
            assert time.monotonic() - started >= 0.15

    async def test_nack_redelivers_after_delay_with_backoff(self, make):
        streaming = make(subscriptions={"sub": {
            "mode": "exclusive", "redelivery_delay": 0.05, "backoff": "exponential",
            "backoff_multiplier": 2.0, "max_delivery_attempts": 0}})
        async with streaming.run() as host:
            c = await host.open_consumer("sub", "c")
            await host.publish("s", ticks("s", 1), external=False)
            times = []
            attempts = []
            for _ in range(4):
                [d] = await collect(c, 1, ack=False)
                times.append(time.monotonic())
                attempts.append(d.attempt)
                await c.nack(d.id, reason="not yet")
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert attempts == [1, 2, 3, 4]
            # 0.05, 0.1, 0.2: each gap at least its backoff step (no redelivery storm)
            for gap, step in zip(gaps, (0.05, 0.1, 0.2)):
                assert gap >= step * 0.9, gaps
            [d] = await collect(c, 1, ack=False)
            await c.nack(d.id, delay=0.0, reason="explicit")
            [d2] = await collect(c, 1, timeout=2)
            assert d2.attempt == 6

    async def test_max_attempts_dead_letters_with_reason_and_replay(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "max_delivery_attempts": 3,
                                                "redelivery_delay": 0.01}})
        async with streaming.run() as host:
            c = await host.open_consumer("sub", "c")
            [event] = await host.publish("s", ticks("s", 1), external=False)
            for attempt in (1, 2, 3):
                [d] = await collect(c, 1, ack=False)
                assert d.attempt == attempt
                await d.nack(reason="handler failed", error=f"ValueError: try {attempt}")
            assert await c.fetch(timeout=0.2) == []
            [letter] = await host.dead_letters("sub")
            assert letter.event.id == event.id and letter.attempts == 3
            assert letter.reason == "handler failed" and letter.error == "ValueError: try 3"
            assert await host.replay_dead_letters("sub") == 1
            [d] = await collect(c, 1)
            assert d.id == event.id and d.attempt == 1
            assert await host.dead_letters("sub") == []

    async def test_immediate_dead_letter_of_a_permanent_failure(self, make):
        async with make(subscriptions={"sub": {"mode": "exclusive"}}).run() as host:
            c = await host.open_consumer("sub", "c")
            await host.publish("s", ticks("s", 2), external=False)
            first, second = await collect(c, 2, ack=False)
            await first.dead_letter("rejected: 422", error="body excerpt")
            await second.ack()
            [letter] = await host.dead_letters("sub")
            assert (letter.event.id, letter.attempts, letter.reason, letter.error) == (
                first.id, 1, "rejected: 422", "body excerpt")
            with pytest.raises(UnknownDeliveryError):
                await first.ack()

    async def test_visibility_timeouts_dead_letter_after_max_attempts(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "max_delivery_attempts": 2,
                                                "visibility_timeout": 0.1}})
        async with streaming.run() as host:
            c = await host.open_consumer("sub", "c")
            await host.publish("s", ticks("s", 1), external=False)
            await collect(c, 1, ack=False)
            await collect(c, 1, ack=False)  # redelivered after the timeout
            assert await c.fetch(timeout=0.4) == []
            [letter] = await host.dead_letters("sub")
            assert letter.attempts == 2 and "visibility timeout" in letter.reason

    async def test_heartbeat_loss_releases_at_once(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "visibility_timeout": 60}})
        async with streaming.run() as host:
            silent = await host.open_consumer("sub", "silent", heartbeat_timeout=0.2)
            await host.publish("s", ticks("s", 3), external=False)
            await collect(silent, 3, ack=False)
            other = await host.open_consumer("sub", "other")
            started = time.monotonic()
            got = await collect(other, 3, timeout=5)
            assert time.monotonic() - started < 5  # long before the 60 s visibility timeout
            assert [d.attempt for d in got] == [2, 2, 2]
            assert silent.closed and silent.close_reason == "heartbeat expired"

    async def test_cancelled_and_abandoned_iterators_release_at_once(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "visibility_timeout": 60}})
        async with streaming.run() as host:
            await host.publish("s", ticks("s", 2), external=False)
            got_one = asyncio.Event()

            async def consume_and_hang():
                async for d in host.subscribe("sub", "hangs", window=1):
                    got_one.set()
                    await asyncio.sleep(3600)

            task = asyncio.ensure_future(consume_and_hang())
            await within(got_one.wait())
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # abandoned without close: garbage collected -> released
            sub = host.subscribe("sub", "abandons", window=1, auto_ack=False)
            d = await within(sub.__anext__())
            assert (d.event.n, d.attempt) == (0, 2)  # released by the cancelled consumer
            del sub, d
            gc.collect()
            async with host.subscribe("sub", "next", auto_ack=False) as deliveries:
                seen = [await within(deliveries.__anext__()) for _ in range(2)]
            # released again by the abandoned one, long before the 60 s visibility timeout
            assert sorted((x.event.n, x.attempt) for x in seen) == [(0, 3), (1, 1)]

    async def test_auto_ack_on_next_and_nack_when_body_raises(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "redelivery_delay": 0.0,
                                                "max_delivery_attempts": 0}})
        async with streaming.run() as host:
            await host.publish("s", ticks("s", 3), external=False)
            with pytest.raises(RuntimeError):
                async with host.subscribe("sub", "c") as deliveries:
                    async for d in deliveries:
                        if d.event.n == 1:
                            raise RuntimeError("boom")
            async with host.subscribe("sub", "c2") as deliveries:
                d = await within(deliveries.__anext__())
            assert (d.event.n, d.attempt) == (1, 2)  # 0 was auto-acked, 1 was nacked
            async with host.subscribe("sub", "c3") as deliveries:
                d = await within(deliveries.__anext__())
            assert d.event.n == 2  # leaving the block acked 1

    async def test_batches_with_automatic_acks_process_every_event_once_in_order(self, make):
        """``async for batch in deliveries.batches(max_events=7)``: two consumers of an exclusive
        subscription (one takes over when the other leaves mid-stream) while a producer
        appends: every event processed once, each in stream order, no attempt but the first,
        nothing left to claim, no dead letter."""
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "window": 20}})
        total = 600
        async with streaming.run() as host:
            processed: Counter[int] = Counter()
            order: list[int] = []
            attempts: Counter[int] = Counter()

            async def produce() -> None:
                for i in range(0, total, 50):
                    await host.publish("s", ticks("s", 50, start=i), external=False)
                    await asyncio.sleep(0)

            async def consume(cid: str, leave_after: int | None) -> None:
                async with host.subscribe("sub", cid) as deliveries:
                    async for batch in deliveries.batches(max_events=7):
                        assert 1 <= len(batch) <= 7
                        for d in batch:
                            processed[d.event.n] += 1
                            order.append(d.event.n)
                            attempts[d.attempt] += 1
                        if leave_after is not None and len(order) >= leave_after:
                            return  # leaving ``async with`` acks the last batch
                        if len(processed) == total:
                            return

            producer = asyncio.ensure_future(produce())
            await within(consume("a", leave_after=250), 60)
            await within(consume("b", leave_after=None), 60)
            await within(producer)
            assert sorted(processed) == list(range(total))
            assert [n for n, k in processed.items() if k > 1] == []
            assert order == sorted(order)
            assert attempts == Counter({1: total})
            rest = await host.open_consumer("sub", "rest")
            assert await rest.fetch(timeout=0.2) == []
            assert await host.dead_letters("sub") == []

    async def test_batches_ack_on_next_and_nack_when_body_raises(self, make):
        """A batch is acked when the loop asks for the next one; a body that raises nacks what
        of its batch was not settled by hand (an ack by hand stays)."""
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "redelivery_delay": 0.0,
                                                "max_delivery_attempts": 0}})
        async with streaming.run() as host:
            await host.publish("s", ticks("s", 5), external=False)
            seen: list[list[int]] = []
            with pytest.raises(RuntimeError):
                async with host.subscribe("sub", "c") as deliveries:
                    async for batch in deliveries.batches(max_events=2):
                        seen.append([d.event.n for d in batch])
                        if batch[0].event.n == 2:
                            await batch[0].ack()
                            raise RuntimeError("boom")
            assert seen == [[0, 1], [2, 3]]
            async with host.subscribe("sub", "c2", auto_ack=False) as deliveries:
                again = [await within(deliveries.__anext__()) for _ in range(2)]
            # 0 and 1 acked with the next batch, 2 by hand; 3 nacked, then 4 for the first time
            assert [(d.event.n, d.attempt) for d in again] == [(3, 2), (4, 1)]
            with pytest.raises(ValueError, match="max_events"):
                async with host.subscribe("sub", "c3") as deliveries:
                    async for _ in deliveries.batches(max_events=0):
                        pass

    async def test_batches_then_one_by_one_on_one_subscriber(self, make):
        """A loop over ``batches()`` left with ``break``, then ``async for d in deliveries``
        and ``next()`` on the same subscriber: the batch left behind is acked when the next
        delivery is asked for (it does not hold the window), every event comes once, in
        order, at attempt 1."""
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "window": 4}})
        async with streaming.run() as host:
            await host.publish("s", ticks("s", 12), external=False)
            seen: list[tuple[int, int]] = []
            async with host.subscribe("sub", "mixed") as deliveries:
                async for batch in deliveries.batches():
                    seen += [(d.event.n, d.attempt) for d in batch]
                    break
                async for d in deliveries:
                    seen.append((d.event.n, d.attempt))
                    if len(seen) >= 8:
                        break
                async for batch in deliveries.batches(max_events=2):
                    seen += [(d.event.n, d.attempt) for d in batch]
                    break
                while len(seen) < 12:
                    d = await within(deliveries.next(timeout=5))
                    assert d is not None, seen
                    seen.append((d.event.n, d.attempt))
            assert seen == [(n, 1) for n in range(12)]
            rest = await host.open_consumer("sub", "rest")
            assert await rest.fetch(timeout=0.2) == []  # every one was acked
            assert await host.dead_letters("sub") == []

    async def test_batches_acks_are_not_held_back_by_a_slow_body(self, make):
        """The acks of a batch reach the store within ACK_FLUSH_INTERVAL of the loop asking for
        the next batch, even when that batch's body works past the visibility timeout: another
        consumer never gets them."""
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "window": 4,
                                                "visibility_timeout": 0.5}})
        async with streaming.run() as host:
            await host.publish("s", ticks("s", 4), external=False)
            other = await host.open_consumer("sub", "other")
            other_got: list[Delivery] = []
            seen: list[list[int]] = []
            loop = asyncio.get_running_loop()
            async with host.subscribe("sub", "slow") as deliveries:
                async for batch in deliveries.batches(max_events=2):
                    seen.append([d.event.n for d in batch])
                    if len(seen) == 2:  # the first batch was acked when this one was asked for
                        until = loop.time() + 1.5
                        while loop.time() < until:
                            for d in batch:
                                await d.in_progress()
                            other_got += await other.fetch(timeout=0.15)
                        break
            assert seen == [[0, 1], [2, 3]]
            assert other_got == []
            other_got += await other.fetch(timeout=0.6)  # leaving acked the second batch
            assert other_got == []
            await other.close()

    async def test_batches_of_a_correlation_scoped_iterator_end_at_its_terminal_event(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive",
                                                "terminal_event_types": ["ConformanceDone"]}})
        async with streaming.run() as host:
            await host.publish("s", [*ticks("s", 3, correlation_id="a"),
                                     *ticks("s", 2, correlation_id="b"),
                                     *ticks("s", 1, correlation_id="a", type=ConformanceDone)],
                               external=False)
            received: list[tuple[str, str]] = []

            async def follow() -> None:
                async with host.subscribe("sub", "follower", correlation_id="a") as deliveries:
                    async for batch in deliveries.batches(max_events=2):
                        received.extend((d.correlation_id, d.type) for d in batch)

            await within(follow())  # the loop ended by itself
            assert received == [("a", "ConformanceTick")] * 3 + [("a", "ConformanceDone")]
            assert await host.dead_letters("sub") == []

    async def test_event_type_filters(self, make):
        streaming = make(subscriptions={
            "only-ticks": {"mode": "exclusive", "event_types": ["ConformanceTick"]},
            "all": {"mode": "broadcast"}})
        async with streaming.run() as host:
            await host.publish("s", [*ticks("s", 2), *ticks("s", 2, type=ConformanceOther)],
                               external=False)
            c = await host.open_consumer("only-ticks", "c")
            assert {d.type for d in await collect(c, 2)} == {"ConformanceTick"}
            assert await c.fetch(timeout=0.1) == []
            own = await host.open_consumer("all", "own", event_types=[ConformanceOther])
            assert [d.type for d in await collect(own, 2)] == ["ConformanceOther"] * 2

    async def test_terminal_event_completes_correlation_scoped_iterator(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive",
                                                "terminal_event_types": ["ConformanceDone"]}})
        async with streaming.run() as host:
            await host.publish("s", [*ticks("s", 2, correlation_id="a"),
                                     *ticks("s", 2, correlation_id="b")], external=False)
            received = []

            async def follow():
                async with host.subscribe("sub", "follower", correlation_id="a") as deliveries:
                    async for d in deliveries:
                        received.append((d.correlation_id, d.type))

            task = asyncio.ensure_future(follow())
            await asyncio.sleep(0.05)
            await host.publish("s", ticks("s", 1, correlation_id="a", type=ConformanceDone),
                               external=False)
            await within(task)  # the iterator ended by itself
            assert received == [("a", "ConformanceTick"), ("a", "ConformanceTick"),
                                ("a", "ConformanceDone")]
            # the scoped follower did not take the shared group's events
            c = await host.open_consumer("sub", "worker")
            assert len(await collect(c, 5)) == 5

    async def test_stalled_consumer_holds_at_most_its_window(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "window": 100}})
        async with streaming.run() as host:
            c = await host.open_consumer("sub", "stalled")
            first = await c.fetch(timeout=0.05)
            assert first == []
            for i in range(0, 100_000, 5000):
                await host.publish("s", ticks("s", 5000, start=i), external=False)
            got = await collect(c, 100, ack=False)
            assert len(got) == 100
            assert await c.fetch(timeout=0.05) == []  # window full: nothing more handed over
            alive = live_deliveries()
            live = sum(alive.values())
            assert len(c.held) == 100 and 100 <= live <= 100 + 5, alive

    async def test_random_cancellations_every_event_eventually_acked(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "visibility_timeout": 5,
                                                "window": 20}})
        rng = random.Random(7)
        total = 2000
        async with streaming.run() as host:
            await host.publish("s", ticks("s", total), external=False)
            acked: set[int] = set()
            deliveries_seen = 0
            generation = 0
            while len(acked) < total and generation < 500:
                generation += 1

                async def consume(gen: int):
                    nonlocal deliveries_seen
                    async for d in host.subscribe("sub", f"c{gen}"):
                        deliveries_seen += 1
                        acked.add(d.event.n)  # recorded; its ack happens on the next step

                task = asyncio.ensure_future(consume(generation))
                await asyncio.sleep(rng.uniform(0.0, 0.01))
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            # the last delivery of each cancelled consumer was never acked: those came back
            final = await host.open_consumer("sub", "final")
            while True:
                batch = await final.fetch(timeout=0.3)
                if not batch:
                    break
                acked.update(d.event.n for d in batch)
                await final.ack([d.id for d in batch])
            assert acked == set(range(total))
            info = await host.store.claim("sub", "", "probe", max_count=1, visibility_timeout=1)
            assert info.claimed == []  # nothing left un-acked

    async def test_prefetched_events_released_unseen_do_not_use_up_attempts(self, make):
        if self.release_counts_unseen:
            pytest.skip("this store counts every hand-over as an attempt")
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "window": 10,
                                                "max_delivery_attempts": 2}})
        async with streaming.run() as host:
            await host.publish("s", ticks("s", 10), external=False)
            for round_ in range(5):  # each consumer sees one event, prefetched the rest, dies
                async with host.subscribe("sub", f"c{round_}", auto_ack=False) as deliveries:
                    first = await within(deliveries.__anext__())
                    await first.ack()
            assert await host.dead_letters("sub") == []
            final = await host.open_consumer("sub", "final")
            rest = await collect(final, 5)
            assert sorted(d.event.n for d in rest) == [5, 6, 7, 8, 9]

    async def test_ack_processed_records_the_mark_and_settles(self, make):
        async with make(semantics=DeliverySemantics.EXACTLY_ONCE).run() as host:
            store = host.store
            await store.ensure_group("sub", "")
            await host.publish("s", ticks("s", 2), external=False)
            first, second = (await store.claim("sub", "", "c", max_count=2,
                                               visibility_timeout=30)).claimed
            assert await store.ack_processed("sub", "", "c", first.event.id) is True
            assert await store.is_processed("sub", first.event.id)
            # a consumer that does not hold the event: not settled, but the mark is recorded
            assert await store.ack_processed("sub", "", "other", second.event.id) is False
            assert await store.is_processed("sub", second.event.id)
            # the first is settled, the second still held by c
            assert await store.ack("sub", "", "c", [first.event.id, second.event.id]) == [
                first.event.id]

    async def test_exactly_once_effect_survives_crash_before_ack(self, make):
        streaming = make(semantics=DeliverySemantics.EXACTLY_ONCE,
                         subscriptions={"sub": {"mode": "exclusive", "visibility_timeout": 0.2}})
        async with streaming.run() as host:
            [event] = await host.publish("s", ticks("s", 1), external=False)
            # the same event appended again (a retried publish) is deduplicated
            await host.publish("s", [event], external=False)
            effects: list[int] = []
            consumer = await host.open_consumer("sub", "crashy")

            async def effect_then_crash(d: Delivery) -> None:
                effects.append(d.event.n)
                await consumer.close("crashed")  # the process dies before its ack lands

            async def effect(d: Delivery) -> None:
                effects.append(d.event.n)

            [d] = await collect(consumer, 1, ack=False)
            with pytest.raises(UnknownDeliveryError):
                await d.process_once(effect_then_crash)  # the ack of a dead consumer fails
            survivor = await host.open_consumer("sub", "survivor")
            [again] = await collect(survivor, 1, ack=False)
            assert again.id == d.id and again.attempt == 2
            assert await again.process_once(effect) is False
            assert effects == [0]
            assert await survivor.fetch(timeout=0.3) == []  # acked: nothing comes back
            # and process_once applies a fresh event exactly once
            await host.publish("s", ticks("s", 1, start=1), external=False)
            [fresh] = await collect(survivor, 1, ack=False)
            assert await fresh.process_once(effect) is True
            assert effects == [0, 1]

    # --- the claim path under cancellation and rebalancing ---------------------------------------

    async def test_next_with_tiny_timeouts_receives_every_event_once_in_order(self, make):
        """A ``next(timeout=0.001..0.003)`` loop against a steady producer: every event once,
        in order, at attempt 1 (a timed-out wait loses nothing it claimed)."""
        streaming = make(subscriptions={"sub": {"mode": "consumer_group"}}, partitions=4)
        total = 1000
        rng = random.Random(11)
        async with streaming.run() as host:
            async def produce() -> None:
                for i in range(0, total, 50):
                    await host.publish("s", [record(ConformanceTick(n=n), stream="s",
                                                    correlation_id=f"wf-{n % 20}")
                                             for n in range(i, i + 50)], external=False)
                    await asyncio.sleep(0.002)

            producer = asyncio.ensure_future(produce())
            seen: list[tuple[str, int, int]] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            async with host.subscribe("sub", "c") as deliveries:
                while len(seen) < total and loop.time() < deadline:
                    d = await deliveries.next(timeout=rng.uniform(0.001, 0.003))
                    if d is not None:
                        seen.append((d.correlation_id, d.event.n, d.attempt))
            await within(producer)
            assert len(seen) == total
            assert sorted(n for _, n, _ in seen) == list(range(total))  # each once
            assert {a for _, _, a in seen} == {1}
            for wf in {w for w, _, _ in seen}:
                ns = [n for w, n, _ in seen if w == wf]
                assert ns == sorted(ns), wf
            assert await host.dead_letters("sub") == []

    async def test_a_thousand_random_cancellations_lose_nothing_and_count_no_unseen_attempt(
            self, make):
        # an event whose loop body is cancelled was seen by code: that attempt counts, so the
        # limit is far above what 1,000 cancellations can use up on one event
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "visibility_timeout": 30,
                                                "window": 20, "max_delivery_attempts": 50}})
        rng = random.Random(5)
        total = 5000
        async with streaming.run() as host:
            await host.publish("s", ticks("s", total), external=False)
            attempts: dict[int, list[int]] = defaultdict(list)  # what code saw, per event
            acked: set[int] = set()
            seen_by: Counter[int] = Counter()  # deliveries per generation
            for generation in range(1000):
                async def consume(gen: int) -> None:
                    async with host.subscribe("sub", f"c{gen}", auto_ack=False) as deliveries:
                        async for d in deliveries:
                            attempts[d.event.n].append(d.attempt)
                            seen_by[gen] += 1
                            await asyncio.sleep(0)  # the loop body's work: a cancel may land
                            acked.add(d.event.n)  # acked from here on (the ack may be cancelled
                            await d.ack()         # after the store applied it)

                task = asyncio.ensure_future(consume(generation))
                # cancel at a random await: a few loop turns, or a little time (store I/O)
                if rng.random() < 0.5:
                    for _ in range(rng.randrange(0, 16)):
                        await asyncio.sleep(0)
                else:
                    await asyncio.sleep(rng.uniform(0.0, 0.004))
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await within(task, 30)
            # the cancelled consumers did work (and were cancelled in the middle of it)
            assert sum(1 for n in seen_by.values() if n) > 10
            async with host.subscribe("sub", "final", auto_ack=False) as deliveries:
                while len(acked) < total:
                    d = await deliveries.next(timeout=10)
                    assert d is not None, (f"{total - len(acked)} events never came back; "
                                           f"dead letters: {await host.dead_letters('sub')}")
                    attempts[d.event.n].append(d.attempt)
                    await d.ack()
                    acked.add(d.event.n)
            assert acked == set(range(total))
            assert await host.dead_letters("sub") == []
            # an attempt counts a hand-over to code: the attempts code saw of each event are
            # 1, 2, ... with none missing (a cancel after the ack may show one twice)
            for n, seen in attempts.items():
                assert sorted(set(seen)) == list(range(1, max(seen) + 1)), (n, seen)
            probe = await host.store.claim("sub", "", "probe", max_count=1,
                                           visibility_timeout=1)
            assert probe.claimed == []  # nothing left un-acked

    async def test_consumer_group_order_with_consumers_joining_and_leaving(self, make):
        """4 consumers join and leave mid-stream: every workflow's events in order, each
        processed once or redelivered only after the holder that left released it."""
        streaming = make(subscriptions={"sub": {"mode": "consumer_group", "window": 10}},
                         partitions=8)
        workflows = [f"wf-{i}" for i in range(40)]
        per_workflow = 25
        total = len(workflows) * per_workflow
        async with streaming.run() as host:
            acked: dict[str, list[int]] = defaultdict(list)
            taken_by: dict[str, set[str]] = defaultdict(set)
            stop = asyncio.Event()

            async def consumer(cid: str, budget: int) -> None:
                async with host.subscribe("sub", cid, auto_ack=False) as deliveries:
                    while budget > 0 and not stop.is_set():
                        d = await deliveries.next(timeout=0.05)
                        if d is None:
                            continue
                        taken_by[d.correlation_id].add(cid)
                        acked[d.correlation_id].append(d.event.n)
                        await d.ack()
                        budget -= 1
                        if len(sum(acked.values(), [])) >= total:
                            stop.set()

            async def produce() -> None:
                for n in range(per_workflow):
                    await host.publish("s", [record(ConformanceTick(n=n), stream="s",
                                                    correlation_id=wf) for wf in workflows],
                                       external=False)
                    await asyncio.sleep(0.005)

            producer = asyncio.ensure_future(produce())
            # two stay to the end; two join later and leave after a while (budgets)
            stayers = [asyncio.ensure_future(consumer(f"stay{i}", total)) for i in range(2)]
            await asyncio.sleep(0.02)
            leavers = [asyncio.ensure_future(consumer(f"leave{i}", 60)) for i in range(2)]
            await within(producer, 60)
            await within(asyncio.gather(*leavers), 60)
            await within(stop.wait(), 60)
            await within(asyncio.gather(*stayers), 30)
            for wf in workflows:
                assert acked[wf] == list(range(per_workflow)), (wf, acked[wf])
            assert any(len(c) > 1 for c in taken_by.values())  # partitions moved
            assert await host.dead_letters("sub") == []

    # --- slow loop bodies ------------------------------------------------------------------------

    async def test_slow_loop_bodies_with_automatic_acks_process_nothing_twice(self, make):
        """Two consumers, a window of 20, a visibility timeout shorter than the time a buffered
        event waits for the loop body: nothing is redelivered (acks go once the loop asks for
        the next event; buffered events have their deadlines extended)."""
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "window": 20,
                                                "visibility_timeout": 0.5}})
        total = 100
        async with streaming.run() as host:
            await host.publish("s", ticks("s", total), external=False)
            processed: Counter[int] = Counter()

            async def worker(cid: str) -> None:
                async with host.subscribe("sub", cid) as deliveries:
                    while sum(processed.values()) < total:
                        d = await deliveries.next(timeout=0.2)
                        if d is not None:
                            processed[d.event.n] += 1
                            await asyncio.sleep(0.05)  # the loop body's work

            await within(asyncio.gather(worker("a"), worker("b")), 60)
            assert sorted(processed) == list(range(total))
            assert [n for n, k in processed.items() if k > 1] == []  # 0 duplicates
            assert await host.dead_letters("sub") == []

    async def test_consumers_leaving_while_their_automatic_acks_are_flushed_process_nothing_twice(
            self, make):
        """Consumers of an exclusive subscription, eight at a time, each leave about
        ACK_FLUSH_INTERVAL after their first automatic ack was deferred, when the background
        flush of their acks is on its way to the store, and are replaced, until every event is
        processed: a close lets the acks sent before it land before it gives back what the
        consumer holds. Half leave with ``break`` (``async with`` acks the last event), half
        with ``aclose()`` in the loop body (the event in hand comes back once, at the next
        attempt, and is processed again: nothing else is)."""
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "window": 100,
                                                "visibility_timeout": 30,
                                                "max_delivery_attempts": 50}})
        total, slots, leavers = 6000, 8, 1000
        rng = random.Random(13)
        loop = asyncio.get_running_loop()
        async with streaming.run() as host:
            for i in range(0, total, 500):
                await host.publish("s", ticks("s", 500, start=i), external=False)
            attempts: dict[int, list[int]] = defaultdict(list)  # each hand-over to code
            processed: Counter[int] = Counter()  # loop bodies that ran to their end
            interrupted: Counter[int] = Counter()  # in code's hands when aclose() closed it
            left: Counter[str] = Counter()
            done = asyncio.Event()
            joined = 0

            def finish(n: int) -> None:
                processed[n] += 1
                if len(processed) == total:
                    done.set()

            async def consumer(cid: str, leaves: bool, by_close: bool, after: float) -> None:
                leave_at: float | None = None
                handed = 0
                async with host.subscribe("sub", cid) as deliveries:
                    while not done.is_set():
                        d = await deliveries.next(timeout=0.2)
                        if d is None:
                            continue
                        n = d.event.n
                        attempts[n].append(d.attempt)
                        handed += 1
                        if handed == 2 and leaves:
                            # the first event's ack was deferred as this one was handed over:
                            # its flush goes to the store ACK_FLUSH_INTERVAL from now; leave
                            # ``after`` that (from 1 ms before to 3 ms after: while it is sent)
                            leave_at = loop.time() + ACK_FLUSH_INTERVAL + after
                        if leave_at is not None:
                            # the loop body's work: a little time, never past the leave
                            pause = min(rng.uniform(0.0, 0.006), leave_at - loop.time())
                            await asyncio.sleep(max(pause, 0.0))
                            if loop.time() >= leave_at:
                                if by_close:
                                    interrupted[n] += 1  # held: it comes back, attempt + 1
                                    left["aclose"] += 1
                                    await deliveries.aclose()
                                    return
                                finish(n)  # acked by async with
                                left["break"] += 1
                                break
                        finish(n)

            async def slot() -> None:
                nonlocal joined
                while not done.is_set():
                    joined += 1
                    # the last ones stay to the end: bounded, whatever the timing
                    await consumer(f"c{joined}", joined <= leavers, rng.random() < 0.5,
                                   rng.uniform(-0.001, 0.003))

            await within(asyncio.gather(*(slot() for _ in range(slots))), 60)
            assert sum(left.values()) > 50, left  # consumers did leave, both ways
            assert left["break"] and left["aclose"], left
            assert sorted(processed) == list(range(total))
            duplicates = {n: attempts[n] for n, k in processed.items() if k > 1}
            assert duplicates == {}  # processed once each
            # an attempt counts a hand-over to code: 1, and one more after each aclose() that
            # found the event in code's hands
            if not self.release_counts_unseen:
                wrong = {n: (seen, interrupted[n]) for n, seen in attempts.items()
                         if seen != list(range(1, interrupted[n] + 2))}
                assert wrong == {}
            assert await host.dead_letters("sub") == []
            probe = await host.store.claim("sub", "", "probe", max_count=1,
                                           visibility_timeout=1)
            assert probe.claimed == []  # nothing given back after it was processed

    async def test_in_progress_keeps_a_slow_event_from_being_redelivered(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive",
                                                "visibility_timeout": 0.4}})
        async with streaming.run() as host:
            await host.publish("s", ticks("s", 1), external=False)
            slow = await host.open_consumer("sub", "slow")
            other = await host.open_consumer("sub", "other")
            [d] = await collect(slow, 1, ack=False)
            for _ in range(4):  # 4 x 0.2 s of work: twice the visibility timeout
                await asyncio.sleep(0.2)
                await d.in_progress()
            assert await other.fetch(timeout=0.1) == []  # never redelivered meanwhile
            await d.ack()
            assert await other.fetch(timeout=0.5) == []
            # once the deadline passed and another consumer took it, in_progress says so
            await host.publish("s", ticks("s", 1, start=1), external=False)
            [late] = await collect(slow, 1, ack=False)
            [again] = await collect(other, 1, ack=False, timeout=5)
            assert again.id == late.id and again.attempt == 2
            with pytest.raises(UnknownDeliveryError):
                await late.in_progress()

    async def test_auto_ack_is_not_held_back_by_the_slow_body_after_it(self, make):
        """An event acked automatically (the loop asked for the next one) reaches the store
        within ACK_FLUSH_INTERVAL even when the next loop body works longer than the
        visibility timeout: it is never redelivered to another consumer."""
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "window": 2,
                                                "visibility_timeout": 0.5}})
        async with streaming.run() as host:
            await host.publish("s", ticks("s", 2), external=False)
            other_got: list[Delivery] = []
            seen: list[int] = []
            async with host.subscribe("sub", "slow") as deliveries:
                first = await within(deliveries.next(timeout=5))
                seen.append(first.event.n)
                other = await host.open_consumer("sub", "other")
                second = await within(deliveries.next(timeout=5))  # first: acked automatically
                seen.append(second.event.n)
                # the second body works three visibility timeouts, saying so as it goes
                loop = asyncio.get_running_loop()
                until = loop.time() + 1.5
                while loop.time() < until:
                    await second.in_progress()
                    other_got += await other.fetch(timeout=0.15)
            assert seen == [0, 1]
            assert other_got == []  # neither the acked one nor the one in progress came back
            other_got += await other.fetch(timeout=0.6)
            assert other_got == []
            await other.close()

    async def test_consumer_group_partition_stays_with_a_holder_that_extends(self, make):
        """A rebalance moves a partition only once its holder settled what it holds: a holder
        that keeps its event in progress past the visibility timeout keeps the partition, so
        the new owner never takes the workflow's next event early."""
        import zlib

        streaming = make(subscriptions={"sub": {"mode": "consumer_group",
                                                "visibility_timeout": 0.5, "window": 1}})

        def rank(consumer: str) -> int:
            return zlib.crc32(f"{consumer}\x000".encode())

        # a second consumer that the rendezvous hash gives partition 0 once it joins
        newcomer = next(f"b{i}" for i in range(1000) if rank(f"b{i}") > rank("a"))
        async with streaming.run() as host:
            await host.publish("s", ticks("s", 2, correlation_id="w"), external=False)
            a = await host.open_consumer("sub", "a")
            [held] = await collect(a, 1, ack=False)
            b = await host.open_consumer("sub", newcomer)
            early: list[Delivery] = []
            loop = asyncio.get_running_loop()
            until = loop.time() + 1.5  # three visibility timeouts
            while loop.time() < until:
                await held.in_progress()
                early += await b.fetch(timeout=0.15)
            assert early == []  # the workflow's second event waited for the first
            await held.ack()
            [nxt] = await collect(b, 1, timeout=10)
            assert (held.event.n, nxt.event.n) == (0, 1)
            assert await a.fetch(timeout=0.2) == []

    async def test_at_most_once_events_waiting_in_the_buffer_survive_a_close(self, make):
        """At most once, an event is settled when it is handed to code, not when it is
        claimed: what waited in a consumer's buffer when it closed goes to another one."""
        streaming = make(semantics=DeliverySemantics.AT_MOST_ONCE,
                         subscriptions={"sub": {"mode": "exclusive", "window": 10}})
        total = 10
        async with streaming.run() as host:
            await host.publish("s", ticks("s", total), external=False)
            got: list[int] = []
            async with host.subscribe("sub", "first") as deliveries:
                async for d in deliveries:  # one seen; the other nine were prefetched
                    got.append(d.event.n)
                    break
            later = await host.open_consumer("sub", "later")
            got += [d.event.n for d in await collect(later, total - 1, ack=False)]
            assert sorted(got) == list(range(total))  # none lost, none twice
            assert await later.fetch(timeout=0.3) == []

    @pytest.mark.parametrize("mode", ["exclusive", "consumer_group"])
    async def test_a_redelivery_to_the_same_consumer_supersedes_the_old_delivery(
            self, make, mode):
        streaming = make(subscriptions={"sub": {"mode": mode, "visibility_timeout": 0.3}})
        async with streaming.run() as host:
            await host.publish("s", ticks("s", 1), external=False)
            c = await host.open_consumer("sub", "c")
            [old] = await collect(c, 1, ack=False)
            [new] = await collect(c, 1, ack=False)  # its deadline passed: handed over again
            assert (new.id, old.attempt, new.attempt) == (old.id, 1, 2)
            with pytest.raises(UnknownDeliveryError):
                await old.ack()  # the old delivery is over: it cannot settle the new one
            with pytest.raises(UnknownDeliveryError):
                await old.nack(delay=0.0)
            assert c.held == {new.id: new}
            await new.ack()
            assert c.held == {}
            assert await c.fetch(timeout=0.6) == []  # acked: never again
            runtime = host.engine.runtime("sub")
            if mode == "consumer_group":  # the mode's count of what c holds is back to zero
                assert all("c" not in held for held in runtime.mode._holds.values())

    async def test_a_second_close_returns_once_the_first_has_released(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive",
                                                "visibility_timeout": 60}})
        async with streaming.run() as host:
            await host.publish("s", ticks("s", 5), external=False)
            c = await host.open_consumer("sub", "c")
            got = await collect(c, 5, ack=False)
            first = asyncio.ensure_future(c.close("first"))
            await asyncio.sleep(0)  # the first close is under way
            await within(c.close("second"))
            assert first.done()
            assert "c" not in host.engine.runtime("sub").consumers
            other = await host.open_consumer("sub", "other")  # released: at once, not in 60 s
            again = await collect(other, 5, timeout=10)
            assert sorted(d.id for d in again) == sorted(d.id for d in got)
            await first

    # --- retention never loses an event silently -------------------------------------------------

    async def _drain(self, consumer: Any, timeout: float = 1.0) -> list[Delivery]:
        out: list[Delivery] = []
        while True:
            batch = await consumer.fetch(timeout=timeout)
            if not batch:
                return out
            await consumer.ack([d.id for d in batch])
            out += batch

    async def test_count_retention_dead_letters_what_a_lagging_subscription_had_not_settled(
            self, make, caplog):
        streaming = make(subscriptions={"sub": {"mode": "exclusive", "redelivery_delay": 0.0}},
                         retention_max_count=100)
        async with streaming.run() as host:
            consumer = await host.open_consumer("sub", "lagging")
            await host.publish("s", ticks("s", 10), external=False)
            held = await collect(consumer, 10, ack=False)  # in flight while retention runs
            with caplog.at_level("WARNING", logger="svrnty_events.retention"):
                for i in range(10, 1000, 100):
                    await host.publish("s", ticks("s", 100, start=i), external=False)
            for d in held:  # nacked after their events left the log: they still come back
                await d.nack(delay=0.0)
            delivered = await self._drain(consumer)
            dead = await host.dead_letters("sub")
            assert {d.reason for d in dead} == {"retention"}
            got = Counter([d.event.n for d in delivered] + [d.event.decode().n for d in dead])
            assert sorted(got) == list(range(1010)) and set(got.values()) == {1}  # 0 gone
            assert len(dead) >= 800  # the lagging group's unread events were dead-lettered
            assert sorted(d.event.n for d in held) == sorted(
                d.event.n for d in delivered if d.event.n < 10)
            assert "retention removed" in caplog.text and "dead-letter queue" in caplog.text

    async def test_age_retention_dead_letters_unread_events_and_keeps_fresh_ones(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive"}}, retention_max_age=60.0)
        async with streaming.run() as host:
            consumer = await host.open_consumer("sub", "lagging")
            old = utcnow() - timedelta(hours=1)
            stale = [record(ConformanceTick(n=n), stream="s", correlation_id="wf-1",
                            timestamp=old) for n in range(200)]
            await host.publish("s", stale, external=False)
            # fresh ones, then one stamped long ago among them (its own timestamp), then more
            await host.publish("s", ticks("s", 50, start=200), external=False)
            await host.publish("s", [record(ConformanceTick(n=250), stream="s",
                                            correlation_id="wf-1", timestamp=old)],
                               external=False)
            await host.publish("s", ticks("s", 100, start=251), external=False)
            delivered = await self._drain(consumer)
            dead = await host.dead_letters("sub")
            got = Counter([d.event.n for d in delivered] + [d.event.decode().n for d in dead])
            assert sorted(got) == list(range(351)) and set(got.values()) == {1}  # 0 gone
            fresh = set(range(200, 351)) - {250}
            assert fresh <= {d.event.n for d in delivered}  # no fresh event was dropped
            assert all(d.reason == "retention" for d in dead) and len(dead) >= 200

    async def test_keep_unsettled_retention_keeps_what_a_group_has_not_settled(self, make):
        streaming = make(subscriptions={"sub": {"mode": "exclusive"}},
                         retention_max_count=100, retention_policy="keep_unsettled")
        async with streaming.run() as host:
            consumer = await host.open_consumer("sub", "lagging")
            for i in range(0, 1000, 100):
                await host.publish("s", ticks("s", 100, start=i), external=False)
            delivered = await self._drain(consumer)
            assert sorted(d.event.n for d in delivered) == list(range(1000))
            assert await host.dead_letters("sub") == []
            await host.publish("s", ticks("s", 1, start=1000), external=False)
            assert len(await self._drain(consumer)) == 1
            info = await host.stream_info("s")
            assert info.length <= 101  # settled events go as the limit says

    async def test_process_once_applies_each_broadcast_consumers_own_effect_once(self, make):
        streaming = make(semantics=DeliverySemantics.EXACTLY_ONCE,
                         subscriptions={"sub": {"mode": "broadcast",
                                                "visibility_timeout": 0.3}})
        async with streaming.run() as host:
            [event] = await host.publish("s", ticks("s", 1), external=False)
            effects: list[str] = []
            a = await host.open_consumer("sub", "a")
            b = await host.open_consumer("sub", "b")
            for consumer in (a, b):
                [d] = await collect(consumer, 1, ack=False)
                assert await d.process_once(lambda d, c=consumer: effects.append(
                    c.consumer_id)) is True
            assert sorted(effects) == ["a", "b"]  # each consumer's effect, once
            # a redelivery to a (its ack lost) does not apply a's effect again
            assert await host.store.is_processed("sub", f"{event.id}@a")


from .checkpoints import CheckpointConformance  # noqa: E402  (it builds on _Kit above)
from .lags import LagConformance  # noqa: E402  (it builds on _Kit above)


class StoreConformance(StorePrimitives, EngineSemantics, ScheduleConformance,
                       CheckpointConformance, LagConformance):
    """Both layers, the schedule primitives and semantics, the projection checkpoints and the
    group lags, run against the store named by the ``event_store_config`` fixture."""
