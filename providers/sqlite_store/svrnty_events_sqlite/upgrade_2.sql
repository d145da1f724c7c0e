-- Schema version 1 -> 2: events carry their partition of the stream (version 1 knew one
-- partition per stream, so every event it wrote is in partition 0); groups keep their claim
-- filter and pending rows a copy of an in-flight event retention removed, for retention.
ALTER TABLE events ADD COLUMN part INTEGER NOT NULL DEFAULT 0;
CREATE INDEX events_by_part ON events (stream_id, part, seq);
ALTER TABLE groups ADD COLUMN filter BLOB;
ALTER TABLE pending ADD COLUMN event BLOB;
