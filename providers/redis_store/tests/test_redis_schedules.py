"""Scheduled events on Redis across host processes (svrnty_events.testing.hosts): two hosts
share the schedules and each event is appended once; a host SIGKILLed before the due time
leaves its schedules to the other host, which appends each once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter


async def _fired(consumer_host, count: int) -> Counter:
    await consumer_host.wait_until(lambda: len(consumer_host.numbers()) >= count, 60)
    await asyncio.sleep(1.0)  # a duplicate would show up now
    return Counter(consumer_host.numbers())


async def test_two_hosts_append_each_scheduled_event_once(redis_server, key_prefix, start_host):
    url, total = redis_server.url, 200
    a = await start_host("a", url, key_prefix)
    b = await start_host("b", url, key_prefix)
    await b.open("counter")
    scheduled_at = time.time()
    await a.schedule(0, total // 2, 1.5)
    await b.schedule(total // 2, total // 2, 1.5)
    fired = await _fired(b, total)
    assert sorted(fired) == list(range(total))  # none lost
    assert set(fired.values()) == {1}  # none appended twice
    first_at = min(at for at, *_ in b.deliveries())
    assert first_at >= scheduled_at + 1.5 - 0.05  # not before due


async def test_a_host_killed_before_due_leaves_its_schedules_to_the_other(
        redis_server, key_prefix, start_host):
    url, total = redis_server.url, 100
    a = await start_host("a", url, key_prefix)
    b = await start_host("b", url, key_prefix)
    await b.open("counter")
    await a.schedule(0, total, 1.5)
    a.kill()
    await a.proc.wait()
    fired = await _fired(b, total)
    assert sorted(fired) == list(range(total))
    assert set(fired.values()) == {1}


async def test_process_manager_sigkilled_sends_every_follow_up_once(redis_server, key_prefix,
                                                                    tmp_path):
    """A process manager host SIGKILLed at random points over 1,000 workflows on Redis: every
    follow-up command sent exactly once (counted in the stream)."""
    from svrnty_events.testing.process_manager_host import sigkill_rounds

    workflows = 1000
    outcome = await sigkill_rounds("redis", {"url": redis_server.url, "key_prefix": key_prefix},
                                   workflows, tmp_path, kill_after=(0.2, 1.5))
    outcome.check_every_follow_up_sent_once("redis", workflows)


async def test_a_schedule_survives_a_sigkill_right_after_its_commands_append(
        redis_server, key_prefix, tmp_path):
    """Saved before the append, anchored to the command's event: killed just after the append
    it fires once; killed just before, neither event appears and the schedule is dropped."""
    from svrnty_events.testing.hosts import check_schedules_survive_a_crash_around_the_append

    await check_schedules_survive_a_crash_around_the_append(
        tmp_path, "redis", {"url": redis_server.url, "key_prefix": key_prefix})
