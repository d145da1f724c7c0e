"""Scheduled events in Redis: one sorted set of schedule ids by due time and three hashes
(the schedule, its event id, its lease), under the key prefix, in one cluster slot
(``{prefix}{schedules}:*``). A claim is one script, so two hosts never lease one schedule at
once; a host that dies leaves its lease to expire, and another host fires the schedule (the
event id is fixed, so an append the dead host made is deduplicated)."""

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
    def _schedule_keys(self) -> list[str]:
        tag = f"{self.options.key_prefix}{{schedules}}"
        return [f"{tag}:due", f"{tag}:body", f"{tag}:lease", f"{tag}:eid"]

    async def save_schedules(self, schedules: Sequence[Schedule]) -> None:
        if not schedules:
            return
        due, body, lease, eid = self._schedule_keys()
        async with self._io():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zadd(due, {s.id: s.due for s in schedules})
                pipe.hset(body, mapping={s.id: encode_schedule(s) for s in schedules})
                pipe.hset(eid, mapping={s.id: s.event.id for s in schedules})
                pipe.hdel(lease, *[s.id for s in schedules])
                await pipe.execute()

    async def cancel_schedule(self, schedule_id: str) -> bool:
        due, body, lease, eid = self._schedule_keys()
        async with self._io():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(due, schedule_id)
                pipe.hdel(body, schedule_id)
                pipe.hdel(lease, schedule_id)
                pipe.hdel(eid, schedule_id)
                removed, *_ = await pipe.execute()
        return bool(removed)

    async def claim_schedules(self, holder: str, *, now: float, max_count: int,
                              lease: float) -> list[Schedule]:
        bodies = await self._run("schedules_claim", self._schedule_keys()[:3],
                                 [holder, repr(now), max_count, repr(lease),
                                  max_count * 4 + 100])
        return [decode_schedule(b) for b in bodies]

    async def complete_schedules(self, done: Sequence[tuple[str, str]]) -> None:
        if done:
            await self._run("schedules_complete", self._schedule_keys(),
                            [x for pair in done for x in pair])

    async def next_schedule_due(self) -> float | None:
        async with self._io():
            first = await self.redis.zrange(self._schedule_keys()[0], 0, 0, withscores=True)
        return float(first[0][1]) if first else None
