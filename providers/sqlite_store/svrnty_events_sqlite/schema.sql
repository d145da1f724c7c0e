-- The SQLite store's tables (schema version 2; schema.py creates them in a new file and
-- brings an older file up to date with the upgrade_*.sql scripts).
-- Times: events, receipts, dead letters and snapshots in microseconds since the epoch (exact
-- and ordered); delivery deadlines (pending.due) in time.time() seconds.
-- pending.state: 0 waiting for (re)delivery from `due` on, 1 in flight to `consumer` until `due`;
-- pending.event: a copy of an in-flight event that retention removed from the log (kept until
-- settled). groups.filter: the ClaimFilter (JSON) the group's claims pass, for retention.

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
    part INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events (stream_id, id);
CREATE INDEX IF NOT EXISTS events_by_correlation ON events (stream_id, correlation_id, seq);
CREATE INDEX IF NOT EXISTS events_by_part ON events (stream_id, part, seq);
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
    filter BLOB,
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
    event BLOB,
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
CREATE TABLE schedules (
    id          TEXT PRIMARY KEY,
    due         REAL NOT NULL,
    event_id    TEXT NOT NULL,
    holder      TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    body        BLOB NOT NULL
);
CREATE INDEX schedules_by_due ON schedules (due);
