"""Scheduled events: an event a workflow asks to have appended to its stream later.

``workflow.schedule(event, after=seconds)`` (or ``at=datetime``) inside a command handler
records a :class:`Schedule`; when the handler returns, the host stores it (with the events the
handler emitted) through the store's schedule primitives, and a :class:`Scheduler` task of the
host appends the event when it is due, with the workflow's correlation id.

Exactly once, across crashes and hosts:

- the scheduled event's id is fixed when it is scheduled (derived from the schedule id,
  :func:`schedule_event_id`), and appends are idempotent by event id: a host that appended it
  and died before it recorded the schedule as done appends the same id again, which the store
  deduplicates;
- a host *claims* due schedules (``claim_schedules``) with a lease: another host sharing the
  store skips them until the lease expires (the first host died), so one host fires each.

- a command's schedules are saved *before* its events are appended, anchored to its last
  event: a host that dies after the append has them already; one that dies before it (or a
  command whose append fails) leaves schedules whose anchor never arrives, which the scheduler
  drops (after ``anchor_grace`` seconds without it) instead of firing them.

Due times: a running host fires a schedule within ``HostConfig.schedule_poll_interval``
(0.5 s by default) plus the time of one append after it is due; see docs/workflows.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from .errors import ConcurrencyError, StoreUnavailableError
from .events import Event, RecordedEvent, utcnow

if TYPE_CHECKING:
    from .host import EventStreamingHost

log = logging.getLogger("svrnty_events.scheduling")

_NAMESPACE = uuid.UUID("6f1f0c1e-3b7a-4d53-9a55-2a4f7f0e5a11")

#: how far in the past ``schedule(at=...)`` may be (clocks of hosts differ a little): earlier
#: is refused with ScheduleInPastError; within it, the event is due at once
PAST_TOLERANCE = 1.0

#: header of a scheduled event naming its schedule
SCHEDULE_HEADER = "svrnty-schedule-id"


class Schedule(msgspec.Struct, frozen=True):
    """One scheduled event, as the store keeps it."""

    #: unique id (``workflow.schedule`` returns it; ``cancel_scheduled`` takes it)
    id: str
    #: due time, wall-clock seconds (``time.time()``)
    due: float
    #: the envelope to append (its id, stream and correlation id are fixed)
    event: RecordedEvent
    #: append only if the workflow still has this many events (a timeout is void once a new
    #: event arrived); None = append regardless
    expected_version: int | None = None
    #: the id of the last event of the command that scheduled it, saved before that command's
    #: events were appended: the schedule fires only once that event is in the stream (a
    #: command that failed or whose host died before its append commits leaves none); None =
    #: no condition
    anchor: str | None = None
    #: the workflow's event count once the anchoring command's events are in
    anchor_version: int = 0
    #: when it was saved (wall-clock seconds)
    created: float = 0.0

    @property
    def stream(self) -> str:
        return self.event.stream


def schedule_event_id(schedule_id: str, generation: int | str = "") -> str:
    """The id of the event a schedule appends: the same on every host and every retry."""
    return str(uuid.uuid5(_NAMESPACE, f"{schedule_id}/{generation}"))


def derived_id(*parts: object) -> str:
    """A deterministic id from ``parts`` (what process managers derive event ids from)."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


def encode_schedule(schedule: Schedule) -> bytes:
    return msgspec.msgpack.encode(schedule)


def decode_schedule(data: bytes) -> Schedule:
    return msgspec.msgpack.decode(data, type=Schedule)


class WorkflowTimedOut(Event):
    """Appended to a workflow when ``workflow_timeout`` seconds passed without a new event
    (unless the stream configures another event: ``workflow_timeout_event``)."""

    #: the stream's timeout in seconds
    timeout: float
    #: events the workflow had when the timeout was set
    version: int


class WorkflowExpired(Event):
    """Appended to a workflow when ``workflow_expiry`` seconds passed since it started. The
    workflow is closed from then on (continuing it raises WorkflowClosedError)."""

    #: the stream's expiry in seconds
    expiry: float


class InProcessSchedules:
    """The schedule primitives kept in this process (for the memory store, or any store that
    one process uses and that need not keep them across restarts)."""

    _schedules: dict[str, tuple[Schedule, str | None, float]]

    def _schedule_table(self) -> dict[str, tuple[Schedule, str | None, float]]:
        table = getattr(self, "_schedules", None)
        if table is None:
            table = self._schedules = {}
        return table

    async def save_schedules(self, schedules: Sequence[Schedule]) -> None:
        table = self._schedule_table()
        for s in schedules:
            table[s.id] = (s, None, 0.0)

    async def cancel_schedule(self, schedule_id: str) -> bool:
        return self._schedule_table().pop(schedule_id, None) is not None

    async def claim_schedules(self, holder: str, *, now: float, max_count: int,
                              lease: float) -> list[Schedule]:
        table = self._schedule_table()
        due = sorted((s for s, h, until in table.values()
                      if s.due <= now and (h is None or h == holder or until <= now)),
                     key=lambda s: s.due)[:max_count]
        for s in due:
            table[s.id] = (s, holder, now + lease)
        return due

    async def complete_schedules(self, done: Sequence[tuple[str, str]]) -> None:
        table = self._schedule_table()
        for schedule_id, event_id in done:
            entry = table.get(schedule_id)
            if entry is not None and entry[0].event.id == event_id:
                del table[schedule_id]

    async def next_schedule_due(self) -> float | None:
        table = self._schedule_table()
        return min((s.due for s, _, _ in table.values()), default=None)


#: seconds a host's claim on due schedules lasts (another host takes them over after it, when
#: the first died)
LEASE = 30.0

#: seconds a schedule waits for its anchor (the command's events) to be appended before the
#: scheduler takes the command for failed and drops it
ANCHOR_GRACE = 30.0


class Scheduler:
    """The host's task that appends due scheduled events (one per host)."""

    def __init__(self, host: EventStreamingHost, *, poll_interval: float,
                 lease: float | None = None, batch: int = 100,
                 anchor_grace: float | None = None) -> None:
        self.host = host
        self.store = host.store
        self.poll_interval = poll_interval
        self.lease = LEASE if lease is None else lease
        self.batch = batch
        self.anchor_grace = ANCHOR_GRACE if anchor_grace is None else anchor_grace
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: scheduled events this host appended (a retry the store deduplicated counted too)
        self.fired = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="svrnty-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    def wake(self) -> None:
        """Look again now (a schedule earlier than the one waited for may have been added)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            next_due: float | None = None
            try:
                claimed = await self.store.claim_schedules(
                    self.holder, now=time.time(), max_count=self.batch, lease=self.lease)
                for schedule in claimed:
                    await self._fire(schedule)
                if len(claimed) == self.batch:
                    continue
                next_due = await self.store.next_schedule_due()
            except asyncio.CancelledError:
                raise
            except StoreUnavailableError as exc:
                log.warning("scheduler: store unavailable (%s); retrying", exc)
            except Exception:
                log.exception("scheduler: firing due schedules failed; retrying")
            delay = self.poll_interval if next_due is None else \
                min(max(next_due - time.time(), 0.02), self.poll_interval)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    async def _anchored(self, schedule: Schedule) -> bool | None:
        """Whether the command that saved ``schedule`` committed: True (fire it), False (it
        never will: drop it), None (not yet: look again later)."""
        if schedule.anchor is None:
            return True
        stream, workflow_id = schedule.stream, schedule.event.correlation_id
        version = await self.store.correlation_version(stream, workflow_id)
        if version >= schedule.anchor_version:
            events = await self.store.read(stream, correlation_id=workflow_id)
            if any(e.id == schedule.anchor for e in events):
                return True
            # retention removed some of the workflow's events: the anchor may be one of them
            return len(events) < version
        if time.time() - schedule.created < self.anchor_grace:
            return None
        return False

    async def _fire(self, schedule: Schedule) -> None:
        anchored = await self._anchored(schedule)
        if anchored is None:  # its command's append has not committed yet
            await self.store.save_schedules([msgspec.structs.replace(
                schedule, due=time.time() + min(self.poll_interval, 1.0))])
            return
        if not anchored:
            log.warning("scheduler: dropping schedule %s of workflow %s: the command that "
                        "scheduled it did not append its events", schedule.id,
                        schedule.event.correlation_id)
            await self.store.complete_schedules([(schedule.id, schedule.event.id)])
            return
        event = msgspec.structs.replace(
            schedule.event, timestamp=utcnow(),
            headers={**schedule.event.headers, SCHEDULE_HEADER: schedule.id})
        try:
            # through the host: publish contexts (trace headers) and observers see it
            appended = await self.host._append(event.stream, [event],
                                               schedule.expected_version)
        except ConcurrencyError:
            appended = []  # the workflow moved on (a void timeout), or it was appended already
        if appended:
            self.fired += 1
        await self.store.complete_schedules([(schedule.id, schedule.event.id)])
