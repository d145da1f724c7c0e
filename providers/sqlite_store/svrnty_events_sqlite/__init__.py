"""SQLite event store for svrnty-events: durable streams and subscription state in one file."""

from .replay import Rebuilt, SnapshotStore, iter_events, rebuild, sequence_at
from .store import DatabaseInUseError, Snapshot, SqliteStore, SqliteStoreOptions

__all__ = [
    "DatabaseInUseError",
    "Rebuilt",
    "Snapshot",
    "SnapshotStore",
    "SqliteStore",
    "SqliteStoreOptions",
    "iter_events",
    "rebuild",
    "sequence_at",
]
