-- Projection checkpoints: the position (next sequence to read) of each projection. Created
-- when the file is opened if missing, so files of every schema version get it.
CREATE TABLE IF NOT EXISTS checkpoints (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
