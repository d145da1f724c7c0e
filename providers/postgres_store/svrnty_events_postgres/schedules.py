"""Scheduled events, kept in the ``schedules`` table (the store's schedule primitives). A
claim is one ``UPDATE`` over the due rows it locks (``FOR UPDATE SKIP LOCKED``), so hosts that
claim at once never lease one schedule twice; a dead host's lease expires and another host
fires the schedule (its event id is fixed, so an append the dead host made is deduplicated)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from svrnty_events.scheduling import Schedule, decode_schedule, encode_schedule

if TYPE_CHECKING:
    from .connection import Connection

    _Base = Connection
else:
    _Base = object


class Schedules(_Base):
    s: str

    async def save_schedules(self, schedules: Sequence[Schedule]) -> None:
        if not schedules:
            return
        async with self._tx() as conn:
            await conn.executemany(
                f"INSERT INTO {self.s}.schedules (id, due, event_id, holder, lease_until, body) "
                "VALUES ($1, $2, $3, NULL, 0, $4) ON CONFLICT (id) DO UPDATE SET "
                "due = excluded.due, event_id = excluded.event_id, holder = NULL, "
                "lease_until = 0, body = excluded.body",
                [(s.id, s.due, s.event.id, encode_schedule(s)) for s in schedules])

    async def cancel_schedule(self, schedule_id: str) -> bool:
        async with self._conn() as conn:
            status = await conn.execute(f"DELETE FROM {self.s}.schedules WHERE id = $1",
                                        schedule_id)
        return status != "DELETE 0"

    async def claim_schedules(self, holder: str, *, now: float, max_count: int,
                              lease: float) -> list[Schedule]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"UPDATE {self.s}.schedules SET holder = $1, lease_until = $2 + $3 WHERE id IN "
                f"(SELECT id FROM {self.s}.schedules WHERE due <= $2 AND (holder IS NULL OR "
                "holder = $1 OR lease_until <= $2) ORDER BY due LIMIT $4 "
                "FOR UPDATE SKIP LOCKED) RETURNING due, body", holder, now, lease, max_count)
        return [decode_schedule(r[1]) for r in sorted(rows, key=lambda r: r[0])]

    async def complete_schedules(self, done: Sequence[tuple[str, str]]) -> None:
        if done:
            async with self._tx() as conn:
                await conn.executemany(
                    f"DELETE FROM {self.s}.schedules WHERE id = $1 AND event_id = $2",
                    list(done))

    async def next_schedule_due(self) -> float | None:
        async with self._conn() as conn:
            return await conn.fetchval(f"SELECT min(due) FROM {self.s}.schedules")
