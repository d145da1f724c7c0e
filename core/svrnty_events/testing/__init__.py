"""Test kit for svrnty-events plugins, shipped as a pytest plugin (entry point ``pytest11``).

A store plugin runs the whole store conformance suite by subclassing it and providing one
fixture naming the store and its options::

    import pytest
    from svrnty_events.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def event_store_config(self, tmp_path):
            return "mystore", {"path": str(tmp_path / "events.db")}
"""

from .conformance import EngineSemantics, StoreConformance, StorePrimitives
from .schedules import ScheduleConformance
from .lags import LagConformance
from .helpers import collect, eventually, live_deliveries, self_signed_certificate, within

__all__ = ["EngineSemantics", "LagConformance", "ScheduleConformance", "StoreConformance", "StorePrimitives",
           "collect", "eventually", "live_deliveries", "self_signed_certificate", "within"]
