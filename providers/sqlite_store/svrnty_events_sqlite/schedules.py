"""Scheduled events, kept in the ``schedules`` table (the store's schedule primitives)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from svrnty_events.scheduling import Schedule, decode_schedule, encode_schedule

if TYPE_CHECKING:
    from .log import Log

    _Base = Log
else:
    _Base = object


class Schedules(_Base):
    """The schedules part of :class:`~svrnty_events_sqlite.SqliteStore`. One process has the
    file, so a claim is a plain update in the claim's transaction."""

    async def save_schedules(self, schedules: Sequence[Schedule]) -> None:
        rows = [(s.id, s.due, s.event.id, encode_schedule(s)) for s in schedules]

        def save(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO schedules (id, due, event_id, holder, lease_until, body) "
                "VALUES (?, ?, ?, NULL, 0, ?) ON CONFLICT (id) DO UPDATE SET due = excluded.due,"
                " event_id = excluded.event_id, holder = NULL, lease_until = 0, "
                "body = excluded.body", rows)
        await self._db.transaction(save)

    async def cancel_schedule(self, schedule_id: str) -> bool:
        return await self._db.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)) > 0

    async def claim_schedules(self, holder: str, *, now: float, max_count: int,
                              lease: float) -> list[Schedule]:
        def claim(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                "SELECT id, body FROM schedules WHERE due <= ? AND (holder IS NULL OR "
                "holder = ? OR lease_until <= ?) ORDER BY due LIMIT ?",
                (now, holder, now, max_count)).fetchall()
            conn.executemany("UPDATE schedules SET holder = ?, lease_until = ? WHERE id = ?",
                             [(holder, now + lease, r[0]) for r in rows])
            return [r[1] for r in rows]
        return [decode_schedule(b) for b in await self._db.transaction(claim)]

    async def complete_schedules(self, done: Sequence[tuple[str, str]]) -> None:
        def complete(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM schedules WHERE id = ? AND event_id = ?", list(done))
        await self._db.transaction(complete)

    async def next_schedule_due(self) -> float | None:
        rows = await self._db.query("SELECT MIN(due) FROM schedules")
        return rows[0][0] if rows else None
