"""The PostgreSQL store runs the kernel's store conformance suite, both layers, against a real
server: each test in a schema of its own."""

import pytest

from svrnty_events.testing import StoreConformance


class TestPostgresStore(StoreConformance):

    @pytest.fixture
    def event_store_config(self, pg_url, schema):
        return "postgres", {"url": pg_url, "schema": schema}
