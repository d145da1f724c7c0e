"""Snapshots of workflow state, kept for :func:`svrnty_events.replay.rebuild`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from svrnty_events.replay import Snapshot

from .rows import from_us, to_us

if TYPE_CHECKING:
    from .log import Log

    _Base = Log
else:
    _Base = object


class Snapshots(_Base):
    """The snapshots part of :class:`~svrnty_events_sqlite.SqliteStore`
    (a :class:`~svrnty_events_sqlite.SnapshotStore`)."""

    async def load_snapshot(self, stream: str, correlation_id: str,
                            key: str = "default") -> Snapshot | None:
        """The latest snapshot of a workflow's state, or None."""
        rows = await self._db.query("SELECT version, seq, state, taken_at FROM snapshots WHERE "
                                    "stream_id = ? AND correlation_id = ? AND key = ?",
                                    (self._stream(stream).id, correlation_id, key))
        return Snapshot(stream, correlation_id, key, *rows[0][:3], from_us(rows[0][3])) \
            if rows else None

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` as the workflow's latest (an older one is not kept)."""
        await self._db.execute(
            "INSERT INTO snapshots (stream_id, correlation_id, key, version, seq, state, "
            "taken_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
            "version = excluded.version, seq = excluded.seq, state = excluded.state, "
            "taken_at = excluded.taken_at WHERE excluded.version > snapshots.version",
            (self._stream(snapshot.stream).id, snapshot.correlation_id, snapshot.key,
             snapshot.version, snapshot.sequence, snapshot.state, to_us(snapshot.taken_at)))
