"""The SQLite store runs the kernel's store conformance suite."""

import pytest

from svrnty_events.testing import StoreConformance


class TestSqliteStore(StoreConformance):
    @pytest.fixture
    def event_store_config(self, tmp_path):
        return "sqlite", {"path": str(tmp_path / "events.db")}
