"""The sample host on the PostgreSQL store, configured by a copy of its TOML file whose [store]
section names the plugin (as sample/README.md shows): two processes given the same file share
the streams and the delivery state, and a command sent to one wakes the consumer of the other."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest

pytest.importorskip("svrnty_events_postgres")
from svrnty_events_postgres.server import MISSING, PostgresServer, find_binaries  # noqa: E402

if TYPE_CHECKING:
    from conftest import SampleProcess

SAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "svrnty-events.toml"
MEMORY_STORE = 'plugin = "memory"                       # svrnty-events-memory'
FREE_PORTS = ("--grpc-port", "0", "--http-port", "0")
PLUGINS = "memory,grpc,postgres"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    if find_binaries() is None:
        pytest.skip(MISSING)
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


def _config(tmp_path: Path, url: str) -> Path:
    text = SAMPLE_CONFIG.read_text()
    assert MEMORY_STORE in text  # the line sample/README.md tells to change
    config = tmp_path / "svrnty-events-postgres.toml"
    config.write_text(text.replace(MEMORY_STORE, f'plugin = "postgres"\noptions = {{ url = '
                                                 f'"{url}", schema = "sample" }}'))
    return config


async def _add_user(sample: SampleProcess) -> dict:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        async with session.post(f"{sample.http_url}/api/command/addUser", data=json.dumps(
                {"name": "Ada", "email": f"ada-{uuid.uuid4().hex[:8]}@example.com"}),
                headers={"Content-Type": "application/json"}) as r:
            assert r.status == 200, await r.text()
            return await r.json()


async def test_two_sample_hosts_on_one_postgres_database_share_the_streams(
        postgres: PostgresServer, start_sample, tmp_path: Path):
    config = _config(tmp_path, postgres.url())
    first = start_sample("--config", str(config), *FREE_PORTS, plugins=PLUGINS).wait_started()
    second = start_sample("--config", str(config), *FREE_PORTS, plugins=PLUGINS).wait_started()
    for host in (first, second):
        assert "store:         postgres" in host.output, host.output
    marks = first.mark(), second.mark()
    added = await _add_user(first)
    workflow_id = added["workflow_id"]
    # user-analytics is a broadcast subscription: the consumer of each host gets the event,
    # the other host's woken by the command sent to the first
    pattern = (rf"event UserAdded correlation_id={workflow_id} subscription=user-analytics "
               r"consumer=analytics-[0-9a-f-]{36} attempt=1 ")
    for host, mark in zip((first, second), marks):
        await host.expect(pattern, timeout=20, start=mark)
    # one log for both: the event is in the database once
    import asyncpg

    conn = await asyncpg.connect(postgres.url())
    try:
        count = await conn.fetchval("SELECT count(*) FROM sample.events WHERE "
                                    "correlation_id = $1", workflow_id)
    finally:
        await conn.close()
    assert count == 1
    for host in (first, second):
        assert host.terminate() == 0, host.output
    assert "Traceback" not in first.output + second.output
