"""Data already in Redis: streams written before the layout mark (one partition, the same keys)
are read and claimed after a restart; a newer layout is refused with a clear error; the number
of partitions of a stream that holds events cannot change."""

from __future__ import annotations

import asyncio
import json

import pytest

from svrnty_events.config import StreamConfig
from svrnty_events.errors import ConfigError, StoreFormatError
from svrnty_events.events import Event, record

T = 10


class Legacy(Event):
    n: int


async def test_a_stream_written_before_the_layout_mark_is_read_and_claimed(own_redis,
                                                                          open_store):
    async with open_store(url=own_redis.url) as store:
        s = store._streams["s"]
        await asyncio.wait_for(store.append(
            "s", [record(Legacy(n=i), stream="s", correlation_id="wf") for i in range(3)]), T)
        got = await asyncio.wait_for(store.claim("sub", "", "c", max_count=1,
                                                 visibility_timeout=30), T)
        assert [c.event.decode().n for c in got.claimed] == [0]
        # what the version before partitions wrote: no layout mark, no partition count, and
        # an entry with one field per attribute (the oldest format)
        await store.redis.hdel(s.meta, "layout", "partitions")
        await store.redis.xadd(s.log, {
            "id": "legacy", "type": "Legacy", "corr": "wf", "ts": "2026-01-01T00:00:00+00:00",
            "ct": "application/json", "data": json.dumps({"n": 3})}, id="3-1")
        await store.redis.hset(s.meta, "next", 4)
    own_redis.restart()
    async with open_store(url=own_redis.url) as store:
        assert await store.redis.hget(store._streams["s"].meta, "layout") == b"2"
        read = await asyncio.wait_for(store.read("s"), T)
        assert [(e.sequence, e.decode().n, e.partition) for e in read] == [
            (0, 0, 0), (1, 1, 0), (2, 2, 0), (3, 3, 0)]
        got = await asyncio.wait_for(store.claim("sub", "", "d", max_count=10,
                                                 visibility_timeout=30), T)
        assert [c.event.decode().n for c in got.claimed] == [1, 2, 3]
        assert await store.ack("sub", "", "c", [read[0].id]) == []  # claimed before restart


async def test_a_stream_of_a_newer_layout_is_refused(open_store):
    async with open_store() as store:
        await store.redis.hset(store._streams["s"].meta, "layout", 99)
        with pytest.raises(StoreFormatError) as info:
            await asyncio.wait_for(store.create_stream(StreamConfig(name="s")), T)
    assert info.value.store == "redis" and "layout 99" in info.value.found
    assert "upgrade" in info.value.action


async def test_the_partitions_of_a_stream_change_only_while_it_is_empty(open_store):
    async with open_store(partitions=2) as store:
        await asyncio.wait_for(store.create_stream(StreamConfig(name="s", partitions=4)), T)
        await asyncio.wait_for(store.append(
            "s", [record(Legacy(n=0), stream="s", correlation_id="wf")]), T)
        with pytest.raises(ConfigError) as info:
            await asyncio.wait_for(store.create_stream(StreamConfig(name="s", partitions=8)), T)
        assert "partitions" in str(info.value) and "4" in str(info.value)
        await asyncio.wait_for(store.create_stream(StreamConfig(name="s", partitions=4)), T)
