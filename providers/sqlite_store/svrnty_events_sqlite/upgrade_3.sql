-- Schema version 2 -> 3: scheduled events (workflow.schedule, timeouts, expiry), each with the
-- envelope it appends when due and the host that claimed it until when.
CREATE TABLE schedules (
    id          TEXT PRIMARY KEY,
    due         REAL NOT NULL,
    event_id    TEXT NOT NULL,
    holder      TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    body        BLOB NOT NULL
);
CREATE INDEX schedules_by_due ON schedules (due);
