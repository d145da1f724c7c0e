"""A claim that committed on the server but whose reply never reached the host (the connection
dropped after the commit): what it took is given back by its token, so every event arrives
without waiting for its visibility timeout, and the lost reply counts no attempt."""

from __future__ import annotations

import pytest

from svrnty_events import EventStreaming
from svrnty_events.errors import StoreUnavailableError
from svrnty_events.events import record
from svrnty_events.testing import collect, eventually, within

from pg_proxy import reply_losing_proxy
from test_postgres_many_hosts import PgTick

#: far longer than any wait below: an event that waited for it would fail the test
VISIBILITY = 600.0
#: the claim statement's bytes hold its consumer and the reason of a redelivery
REASON = b"visibility timeout expired"


def streaming(url: str, schema: str) -> EventStreaming:
    s = EventStreaming(store="postgres", store_options={"url": url, "schema": schema})
    s.add_stream("s", type="persistent")
    s.add_subscription("s", "sub", mode="exclusive", visibility_timeout=VISIBILITY,
                       max_delivery_attempts=0, redelivery_delay=0.0)
    return s


def ticks(start: int, count: int) -> list:
    return [record(PgTick(n=i), stream="s", correlation_id="wf")
            for i in range(start, start + count)]


async def test_a_consumer_whose_claim_reply_was_lost_gets_every_event_at_attempt_one(
        postgres_server, schema):
    async with reply_losing_proxy(postgres_server.port) as proxy:
        url = proxy.url(postgres_server.url())
        async with streaming(url, schema).run() as host:
            await host.publish("s", ticks(0, 50), external=False)
            proxy.lose_reply_of([b"lost-reply", REASON])
            consumer = await host.open_consumer("sub", "lost-reply")
            got = await collect(consumer, 50, timeout=60)
            assert proxy.lost.is_set() and not proxy.lost_error
            assert proxy.lost_rows > 1  # the lost claim had taken events (and committed)
            assert sorted(d.event.n for d in got) == list(range(50))  # each once
            assert {d.attempt for d in got} == {1}  # the lost reply counted no attempt
            assert await consumer.fetch(timeout=0.3) == []


async def test_what_a_lost_claim_took_goes_to_the_next_claim_of_any_consumer(
        postgres_server, schema):
    async with reply_losing_proxy(postgres_server.port) as proxy:
        url = proxy.url(postgres_server.url())
        async with streaming(url, schema).run() as host:
            store = host.store
            await host.publish("s", ticks(0, 5), external=False)
            # one event waits for redelivery (nacked): the lost claim takes it from pending
            [first] = (await store.claim("sub", "", "a", max_count=1,
                                         visibility_timeout=VISIBILITY)).claimed
            assert await store.nack("sub", "", "a", first.event.id, delay=0.0)
            await host.publish("s", ticks(5, 5), external=False)
            proxy.lose_reply_of([b"lost-reply", REASON])
            with pytest.raises(StoreUnavailableError):
                await within(store.claim("sub", "", "lost-reply", max_count=100,
                                         visibility_timeout=VISIBILITY), 30)
            assert proxy.lost.is_set() and not proxy.lost_error
            assert proxy.lost_rows == 10 + 1  # it took all 10 (and committed); + its summary row

            async def others_claim() -> list:
                return (await store.claim("sub", "", "b", max_count=100,
                                          visibility_timeout=VISIBILITY)).claimed

            # given back in the background: another consumer's claim gets all of it
            claimed = await eventually(others_claim, 30)
            assert sorted(c.event.decode().n for c in claimed) == list(range(10))
            attempts = {c.event.decode().n: c.attempt for c in claimed}
            assert attempts == {0: 2, **{n: 1 for n in range(1, 10)}}  # the nack's one counts
            assert await store.ack("sub", "", "b", [c.event.id for c in claimed]) == []
            assert (await store.claim("sub", "", "b", max_count=100,
                                      visibility_timeout=VISIBILITY)).claimed == []
