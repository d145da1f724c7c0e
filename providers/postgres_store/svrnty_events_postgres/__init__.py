"""PostgreSQL event store for svrnty-events: durable streams and delivery state in one
database, shared by every host that points at it."""

from .replay import Rebuilt, SnapshotStore, iter_events, rebuild, sequence_at
from .store import PostgresStore, PostgresStoreOptions, Snapshot, outbox_connection

__all__ = [
    "PostgresStore",
    "PostgresStoreOptions",
    "Rebuilt",
    "Snapshot",
    "SnapshotStore",
    "iter_events",
    "outbox_connection",
    "rebuild",
    "sequence_at",
]
