"""Snapshots of workflow state, kept for :func:`svrnty_events.replay.rebuild`."""

from __future__ import annotations

from svrnty_events.replay import Snapshot

from .log import Log
from .rows import from_us, to_us


class Snapshots(Log):
    """The snapshots part of :class:`~svrnty_events_postgres.PostgresStore`
    (a :class:`~svrnty_events_postgres.SnapshotStore`)."""

    async def load_snapshot(self, stream: str, correlation_id: str,
                            key: str = "default") -> Snapshot | None:
        """The latest snapshot of a workflow's state, or None."""
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT version, seq, state, taken_at FROM {self.s}.snapshots WHERE "
                "stream_id = $1 AND correlation_id = $2 AND key = $3",
                self._stream(stream).id, correlation_id, key)
        return None if row is None else \
            Snapshot(stream, correlation_id, key, row[0], row[1], row[2], from_us(row[3]))

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` as the workflow's latest (an older one is not kept)."""
        async with self._conn() as conn:
            await conn.execute(
                f"INSERT INTO {self.s}.snapshots (stream_id, correlation_id, key, version, seq, "
                "state, taken_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (stream_id, "
                "correlation_id, key) DO UPDATE SET version = excluded.version, "
                "seq = excluded.seq, state = excluded.state, taken_at = excluded.taken_at "
                "WHERE excluded.version > snapshots.version",
                self._stream(snapshot.stream).id, snapshot.correlation_id, snapshot.key,
                snapshot.version, snapshot.sequence, snapshot.state, to_us(snapshot.taken_at))
