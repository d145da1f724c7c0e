"""What the host does around a command for long-running workflows: refuse to continue a
closed workflow (expired, or with a terminal event), rebuild a declared workflow state, and,
around the append, store the handler's schedules and (re)arm the stream's timeout and
expiry on the scheduler (:mod:`svrnty_events.scheduling`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .config import StreamConfig, StreamType
from .errors import ConfigError, SchedulesUnsupportedError, WorkflowClosedError, \
    WorkflowExpiredError
from .events import Event, RecordedEvent, record
from .scheduling import Schedule, WorkflowExpired, WorkflowTimedOut, schedule_event_id
from .workflow import Workflow

if TYPE_CHECKING:
    from .host import EventStreamingHost


def expiry_schedule_id(stream: str, workflow_id: str) -> str:
    return f"expiry:{stream}:{workflow_id}"


def check_store(host: EventStreamingHost) -> None:
    """ConfigError for a timeout or expiry on a store that keeps no schedules."""
    if type(host.store).capabilities.schedules:
        return
    for index, stream in enumerate(host.config.streams):
        for field in ("workflow_timeout", "workflow_expiry"):
            if getattr(stream, field) is not None:
                raise ConfigError(f"streams[{index}].{field}",
                                  f'store "{host.config.store.plugin}" does not keep scheduled '
                                  "events, which timeouts and expiry are built on",
                                  source=host.streaming.source)


def validate_stream(stream: StreamConfig, index: int, *, source: str | None,
                    event_types: Any) -> None:
    """ConfigError for a timeout or expiry of zero or below, or an unknown or unbuildable
    timeout event."""
    for field in ("workflow_timeout", "workflow_expiry"):
        value = getattr(stream, field)
        if value is not None and value <= 0:
            raise ConfigError(f"streams[{index}].{field}",
                              f"must be > 0 seconds (got {value}); leave it out for none",
                              source=source)
    # closing reads the workflow's first / terminal event: it must still be in the stream
    for field in ("workflow_expiry", "terminal_event_types"):
        if getattr(stream, field) and stream.type != StreamType.PERSISTENT:
            raise ConfigError(f"streams[{index}].{field}",
                              'needs a persistent stream (type = "persistent"): an ephemeral '
                              "stream drops the events that tell whether a workflow is closed",
                              source=source)
    name = stream.workflow_timeout_event
    if name is not None:
        cls = event_types.get(name)
        if cls is None:
            raise ConfigError(f"streams[{index}].workflow_timeout_event",
                              f'unknown event type "{name}": define the Event class (or '
                              "register it with register_event_types)", source=source)
        try:
            cls()
        except TypeError as exc:
            raise ConfigError(f"streams[{index}].workflow_timeout_event",
                              f'event type "{name}" cannot be built without arguments ({exc});'
                              " give its fields defaults", source=source) from None


async def check_open(host: EventStreamingHost, stream: StreamConfig, workflow_id: str) -> None:
    """Raise WorkflowExpiredError / WorkflowClosedError when the workflow cannot continue."""
    store = host.store
    if stream.workflow_expiry is not None:
        first = await store.read(stream.name, correlation_id=workflow_id, limit=1)
        if first:
            expires = first[0].timestamp + timedelta(seconds=stream.workflow_expiry)
            if datetime.now(timezone.utc) >= expires:
                raise WorkflowExpiredError(workflow_id, stream.name, expires.isoformat())
    if stream.terminal_event_types:
        ended = await store.read(stream.name, correlation_id=workflow_id, limit=1,
                                 event_types=stream.terminal_event_types)
        if ended:
            raise WorkflowClosedError(workflow_id, stream.name,
                                      f"ended with a terminal event {ended[0].type}",
                                      ended[0].timestamp.isoformat())


async def rebuild_state(host: EventStreamingHost, workflow: Workflow, stream: str) -> None:
    """Fold the workflow's events into ``workflow.state`` (from the latest snapshot where the
    store keeps them)."""
    from .replay import rebuild

    cls = type(workflow)

    def apply(state: Any, event: RecordedEvent) -> Any:
        return workflow.apply(state, event.decode())

    initial = workflow.initial_state()
    rebuilt = await rebuild(host.store, stream, workflow.id, apply, initial,
                            snapshot_every=cls.snapshot_every,
                            state_type=cls.state_type if cls.state_type is not None else
                            (type(initial) if initial is not None else Any),
                            key=f"workflow:{cls.__qualname__}")
    workflow.state = rebuilt.state


def _require_schedules(host: EventStreamingHost, what: str) -> None:
    if not type(host.store).capabilities.schedules:
        raise SchedulesUnsupportedError(host.config.store.plugin, what)


def check_schedules(host: EventStreamingHost, workflow: Workflow) -> None:
    """Before the append: refuse schedules on a store that cannot keep them."""
    if workflow._schedules or workflow._cancels:
        _require_schedules(host, "workflow.schedule()/cancel_scheduled()")


def timeout_schedule_id(stream: str, workflow_id: str, version: int) -> str:
    """A timeout per workflow version: the one armed by the command that brought the workflow
    to ``version`` events (void once another event arrives)."""
    return f"timeout:{stream}:{workflow_id}:{version}"


async def before_append(host: EventStreamingHost, stream: StreamConfig, workflow: Workflow,
                        events: Sequence[RecordedEvent]) -> None:
    """Save the handler's schedules and arm timeout and expiry, before the command's events
    are appended (a host that dies after the append then has them). Each schedule of a
    command that appends is anchored to its last event: the scheduler fires it only once that
    event is in the stream, and drops it when the append never happened."""
    now = time.time()
    version = workflow.version + len(events)
    anchor = events[-1].id if events else None
    schedules: list[Schedule] = []
    for schedule_id, event, due, headers in workflow._schedules:
        envelope = record(event, stream=stream.name, correlation_id=workflow.id,
                          headers=headers, event_id=schedule_event_id(schedule_id))
        schedules.append(Schedule(schedule_id, due, envelope, anchor=anchor,
                                  anchor_version=version, created=now))
    if events and not _ends(stream, events):
        if stream.workflow_timeout is not None:
            # unanchored: its expected_version voids it unless the workflow stays at version
            sid = timeout_schedule_id(stream.name, workflow.id, version)
            schedules.append(Schedule(sid, now + stream.workflow_timeout, record(
                _timeout_event(host, stream, version), stream=stream.name,
                correlation_id=workflow.id, event_id=schedule_event_id(sid, version)),
                expected_version=version))
        if stream.workflow_expiry is not None and workflow.is_new:
            sid = expiry_schedule_id(stream.name, workflow.id)
            started = events[0].timestamp.timestamp()
            schedules.append(Schedule(sid, started + stream.workflow_expiry, record(
                WorkflowExpired(expiry=stream.workflow_expiry), stream=stream.name,
                correlation_id=workflow.id, event_id=schedule_event_id(sid)),
                anchor=anchor, anchor_version=version, created=now))
    if schedules:
        await host.store.save_schedules(schedules)


async def after_append(host: EventStreamingHost, stream: StreamConfig, workflow: Workflow,
                       appended: Sequence[RecordedEvent]) -> None:
    """Once the events are in: the handler's cancellations, the previous timeout (void now)
    and, after a terminal event, the expiry; wake the scheduler for the new schedules."""
    store = host.store
    cancels = list(workflow._cancels)
    if appended:
        if stream.workflow_timeout is not None and not workflow.is_new:
            cancels.append(timeout_schedule_id(stream.name, workflow.id, workflow.version))
        if _ends(stream, appended):
            cancels.append(expiry_schedule_id(stream.name, workflow.id))
    for schedule_id in cancels:
        await store.cancel_schedule(schedule_id)
    if host.scheduler is not None and (workflow._schedules or appended and (
            stream.workflow_timeout is not None or stream.workflow_expiry is not None)):
        host.scheduler.wake()


def _ends(stream: StreamConfig, events: Sequence[RecordedEvent]) -> bool:
    terminal = stream.terminal_event_types
    return bool(terminal) and any(e.type in terminal for e in events)


def _timeout_event(host: EventStreamingHost, stream: StreamConfig, version: int) -> Event:
    if stream.workflow_timeout_event is None:
        assert stream.workflow_timeout is not None
        return WorkflowTimedOut(timeout=stream.workflow_timeout, version=version)
    cls = host.streaming.event_types.get(stream.workflow_timeout_event)
    assert cls is not None  # checked by validate_stream
    return cls()
