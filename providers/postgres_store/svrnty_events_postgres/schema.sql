-- The PostgreSQL store's tables (schema version 3), in the schema named by the `schema`
-- option (written {s} here; schema.py creates them on first start).
-- Times: events, receipts, dead letters and snapshots in microseconds since the epoch (exact
-- and ordered); delivery deadlines (pending.due) and leases in seconds since the epoch on the
-- server's clock, so that hosts with skewed clocks agree.
-- pending.state: 0 waiting for (re)delivery from `due` on, 1 in flight to `consumer` until `due`;
-- pending.event: a copy of an in-flight event that retention removed from the log (kept until
-- settled); pending.token: the claim that last handed the row over (see batches).
-- groups.filter: the ClaimFilter (JSON) the group's claims pass, for retention.

CREATE TABLE {s}.schema_version (
    version integer NOT NULL,
    written_by text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE {s}.streams (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    type text NOT NULL,
    config bytea NOT NULL,
    first_seq bigint NOT NULL DEFAULT 0,
    next_seq bigint NOT NULL DEFAULT 0
);
CREATE TABLE {s}.events (
    stream_id integer NOT NULL,
    seq bigint NOT NULL,
    id text NOT NULL,
    type text NOT NULL,
    correlation_id text NOT NULL,
    ts bigint NOT NULL,
    data bytea NOT NULL,
    content_type text NOT NULL,
    headers bytea,
    part integer NOT NULL DEFAULT 0,
    PRIMARY KEY (stream_id, seq)
);
CREATE UNIQUE INDEX events_by_id ON {s}.events (stream_id, id);
CREATE INDEX events_by_correlation ON {s}.events (stream_id, correlation_id, seq);
CREATE INDEX events_by_part ON {s}.events (stream_id, part, seq);
CREATE TABLE {s}.correlations (
    stream_id integer NOT NULL,
    correlation_id text NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (stream_id, correlation_id)
);
CREATE TABLE {s}.subscriptions (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    stream_id integer NOT NULL,
    config bytea NOT NULL,
    floor bigint NOT NULL DEFAULT 0
);
CREATE TABLE {s}.groups (
    id serial PRIMARY KEY,
    sub_id integer NOT NULL,
    name text NOT NULL,
    cursor bigint NOT NULL,
    filter bytea,
    UNIQUE (sub_id, name)
);
CREATE TABLE {s}.pending (
    group_id integer NOT NULL,
    seq bigint NOT NULL,
    event_id text NOT NULL,
    state smallint NOT NULL,
    consumer text,
    due double precision NOT NULL,
    attempts integer NOT NULL,
    reason text,
    event bytea,
    token bigint,
    PRIMARY KEY (group_id, seq)
) WITH (
    -- a queue: every claimed event is inserted, every ack deletes; vacuum it often, so that
    -- its indexes do not fill with the entries of settled rows
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);
-- a row is found by its sequence (the events' unique index maps an event id to it): an index
-- on pending.event_id would cost as much as the rest of a claim. Rows whose event retention
-- removed are found by event id through their own small index.
CREATE INDEX pending_by_due ON {s}.pending (group_id, due);
CREATE INDEX pending_kept ON {s}.pending (group_id, event_id) WHERE event IS NOT NULL;
-- The events a claim handed over for the first time, as one row per claim rather than a
-- pending row per event: `seqs` (ascending) are in flight to `consumer` until `due`, each at
-- attempt 1 with no reason, exactly as if each had a pending row (state 1, same consumer, due
-- and token). A row never changes its members: an ack of all of them deletes it, an extend
-- of all of them moves `due`; anything else (a partial ack, nack, release, dead letter,
-- retention, a deadline passed) first turns it into those pending rows ("detach", detach.sql)
-- and then works on pending. `token` is chosen by the claiming host (see claim.sql).
CREATE TABLE {s}.batches (
    group_id integer NOT NULL,
    token bigint NOT NULL,
    consumer text NOT NULL,
    due double precision NOT NULL,
    seqs bigint[] NOT NULL,
    PRIMARY KEY (group_id, token)
) WITH (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 200,
    autovacuum_vacuum_cost_delay = 0
);
CREATE INDEX batches_by_due ON {s}.batches (group_id, due);
CREATE INDEX batches_by_consumer ON {s}.batches (group_id, consumer);
CREATE TABLE {s}.dead_letters (
    id bigserial PRIMARY KEY,
    sub_id integer NOT NULL,
    group_name text NOT NULL,
    event_id text NOT NULL,
    seq bigint NOT NULL,
    consumer text NOT NULL,
    reason text NOT NULL,
    attempts integer NOT NULL,
    error text,
    at bigint NOT NULL,
    event bytea NOT NULL,
    UNIQUE (sub_id, group_name, event_id)
);
CREATE TABLE {s}.receipts (
    id bigserial PRIMARY KEY,
    sub_id integer NOT NULL,
    consumer text NOT NULL,
    event_id text NOT NULL,
    delivered_at bigint NOT NULL,
    read_at bigint,
    UNIQUE (sub_id, consumer, event_id)
);
CREATE INDEX receipts_by_event ON {s}.receipts (sub_id, event_id);
CREATE TABLE {s}.processed (
    sub_id integer NOT NULL,
    key text NOT NULL,
    at bigint NOT NULL,
    PRIMARY KEY (sub_id, key)
);
CREATE TABLE {s}.leases (
    sub_id integer NOT NULL,
    group_name text NOT NULL,
    key text NOT NULL,
    holder text NOT NULL,
    until double precision NOT NULL,
    PRIMARY KEY (sub_id, group_name, key)
);
CREATE TABLE {s}.snapshots (
    stream_id integer NOT NULL,
    correlation_id text NOT NULL,
    key text NOT NULL,
    version bigint NOT NULL,
    seq bigint NOT NULL,
    state bytea NOT NULL,
    taken_at bigint NOT NULL,
    PRIMARY KEY (stream_id, correlation_id, key)
);
CREATE TABLE {s}.schedules (
    id text PRIMARY KEY,
    due double precision NOT NULL,
    event_id text NOT NULL,
    holder text,
    lease_until double precision NOT NULL DEFAULT 0,
    body bytea NOT NULL
);
CREATE INDEX schedules_by_due ON {s}.schedules (due);
