"""The pytest plugin of svrnty-events (entry point ``pytest11``): fixtures for plugin authors."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def event_store_config() -> tuple[str, dict]:
    """The store under test: ``(plugin name, options)``. Store plugins override this."""
    return "memory", {}


@pytest.fixture
def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
