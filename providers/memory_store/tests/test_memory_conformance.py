"""The memory store runs the kernel's store conformance suite."""

import pytest

from svrnty_events.testing import StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def event_store_config(self):
        return "memory", {}
