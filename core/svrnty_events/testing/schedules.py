"""The schedule part of the store conformance suite (:class:`ScheduleConformance`, a base of
:class:`~svrnty_events.testing.StoreConformance`): the schedule primitives called directly,
then scheduled events, timeouts and expiry through a host on the store. A store whose
``Capabilities.schedules`` is False skips it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from ..errors import ScheduleError, WorkflowExpiredError
from ..events import Event, record
from ..host import EventStreaming
from ..scheduling import Schedule, WorkflowTimedOut, schedule_event_id
from ..workflow import Workflow

#: the bound the conformance suite holds a store's due times to (the documented bound is
#: schedule_poll_interval = 0.5 s; the suite is generous so a busy machine does not fail it)
DUE_BOUND = 3.0


class ConformanceScheduled(Event):
    n: int


class ConformanceScheduleCommand(msgspec.Struct):
    after: float = 0.0
    n: int = 0
    cancel: str = ""


class ConformancePoke(msgspec.Struct):
    pass


class ConformanceScheduleWorkflow(Workflow):
    pass


def _schedule(sid: str, due: float, n: int = 0, corr: str = "wf-1") -> Schedule:
    return Schedule(sid, due, record(ConformanceScheduled(n=n), stream="s", correlation_id=corr,
                                     event_id=schedule_event_id(sid)))


async def _wait_for(predicate: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


class ScheduleConformance:
    """Scheduled events on the store named by ``event_store_config``."""

    @pytest.fixture
    def schedule_host(self, event_store_config: tuple[str, dict]
                      ) -> Callable[..., EventStreaming]:
        name, options = event_store_config

        def make(**stream_options: Any) -> EventStreaming:
            streaming = EventStreaming(store=name, store_options=dict(options))
            streaming.add_stream(ConformanceScheduleWorkflow, name="s", type="persistent",
                                 **stream_options)

            @streaming.command_handler(ConformanceScheduleCommand,
                                       workflow=ConformanceScheduleWorkflow)
            def schedule(command: ConformanceScheduleCommand,
                         workflow: ConformanceScheduleWorkflow) -> str:
                workflow.emit(ConformanceScheduled(n=-1))
                if command.cancel:
                    workflow.cancel_scheduled(command.cancel)
                    return ""
                return workflow.schedule(ConformanceScheduled(n=command.n),
                                         after=command.after)

            @streaming.command_handler(ConformancePoke, workflow=ConformanceScheduleWorkflow)
            def poke(command: ConformancePoke, workflow: ConformanceScheduleWorkflow) -> None:
                workflow.emit(ConformanceScheduled(n=-2))

            return streaming

        # only the tests of this class use the fixture: a store without schedules skips them
        if not type(make().build_host().store).capabilities.schedules:
            pytest.skip("the store does not keep scheduled events")
        return make

    async def test_schedule_primitives_claim_lease_replace_complete_cancel(self, schedule_host):
        async with schedule_host().run() as host:
            store = host.store
            if host.scheduler is not None:
                await host.scheduler.stop()  # call the primitives alone
            now = time.time()
            await store.save_schedules([_schedule("a", now - 1, 1), _schedule("b", now + 60, 2),
                                        _schedule("c", now - 2, 3)])
            assert abs(await store.next_schedule_due() - (now - 2)) < 1e-3
            claimed = await store.claim_schedules("h1", now=now, max_count=10, lease=30)
            assert [s.id for s in claimed] == ["c", "a"]  # due ones, earliest first
            assert claimed[0].event.decode() == ConformanceScheduled(n=3)
            # leased to h1: h2 gets none until the lease expires; h1 gets them again
            assert await store.claim_schedules("h2", now=now, max_count=10, lease=30) == []
            assert len(await store.claim_schedules("h1", now=now, max_count=10, lease=30)) == 2
            assert [s.id for s in await store.claim_schedules(
                "h2", now=now + 31, max_count=1, lease=30)] == ["c"]
            # a replaced schedule is not completed by the old claim, and its claim is dropped
            replaced = _schedule("a", now - 1, 10)
            replaced = msgspec.structs.replace(replaced, event=msgspec.structs.replace(
                replaced.event, id=schedule_event_id("a", 2)))
            await store.save_schedules([replaced])
            await store.complete_schedules([("a", claimed[1].event.id), ("c", claimed[0].event.id)])
            [again] = await store.claim_schedules("h2", now=now, max_count=10, lease=30)
            assert again.id == "a" and again.event.decode() == ConformanceScheduled(n=10)
            await store.complete_schedules([("a", again.event.id)])
            assert await store.cancel_schedule("b") is True
            assert await store.cancel_schedule("b") is False
            assert await store.next_schedule_due() is None

    async def test_a_scheduled_event_is_appended_once_when_due(self, schedule_host):
        async with schedule_host().run() as host:
            started = time.time()
            result = await host.send(ConformanceScheduleCommand(after=0.5, n=7))
            events: list[Any] = []

            async def fired() -> bool:
                events[:] = await host.read("s", correlation_id=result.workflow_id)
                return len(events) == 2
            await _wait_for(fired)
            late = events[1].timestamp.timestamp() - (started + 0.5)
            assert -0.05 <= late <= DUE_BOUND, late
            assert events[1].decode() == ConformanceScheduled(n=7)
            assert events[1].id == schedule_event_id(result.value)
            assert events[1].correlation_id == result.workflow_id
            await asyncio.sleep(0.3)  # nothing more comes
            assert len(await host.read("s", correlation_id=result.workflow_id)) == 2
            assert await host.store.next_schedule_due() is None

    async def test_a_cancelled_schedule_never_fires(self, schedule_host):
        async with schedule_host().run() as host:
            result = await host.send(ConformanceScheduleCommand(after=0.4, n=1))
            control = await host.send(ConformanceScheduleCommand(after=0.6, n=2))
            await host.send(ConformanceScheduleCommand(cancel=result.value), result.workflow_id)
            await _wait_for(lambda: _count(host, control.workflow_id, 2))
            assert [e.decode().n for e in await host.read(
                "s", correlation_id=result.workflow_id)] == [-1, -1]

    async def test_schedule_errors(self, schedule_host):
        workflow = ConformanceScheduleWorkflow()
        with pytest.raises(ScheduleError, match="in the past"):
            workflow.schedule(ConformanceScheduled(n=1),
                              at=datetime.now(timezone.utc) - timedelta(seconds=30))
        with pytest.raises(ScheduleError, match=">= 0"):
            workflow.schedule(ConformanceScheduled(n=1), after=-1)
        with pytest.raises(ScheduleError, match="one of"):
            workflow.schedule(ConformanceScheduled(n=1))
        # within the tolerance: due at once
        workflow.schedule(ConformanceScheduled(n=1),
                          at=datetime.now(timezone.utc) - timedelta(seconds=0.5))

    async def test_a_timeout_fires_once_without_activity_and_not_with_activity(
            self, schedule_host):
        async with schedule_host(workflow_timeout=0.8).run() as host:
            idle = await host.send(ConformancePoke())
            busy = await host.send(ConformancePoke())
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:  # activity every 0.2 s: never 0.8 s idle
                await host.send(ConformancePoke(), busy.workflow_id)
                await asyncio.sleep(0.2)
            await _wait_for(lambda: _types(host, idle.workflow_id, "WorkflowTimedOut"))
            assert not await _types(host, busy.workflow_id, "WorkflowTimedOut")
            await asyncio.sleep(1.2)  # one timeout period more: still once
            timed_out = await _types(host, idle.workflow_id, "WorkflowTimedOut")
            assert len(timed_out) == 1
            assert timed_out[0].decode() == WorkflowTimedOut(timeout=0.8, version=1)
            # the busy workflow times out once its activity stops
            await _wait_for(lambda: _types(host, busy.workflow_id, "WorkflowTimedOut"))

    async def test_an_expired_workflow_is_closed(self, schedule_host):
        async with schedule_host(workflow_expiry=0.6).run() as host:
            result = await host.send(ConformancePoke())
            await host.send(ConformancePoke(), result.workflow_id)  # before expiry: fine
            await _wait_for(lambda: _types(host, result.workflow_id, "WorkflowExpired"))
            with pytest.raises(WorkflowExpiredError) as info:
                await host.send(ConformancePoke(), result.workflow_id)
            assert info.value.workflow_id == result.workflow_id
            assert result.workflow_id in str(info.value) and "expired at" in str(info.value)


async def _types(host: Any, workflow_id: str | None, type_name: str) -> list[Any]:
    return await host.read("s", correlation_id=workflow_id, event_types=[type_name])


async def _count(host: Any, workflow_id: str | None, count: int) -> bool:
    return len(await host.read("s", correlation_id=workflow_id)) >= count
