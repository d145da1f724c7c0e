"""PostgreSQL going away: calls fail fast while it is down, consumers back off and resume once
it is back, and a listening connection the server terminates is replaced without leaving a
consumer asleep."""

from __future__ import annotations

import asyncio
import time

import pytest

from svrnty_events import EventStreaming
from svrnty_events.errors import StoreUnavailableError
from svrnty_events.events import record
from svrnty_events.testing import collect, within

from test_postgres_many_hosts import PgTick, publisher


async def publish_retrying(host, batch, deadline: float) -> None:
    """A publisher retries the same batch while the server is away: appends dedup by id."""
    while True:
        try:
            await within(host.publish("s", batch, external=False), 15)
            return
        except StoreUnavailableError:
            assert time.monotonic() < deadline, "PostgreSQL did not come back"
            await asyncio.sleep(0.1)


async def test_calls_fail_fast_while_the_server_is_down_and_work_once_it_is_back(
        own_postgres, schema):
    streaming = publisher(own_postgres.url(), schema)
    async with streaming.run() as host:
        await host.publish("s", [record(PgTick(n=0), stream="s", correlation_id="wf")],
                           external=False)
        own_postgres.stop()
        for call in (
            lambda: host.publish("s", [record(PgTick(n=1), stream="s", correlation_id="wf")],
                                 external=False),
            lambda: host.store.claim("sub", "", "c", max_count=1, visibility_timeout=5),
            lambda: host.read("s"),
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError) as err:
                await within(call(), 15)
            assert time.monotonic() - started < 6  # fails fast, does not hang
            assert err.value.retryable and "unavailable" in str(err.value)
        own_postgres.start()
        # the same store reconnects on its own
        await publish_retrying(host, [record(PgTick(n=1), stream="s", correlation_id="wf")],
                               time.monotonic() + 20)
        assert [e.decode().n for e in await host.read("s")] == [0, 1]


async def test_server_restart_mid_stream_consumers_resume_and_nothing_is_lost(
        own_postgres, schema, start_host):
    url, total = own_postgres.url(), 400
    async with publisher(url, schema, visibility_timeout=2.0).run() as host:
        consumer_host = await start_host("a", url, schema, visibility_timeout=2.0)
        await consumer_host.open("a1")
        published: list[int] = []
        for i in range(0, total, 10):
            if i == 200:
                own_postgres.restart()  # a clean stop (commits kept), the same port
            batch = [record(PgTick(n=n), stream="s", correlation_id=f"wf-{i}")
                     for n in range(i, i + 10)]
            await publish_retrying(host, batch, time.monotonic() + 30)
            published.extend(range(i, i + 10))
            await asyncio.sleep(0.005)
        await consumer_host.wait_until(
            lambda: set(consumer_host.numbers()) >= set(published), 60)
        assert sorted(set(consumer_host.numbers())) == list(range(total))  # 0 lost
        info = await host.stream_info("s")
        assert info.length == total  # every append landed once
        probe = await host.store.claim("sub", "", "probe", max_count=10, visibility_timeout=1)
        assert probe.claimed == []  # every event was acked, nothing left pending


def consumer_side(url: str, schema: str, **options) -> EventStreaming:
    streaming = EventStreaming(store="postgres", store_options={
        "url": url, "schema": schema, **options})
    streaming.add_stream("s", type="persistent")
    streaming.add_subscription("s", "sub", mode="exclusive")
    return streaming


async def listener_pids(server) -> set[str]:
    out = await asyncio.to_thread(
        server.psql, "SELECT pid FROM pg_stat_activity WHERE application_name = "
                     "'svrnty-events-listener'")
    return set(out.split())


#: how soon a consumer must wake for a new event after its listening connection was
#: terminated: the listener's reconnect (backoff from 50 ms) plus one claim, far below the
#: consumers' fallback (max_wait, set to 60 s here so that it cannot be what wakes them)
WAKE_BOUND = 3.0


async def test_terminated_listening_connection_consumers_still_wake(postgres_server, schema):
    url = postgres_server.url()
    # two hosts in one process: separate stores, so only NOTIFY carries the publisher's
    # appends to the consumer's store
    async with consumer_side(url, schema, max_wait=60.0).run() as consumers, \
            consumer_side(url, schema).run() as producer:
        consumer = await consumers.open_consumer("sub", "c")
        assert await consumer.fetch(timeout=0.2) == []
        for round_ in range(3):
            waiting = asyncio.ensure_future(consumer.fetch(timeout=30))
            await asyncio.sleep(0.1)  # the consumer is asleep in wait_for_change
            before = await listener_pids(postgres_server)
            assert before
            await asyncio.to_thread(
                postgres_server.psql, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'svrnty-events-listener'")
            if round_ < 2:  # the last round publishes before the listener can be back
                await asyncio.sleep(0.3)
            started = time.monotonic()
            await producer.publish("s", [record(PgTick(n=round_), stream="s",
                                                correlation_id="wf")], external=False)
            got = await within(waiting, 30)
            if not got:  # woken by the re-listen: the event comes with the next look
                got = await collect(consumer, 1, timeout=WAKE_BOUND, ack=False)
            assert time.monotonic() - started < WAKE_BOUND
            assert [d.event.n for d in got] == [round_]
            await consumer.ack([d.id for d in got])
            async def relistened() -> set[str]:
                while not (pids := await listener_pids(postgres_server)):
                    await asyncio.sleep(0.05)
                return pids

            after = await within(relistened(), 10)
            assert not after & before  # listening again, on new connections
