"""Long-running workflows on the memory store: scheduled events and their errors, timeouts
with a user event, terminal events that close a workflow, configuration errors (a timeout or
expiry of zero or below, an unknown timeout event), and a store that keeps no schedules."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from svrnty_events import Event, EventStreaming, Workflow
from svrnty_events.errors import (
    ConfigError,
    SchedulesUnsupportedError,
    WorkflowClosedError,
)
from svrnty_events.hookspecs import hookimpl
from svrnty_events.store import Capabilities
from svrnty_events_memory import MemoryStore

from .support import within


class LcStarted(Event):
    n: int = 0


class LcNudged(Event):
    pass


class LcFinished(Event):
    pass


class LcStale(Event):
    """A user event for the timeout: every field has a default."""

    note: str = "no news"


class LcNeedsField(Event):
    required: int


class LcStart(msgspec.Struct):
    schedule_after: float = -1.0


class LcNudge(msgspec.Struct):
    pass


class LcFinish(msgspec.Struct):
    pass


class LcWorkflow(Workflow):
    pass


def app(store: str = "memory", **stream_options) -> EventStreaming:
    streaming = EventStreaming(store=store)
    streaming.add_stream(LcWorkflow, type="persistent", **stream_options)

    @streaming.command_handler(LcStart, workflow=LcWorkflow)
    def start(command: LcStart, workflow: LcWorkflow) -> str | None:
        workflow.emit(LcStarted())
        if command.schedule_after >= 0:
            return workflow.schedule(LcNudged(), after=command.schedule_after)
        return None

    @streaming.command_handler(LcNudge, workflow=LcWorkflow)
    def nudge(command: LcNudge, workflow: LcWorkflow) -> None:
        workflow.emit(LcNudged())

    @streaming.command_handler(LcFinish, workflow=LcWorkflow)
    def finish(command: LcFinish, workflow: LcWorkflow) -> None:
        workflow.emit(LcFinished())

    return streaming


async def wait_for_types(host, workflow_id: str, type_name: str, count: int = 1) -> list:
    async def poll() -> list:
        while True:
            found = await host.read("lc", correlation_id=workflow_id, event_types=[type_name])
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)
    return await within(poll(), 15)


async def test_a_configured_user_event_is_appended_on_timeout():
    async with app(workflow_timeout=0.3, workflow_timeout_event=LcStale).run() as host:
        result = await host.send(LcStart())
        [stale] = await wait_for_types(host, result.workflow_id, "LcStale")
        assert stale.decode() == LcStale()
        assert stale.correlation_id == result.workflow_id


async def test_a_terminal_event_closes_the_workflow_and_cancels_its_timeout():
    async with app(workflow_timeout=0.3, terminal_event_types=[LcFinished]).run() as host:
        result = await host.send(LcStart())
        await host.send(LcFinish(), result.workflow_id)
        with pytest.raises(WorkflowClosedError) as info:
            await host.send(LcNudge(), result.workflow_id)
        message = str(info.value)
        assert result.workflow_id in message and "LcFinished" in message and "lc" in message
        assert await host.store.next_schedule_due() is None  # the timeout was cancelled
        await asyncio.sleep(0.6)
        assert [e.type for e in await host.read("lc", correlation_id=result.workflow_id)] == [
            "LcStarted", "LcFinished"]


async def test_a_scheduled_event_fires_within_the_stated_bound():
    """docs/workflows.md states: within schedule_poll_interval (0.5 s) after due; here held
    to a generous 2 s so a busy machine does not fail it."""
    async with app().run() as host:
        lateness = []
        for _ in range(5):
            started = time.time()
            result = await host.send(LcStart(schedule_after=0.2))
            [nudged] = await wait_for_types(host, result.workflow_id, "LcNudged")
            lateness.append(nudged.timestamp.timestamp() - (started + 0.2))
        assert all(-0.01 <= late < 2.0 for late in lateness), lateness


@pytest.mark.parametrize("field", ["workflow_timeout", "workflow_expiry"])
@pytest.mark.parametrize("value", [0, -1.5])
def test_a_timeout_or_expiry_of_zero_or_below_is_refused(field, value):
    with pytest.raises(ConfigError) as info:
        app(**{field: value}).build_host()
    assert info.value.path == f"streams[0].{field}" and "must be > 0" in str(info.value)


@pytest.mark.parametrize("options", [{"workflow_expiry": 5},
                                     {"terminal_event_types": ["LcFinished"]}])
def test_closing_a_workflow_needs_a_persistent_stream(options):
    streaming = EventStreaming()
    streaming.add_stream(LcWorkflow, type="ephemeral", **options)
    with pytest.raises(ConfigError, match="needs a persistent stream"):
        streaming.build_host()


def test_an_unknown_or_unbuildable_timeout_event_is_refused():
    with pytest.raises(ConfigError, match='unknown event type "LcNoSuch"'):
        app(workflow_timeout=1, workflow_timeout_event="LcNoSuch").build_host()
    with pytest.raises(ConfigError, match="cannot be built without arguments"):
        app(workflow_timeout=1, workflow_timeout_event=LcNeedsField).build_host()


def test_a_bad_poll_interval_is_refused():
    streaming = app()
    streaming.config.schedule_poll_interval = 0
    with pytest.raises(ConfigError, match="schedule_poll_interval"):
        streaming.build_host()


class _ForgetfulStore(MemoryStore):
    capabilities = Capabilities(durable=False, idempotent_append=True, shared=False,
                                schedules=False)


class _ForgetfulPlugin:
    @hookimpl
    def register_event_stores(self, register):
        register("lc-forgetful", lambda options: _ForgetfulStore())


async def test_a_store_without_schedules_refuses_them_with_a_clear_error():
    _ForgetfulStore.capabilities = Capabilities(schedules=False)
    streaming = app(store="lc-forgetful")
    streaming.extra_plugins.append(_ForgetfulPlugin())
    streaming.config.store.plugin = "lc-forgetful"
    async with streaming.run() as host:
        assert host.scheduler is None
        with pytest.raises(SchedulesUnsupportedError, match='store "lc-forgetful"'):
            await host.send(LcStart(schedule_after=1))
        assert await host.read("lc") == []  # the handler's events were not appended either
    with_timeout = app(store="lc-forgetful", workflow_timeout=5)
    with_timeout.extra_plugins.append(_ForgetfulPlugin())
    with pytest.raises(ConfigError, match="does not keep scheduled events"):
        with_timeout.build_host()
