"""Fixtures: a real HTTP receiver on 127.0.0.1 (see webhook_support.py).

Tests never depend on whatever else is installed: only the memory store and this plugin are
loaded (SVRNTY_EVENTS_PLUGINS).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from webhook_support import Receiver


@pytest.fixture(autouse=True)
def only_our_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "memory,webhook")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.close()


@pytest.fixture
async def down_receiver() -> AsyncIterator[Receiver]:
    """A receiver whose port refuses connections until the test calls ``start()``."""
    r = Receiver()
    r.reserve_port()
    try:
        yield r
    finally:
        await r.close()
