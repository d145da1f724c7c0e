"""Files written by older versions: a schema-version-1 file is upgraded on start with its
events and delivery state intact; a file of a newer version is refused with a clear error."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import msgspec
import pytest

from svrnty_events.config import StreamConfig, StreamType, SubscriptionConfig
from svrnty_events.errors import StoreFormatError
from svrnty_events.events import Event, RecordedEvent, encode_payload
from svrnty_events.testing import within
from svrnty_events_sqlite import SqliteStore, SqliteStoreOptions
from svrnty_events_sqlite.schema import SCHEMA_VERSION

#: the tables as svrnty-events-sqlite wrote them at schema version 1 (before partitions)
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    config BLOB NOT NULL,
    first_seq INTEGER NOT NULL DEFAULT 0,
    next_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    stream_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    data BLOB NOT NULL,
    content_type TEXT NOT NULL,
    headers BLOB,
    PRIMARY KEY (stream_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events (stream_id, id);
CREATE INDEX IF NOT EXISTS events_by_correlation ON events (stream_id, correlation_id, seq);
CREATE TABLE IF NOT EXISTS correlations (
    stream_id INTEGER NOT NULL,
    correlation_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (stream_id, correlation_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    stream_id INTEGER NOT NULL,
    config BLOB NOT NULL,
    floor INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY,
    sub_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    UNIQUE (sub_id, name)
);
CREATE TABLE IF NOT EXISTS pending (
    group_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    consumer TEXT,
    due REAL NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT,
    PRIMARY KEY (group_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS pending_by_event ON pending (group_id, event_id);
CREATE INDEX IF NOT EXISTS pending_by_due ON pending (group_id, due);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    sub_id INTEGER NOT NULL,
    group_name TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT,
    at INTEGER NOT NULL,
    event BLOB NOT NULL,
    UNIQUE (sub_id, group_name, event_id)
);
CREATE TABLE IF NOT EXISTS receipts (
    sub_id INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    delivered_at INTEGER NOT NULL,
    read_at INTEGER,
    UNIQUE (sub_id, consumer, event_id)
);
CREATE INDEX IF NOT EXISTS receipts_by_event ON receipts (sub_id, event_id);
CREATE TABLE IF NOT EXISTS processed (
    sub_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (sub_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    stream_id INTEGER NOT NULL,
    correlation_id TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    state BLOB NOT NULL,
    taken_at INTEGER NOT NULL,
    PRIMARY KEY (stream_id, correlation_id, key)
) WITHOUT ROWID;
"""


class Counted(Event):
    n: int


STREAM = StreamConfig(name="s", type=StreamType.PERSISTENT)
SUB = SubscriptionConfig(name="sub", stream="s", mode="exclusive")


def version_1_file(path: Path) -> None:
    """Six events of one workflow; the shared group's cursor at 4 after events 0-2 were acked
    and event 3 is still in flight to a consumer of the process that wrote the file."""
    config = json.loads(msgspec.json.encode(STREAM))
    del config["partitions"]  # version 1 did not know it
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(SCHEMA_V1)
        conn.execute("INSERT INTO streams (id, name, type, config, first_seq, next_seq) "
                     "VALUES (1, 's', 'persistent', ?, 0, 6)", (json.dumps(config).encode(),))
        conn.executemany(
            "INSERT INTO events (stream_id, seq, id, type, correlation_id, ts, data, "
            "content_type, headers) VALUES (1, ?, ?, 'Counted', 'wf', ?, ?, 'application/json', "
            "NULL)", [(i, f"e{i}", 1_700_000_000_000_000 + i, encode_payload(Counted(n=i)))
                      for i in range(6)])
        conn.execute("INSERT INTO correlations VALUES (1, 'wf', 6)")
        conn.execute("INSERT INTO subscriptions (id, name, stream_id, config, floor) "
                     "VALUES (1, 'sub', 1, ?, 0)", (msgspec.json.encode(SUB),))
        conn.execute("INSERT INTO groups (id, sub_id, name, cursor) VALUES (1, 1, '', 4)")
        conn.execute("INSERT INTO pending VALUES (1, 3, 'e3', 1, 'old-consumer', ?, 1, NULL)",
                     (time.time() + 3600,))
        conn.execute("PRAGMA user_version = 1")
        conn.commit()


async def test_a_version_1_file_is_upgraded_with_its_events_and_delivery_state(
        tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    version_1_file(path)
    store = SqliteStore(SqliteStoreOptions(path=str(path)))
    await within(store.start())
    try:
        await store.create_stream(STREAM)
        await store.create_subscription(SUB)
        events = await store.read("s")
        assert [(e.id, e.sequence, e.partition, e.decode().n) for e in events] == [
            (f"e{i}", i, 0, i) for i in range(6)]
        assert await store.correlation_version("s", "wf") == 6
        got = await within(store.claim("sub", "", "c", max_count=10, visibility_timeout=60))
        # the in-flight event comes back first (its attempt counted), then the cursor's
        assert [(c.event.id, c.attempt) for c in got.claimed] == [("e3", 2), ("e4", 1),
                                                                   ("e5", 1)]
        assert got.claimed[0].last_reason == "host restarted before ack"
        assert await store.ack("sub", "", "c", ["e3", "e4", "e5"]) == []
        [new] = await store.append("s", [RecordedEvent(
            id="e6", stream="s", type="Counted", correlation_id="wf",
            timestamp=events[0].timestamp, data=encode_payload(Counted(n=6)))])
        assert (new.sequence, new.partition) == (6, 0)
        again = await within(store.claim("sub", "", "c", max_count=10, visibility_timeout=60))
        assert [c.event.id for c in again.claimed] == ["e6"]
    finally:
        await within(store.close())
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'events_by_part'"
                            ).fetchone() is not None


async def test_a_file_of_a_newer_version_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SqliteStore(SqliteStoreOptions(path=str(path))) as store:
        await store.create_stream(STREAM)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for _ in range(2):  # the failed start let go of the file lock: the same error again
        store = SqliteStore(SqliteStoreOptions(path=str(path)))
        with pytest.raises(StoreFormatError) as err:
            await within(store.start())
        await within(store.close())
        message = str(err.value)
        assert f"schema version {SCHEMA_VERSION + 1}" in message
        assert "upgrade svrnty-events-sqlite" in message and str(path) in message
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
