-- Version 2 to 3: a claim's first hand-overs are one row per claim (batches), and pending rows
-- say which claim last handed them over (token).
ALTER TABLE {s}.pending ADD COLUMN token bigint;
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
