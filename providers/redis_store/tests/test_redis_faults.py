"""Redis going away: fail fast while it is down, reconnect and resume once it is back."""

from __future__ import annotations

import asyncio
import time

import pytest

from svrnty_events.errors import StoreUnavailableError
from svrnty_events.events import record

from test_redis_many_hosts import Tick, publisher


async def test_calls_fail_fast_while_redis_is_down_and_work_once_it_is_back(own_redis,
                                                                              key_prefix):
    streaming = publisher(own_redis.url, key_prefix)
    async with streaming.run() as host:
        await host.publish("s", [record(Tick(n=0), stream="s", correlation_id="wf")],
                           external=False)
        own_redis.stop()
        for call in (
            lambda: host.publish("s", [record(Tick(n=1), stream="s", correlation_id="wf")],
                                 external=False),
            lambda: host.store.claim("sub", "", "c", max_count=1, visibility_timeout=5),
            lambda: host.read("s"),
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError) as err:
                await asyncio.wait_for(call(), 10)
            assert time.monotonic() - started < 3  # fails fast, does not hang
            assert err.value.retryable and "unavailable" in str(err.value)
        own_redis.start()
        # the same store instance reconnects on its own
        await asyncio.wait_for(host.publish(
            "s", [record(Tick(n=1), stream="s", correlation_id="wf")], external=False), 10)
        assert [e.decode().n for e in await host.read("s")] == [0, 1]  # appendonly kept 0


async def test_redis_restart_mid_stream_consumers_resume_and_no_acked_event_is_lost(
        own_redis, key_prefix, start_host):
    url, total = own_redis.url, 300
    consumer_host = await start_host("a", url, key_prefix, visibility_timeout=2.0)
    await consumer_host.open("a1")
    published: list[int] = []
    async with publisher(url, key_prefix, visibility_timeout=2.0).run() as host:
        for i in range(0, total, 10):
            if i == 150:
                own_redis.restart()  # SIGTERM (AOF flushed), then the same port and folder
            batch = [record(Tick(n=n), stream="s", correlation_id=f"wf-{i}")
                     for n in range(i, i + 10)]
            deadline = time.monotonic() + 20
            while True:  # a publisher retries the same batch: appends dedup by event id
                try:
                    await asyncio.wait_for(host.publish("s", batch, external=False), 10)
                    break
                except StoreUnavailableError:
                    assert time.monotonic() < deadline, "Redis did not come back"
                    await asyncio.sleep(0.1)
            published.extend(range(i, i + 10))
            await asyncio.sleep(0.01)
        await consumer_host.wait_until(lambda: set(consumer_host.numbers()) >= set(published),
                                       30)
        assert sorted(set(consumer_host.numbers())) == list(range(total))
        info = await host.stream_info("s")
        assert info.length == total  # every append landed once
        probe = await host.store.claim("sub", "", "probe", max_count=10, visibility_timeout=1)
        assert probe.claimed == []  # every event was acked, nothing left pending
