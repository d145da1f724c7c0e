"""Group lags in the store conformance suite (part of
:class:`~svrnty_events.testing.StoreConformance`): ``EventStore.group_lags`` after scripted
acks, holds, nacks and dead letters, in a shared group, a broadcast consumer's group, a group
whose filter excludes the events, and the partitions of a consumer group. Exact counts."""

from __future__ import annotations

from typing import Any

import pytest

from ..errors import UnknownSubscriptionError
from ..events import partition_of
from ..store import ClaimFilter, partition_group
from .conformance import ConformanceOther, _Kit, ticks


async def _lags_or_skip(store: Any, subscription: str) -> dict[str, int]:
    try:
        return await store.group_lags(subscription)
    except NotImplementedError:
        pytest.skip(f"{type(store).__name__} does not report group lags (optional)")


class LagConformance(_Kit):
    """``group_lags``: events of the stream not settled by each group (skipped for a store
    that does not report them: the method is optional)."""

    async def test_group_lags_count_unsettled_events_per_group(self, make):
        async with make().run() as host:
            store = host.store
            await store.ensure_group("sub", "")
            await store.ensure_group("sub", "consumer-b")  # a broadcast consumer's group
            await store.ensure_group("sub", "typed", filter=ClaimFilter(
                event_types=frozenset({ConformanceOther.__name__})))
            await host.publish("s", ticks("s", 10), external=False)
            lags = await _lags_or_skip(store, "sub")
            assert lags == {"": 10, "consumer-b": 10, "typed": 10}

            got = (await store.claim("sub", "", "c1", max_count=6,
                                     visibility_timeout=60)).claimed
            assert len(got) == 6
            assert (await store.group_lags("sub"))[""] == 10  # held events are not settled
            ids = [c.event.id for c in got]
            assert await store.ack("sub", "", "c1", ids[:2]) == []
            assert await store.dead_letter("sub", "", "c1", ids[2], reason="bad", attempts=1)
            assert await store.nack("sub", "", "c1", ids[3], delay=60, reason="later")
            # 2 acked and 1 dead-lettered are settled; 1 waiting, 2 held, 4 never claimed
            lags = await store.group_lags("sub")
            assert lags == {"": 7, "consumer-b": 10, "typed": 10}

            got_b = (await store.claim("sub", "consumer-b", "consumer-b", max_count=3,
                                       visibility_timeout=60)).claimed
            assert await store.ack("sub", "consumer-b", "consumer-b",
                                   [c.event.id for c in got_b]) == []
            # a claim of the typed group passes the ticks it excludes: settled for it
            none = await store.claim("sub", "typed", "t", max_count=10, visibility_timeout=60,
                                     filter=ClaimFilter(event_types=frozenset(
                                         {ConformanceOther.__name__})))
            assert none.claimed == []
            assert await store.group_lags("sub") == {"": 7, "consumer-b": 7, "typed": 0}

            await store.release("sub", "", "c1")  # held events go back: still not settled
            assert (await store.group_lags("sub"))[""] == 7
            rest = (await store.claim("sub", "", "c2", max_count=10,
                                      visibility_timeout=60)).claimed
            assert len(rest) == 6  # 2 released, 4 new (the nacked one is not due)
            assert await store.ack("sub", "", "c2", [c.event.id for c in rest]) == []
            assert (await store.group_lags("sub"))[""] == 1  # the nacked one
            await host.publish("s", ticks("s", 2, start=10), external=False)
            assert await store.group_lags("sub") == {"": 3, "consumer-b": 9, "typed": 2}

    async def test_group_lags_of_consumer_group_partitions(self, make):
        async with make(partitions=2).run() as host:
            store = host.store
            for p in (0, 1):
                await store.ensure_group("sub", partition_group(p),
                                         filter=ClaimFilter(partition=p))
            per = {0: 0, 1: 0}
            for i in range(8):
                corr = f"lag-wf-{i}"
                per[partition_of(corr, 2)] += 1
                await host.publish("s", ticks("s", 1, correlation_id=corr, start=i),
                                   external=False)
            assert per[0] > 0 and per[1] > 0
            assert await _lags_or_skip(store, "sub") == {"": per[0], "#1": per[1]}
            got = (await store.claim("sub", "#1", "m1", max_count=1, visibility_timeout=60,
                                     filter=ClaimFilter(partition=1))).claimed
            assert [c.event.partition for c in got] == [1]
            assert await store.ack("sub", "#1", "m1", [got[0].event.id]) == []
            assert await store.group_lags("sub") == {"": per[0], "#1": per[1] - 1}

    async def test_group_lags_of_unknown_subscription_fail(self, make):
        async with make().run() as host:
            await _lags_or_skip(host.store, "sub")
            with pytest.raises(UnknownSubscriptionError):
                await host.store.group_lags("no-such-subscription")
