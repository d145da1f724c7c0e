import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from svrnty_events_postgres.server import MISSING, PostgresServer, find_binaries  # noqa: E402


def _server(**options) -> PostgresServer:
    if find_binaries() is None:
        pytest.skip(MISSING)
    return PostgresServer(**options)


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the session (started here, removed in finally)."""
    server = _server()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of the test's own, for tests that stop or restart it."""
    server = _server()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def schema() -> str:
    """A schema of the test's own: tests sharing the session's server do not interfere."""
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def pg_url(postgres_server) -> str:
    return postgres_server.url()


@pytest.fixture
async def start_host(tmp_path):
    """Start host processes (svrnty_events.testing.hosts) on the PostgreSQL store; every one
    is stopped or killed after."""
    from svrnty_events.testing.hosts import host_processes

    async with host_processes(tmp_path) as start:
        yield lambda name, url, schema, **options: start(
            name, "postgres", {"url": url, "schema": schema, "connect_timeout": 2.0,
                               "command_timeout": 5.0}, **options)
