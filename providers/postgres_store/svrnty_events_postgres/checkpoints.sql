-- Projection checkpoints: the position (next sequence to read) of each projection. Created
-- when the store starts if missing, so schemas of every version get it. {s}: the schema.
CREATE TABLE IF NOT EXISTS {s}.checkpoints (
    name text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
