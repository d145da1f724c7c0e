"""Scheduled events survive a SIGKILL of their host: a host killed before the due time, once
restarted on the same file, appends each scheduled event once, never before it is due."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from svrnty_events.testing.hosts import check_schedules_survive_a_crash_around_the_append, \
    host_processes


async def test_sigkill_before_due_then_restart_appends_each_once(tmp_path):
    options, total = {"path": str(tmp_path / "events.db")}, 100
    async with host_processes(tmp_path) as start:
        first = await start("first", "sqlite", options)
        scheduled_at = time.time()
        await first.schedule(0, total, 2.0)
        first.kill()
        await first.proc.wait()
        assert time.time() < scheduled_at + 2.0, "the machine is too slow for this test"
        second = await start("second", "sqlite", options, mode="broadcast")
        await second.open("counter", start=0)
        await second.wait_until(lambda: len(second.numbers()) >= total, 60)
        await asyncio.sleep(1.0)  # a duplicate would show up now
        fired = Counter(second.numbers())
        assert sorted(fired) == list(range(total))  # none lost
        assert set(fired.values()) == {1}  # none twice
        assert min(at for at, *_ in second.deliveries()) >= scheduled_at + 2.0 - 0.05
        # killed again after they fired and restarted: nothing fires a second time
        second.kill()
        await second.proc.wait()
        third = await start("third", "sqlite", options, mode="broadcast")
        await third.open("again", start=0)
        await third.wait_until(lambda: len(third.numbers()) >= total, 30)
        await asyncio.sleep(1.0)
        assert sorted(third.numbers()) == list(range(total))


async def test_a_schedule_survives_a_sigkill_right_after_its_commands_append(tmp_path):
    """Saved before the append, anchored to the command's event: killed just after the append
    it fires once; killed just before, neither event appears and the schedule is dropped."""
    await check_schedules_survive_a_crash_around_the_append(
        tmp_path, "sqlite", {"path": str(tmp_path / "events.db")})
