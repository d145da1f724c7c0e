CREATE TABLE {s}.schedules (
    id text PRIMARY KEY,
    due double precision NOT NULL,
    event_id text NOT NULL,
    holder text,
    lease_until double precision NOT NULL DEFAULT 0,
    body bytea NOT NULL
);
CREATE INDEX schedules_by_due ON {s}.schedules (due);
