"""The Redis store runs the kernel's store conformance suite against a real redis-server."""

import pytest

from svrnty_events.testing import StoreConformance


class TestRedisStore(StoreConformance):

    @pytest.fixture
    def event_store_config(self, redis_server, key_prefix):
        return "redis", {"url": redis_server.url, "key_prefix": key_prefix}
