import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from svrnty_events_redis.server import running_redis  # noqa: E402


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """One redis-server for the session (started here, stopped in finally)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def own_redis(tmp_path: Path):
    """A redis-server of the test's own, for tests that stop or restart it."""
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def key_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def start_host(tmp_path: Path):
    """Start host processes (svrnty_events.testing.hosts) on the Redis store; every one is
    stopped or killed after."""
    from svrnty_events.testing.hosts import host_processes

    async with host_processes(tmp_path) as start:
        yield lambda name, url, prefix, **options: start(
            name, "redis", {"url": url, "key_prefix": prefix, "connect_timeout": 1.0,
                            "socket_timeout": 2.0}, **options)


@pytest.fixture
def open_store(redis_server, key_prefix):
    """``async with open_store(partitions=n) as store``: a started RedisStore (no host, no
    engine) with stream "s" and subscription "sub", closed afterwards."""
    from contextlib import asynccontextmanager

    from svrnty_events.config import StreamConfig, SubscriptionConfig
    from svrnty_events_redis import RedisStore, RedisStoreOptions

    @asynccontextmanager
    async def open_(url: str | None = None, **stream):
        store = RedisStore(RedisStoreOptions(url=url or redis_server.url,
                                             key_prefix=key_prefix))
        await asyncio.wait_for(store.start(), 10)
        try:
            await asyncio.wait_for(store.create_stream(StreamConfig(name="s", **stream)), 10)
            await asyncio.wait_for(store.create_subscription(
                SubscriptionConfig(name="sub", stream="s", mode="exclusive")), 10)
            yield store
        finally:
            await store.close()

    return open_
