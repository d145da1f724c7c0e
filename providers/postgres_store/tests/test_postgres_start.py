"""Start-up: a wrong host, wrong credentials or a missing database stop the host with a
ConfigError on store.options.url that gives the server's reason (never the password); the
schema is created on first start and a schema of another version is refused."""

from __future__ import annotations

import pytest

from svrnty_events import Event, EventStreaming
from svrnty_events.config import StreamConfig, SubscriptionConfig
from svrnty_events.errors import ConfigError, StoreFormatError
from svrnty_events.events import record
from svrnty_events.testing import within
from svrnty_events_postgres.schema import SCHEMA_VERSION
from svrnty_events_postgres import PostgresStore, PostgresStoreOptions
from svrnty_events_postgres.server import PASSWORD, free_port


class Started(Event):
    n: int


def streaming(url: str, **options) -> EventStreaming:
    s = EventStreaming(store="postgres", store_options={"url": url, "connect_timeout": 2.0,
                                                        **options})
    s.add_stream("s", type="persistent")
    s.add_subscription("s", "sub", mode="exclusive")
    return s


async def start_error(url: str) -> str:
    with pytest.raises(ConfigError) as info:
        async with streaming(url).run():
            pass
    message = str(info.value)
    assert message.startswith("store.options.url") and "cannot connect to PostgreSQL" in message
    return message


async def test_nothing_listening_at_the_address(schema):
    message = await within(start_error(f"postgresql://postgres:x@127.0.0.1:{free_port()}/db"),
                           30)
    assert "refused" in message.lower() and "host and port" in message


async def test_unknown_host_name():
    message = await within(start_error("postgresql://u:p@no-such-host.invalid:5432/db"), 30)
    assert "host" in message


async def test_wrong_password_gives_the_reason_and_not_the_password(postgres_server):
    url = postgres_server.url(password="wrong-pw")
    message = await within(start_error(url), 30)
    assert "password authentication failed" in message and "user and password" in message
    assert "wrong-pw" not in message and PASSWORD not in message


async def test_unknown_user(postgres_server):
    message = await within(start_error(postgres_server.url(user="nobody_here")), 30)
    assert "nobody_here" in message


async def test_missing_database(postgres_server):
    message = await within(start_error(postgres_server.url("no_such_db")), 30)
    assert 'database "no_such_db" does not exist' in message and "CREATE DATABASE" in message


async def test_schema_created_once_and_other_versions_refused(postgres_server, schema):
    options = PostgresStoreOptions(url=postgres_server.url(), schema=schema)
    async with PostgresStore(options) as store:
        async with store.connection() as conn:
            assert await conn.fetchval(
                f'SELECT max(version) FROM "{schema}".schema_version') == SCHEMA_VERSION == 3
    async with PostgresStore(options):  # a second start finds it and keeps it
        pass
    # a version-2 schema (before batches) is upgraded, keeping its rows: an event in flight
    # there (a pending row) is still settled by its ack
    v2 = (f'DROP TABLE "{schema}".batches; ALTER TABLE "{schema}".pending DROP COLUMN token; '
          f'DELETE FROM "{schema}".schema_version; INSERT INTO "{schema}".schema_version '
          "(version, written_by) VALUES (2, 'svrnty-events-postgres')")
    async with PostgresStore(options) as store:
        await store.create_stream(StreamConfig(name="s"))
        await store.create_subscription(SubscriptionConfig(name="sub", stream="s"))
        await store.append("s", [record(Started(n=1), stream="s", correlation_id="w")])
        [held] = (await store.claim("sub", "", "c", max_count=10,
                                    visibility_timeout=60)).claimed
        async with store.connection() as conn:  # as version 2 kept it: a pending row
            await conn.execute(f'INSERT INTO "{schema}".pending (group_id, seq, event_id, '
                               "state, consumer, due, attempts) SELECT group_id, "
                               "unnest(seqs), $1, 1, consumer, due, 1 FROM "
                               f'"{schema}".batches', held.event.id)
    postgres_server.psql(v2)
    async with PostgresStore(options) as store:
        async with store.connection() as conn:
            assert await conn.fetchval(
                f'SELECT max(version) FROM "{schema}".schema_version') == 3
        await store.create_stream(StreamConfig(name="s"))
        await store.create_subscription(SubscriptionConfig(name="sub", stream="s"))
        assert await store.ack("sub", "", "c", [held.event.id]) == []
        assert (await store.claim("sub", "", "c", max_count=10,
                                  visibility_timeout=60)).claimed == []
    # a version-1 schema (before scheduled events) is upgraded: it gets the schedules table
    postgres_server.psql(v2.replace("VALUES (2,", "VALUES (1,") +
                         f'; DROP TABLE "{schema}".schedules')
    async with PostgresStore(options) as store:
        await store.save_schedules([])
        assert await store.next_schedule_due() is None
        async with store.connection() as conn:
            assert await conn.fetchval(
                f'SELECT max(version) FROM "{schema}".schema_version') == 3
    postgres_server.psql(f'DELETE FROM "{schema}".schema_version WHERE version < 3')
    for version, words in ((4, "newer"), (0, "older")):
        postgres_server.psql(f'UPDATE "{schema}".schema_version SET version = {version}')
        with pytest.raises(StoreFormatError) as info:
            await within(PostgresStore(options).start(), 30)
        assert words in str(info.value) and f"version {version}" in str(info.value)
    postgres_server.psql(f'CREATE SCHEMA "{schema}_x"; CREATE TABLE "{schema}_x".mine (a int)')
    with pytest.raises(StoreFormatError, match="not written by svrnty-events-postgres"):
        await within(PostgresStore(PostgresStoreOptions(url=postgres_server.url(),
                                                        schema=f"{schema}_x")).start(), 30)
