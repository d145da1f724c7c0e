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
    """Start host processes (tests/host_process.py); every one is stopped or killed after."""
    from pg_hosts import HostProcess

    started: list[HostProcess] = []

    async def start(name: str, url: str, schema: str, **options) -> HostProcess:
        host = await HostProcess.start(name, url, schema, tmp_path, **options)
        started.append(host)
        return host

    try:
        yield start
    finally:
        for host in started:
            try:
                await host.stop()
            finally:
                host.kill()
