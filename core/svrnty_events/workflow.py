"""Workflows: the business process a command handler runs in. Its id is the correlation id of
every event it emits; a later command can continue it by passing that id."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime
from typing import Any, ClassVar

from .errors import InvalidEventError, ScheduleError
from .events import Event


class Workflow:
    """Base class of workflows.

    ``id`` is the correlation id; ``is_new`` is False when a command continues an existing
    workflow; ``version`` is how many events the workflow had before this command. Handlers call
    ``emit(event)``; the events are appended as one batch only if the handler returns.
    """

    #: stream the workflow's events go to (set by ``EventStreaming.add_stream``)
    stream: ClassVar[str | None] = None
    #: the command handler running in this workflow, named in emit() errors (set by the host)
    _handler: str | None = None
    #: derives deterministic ids of events and schedules (set by a process manager's send)
    _ids: Any = None

    def __init__(self, id: str | None = None, *, is_new: bool = True, version: int = 0) -> None:
        self.id = id or str(uuid.uuid4())
        self.is_new = is_new
        self.version = version
        self._pending: list[tuple[Any, dict[str, str] | None]] = []
        #: (schedule id, event, due time, headers) recorded by schedule()
        self._schedules: list[tuple[str, Event, float, dict[str, str] | None]] = []
        self._cancels: list[str] = []
        #: the workflow's state folded from its events, when the workflow type declares one
        #: (``initial_state`` and ``apply``); rebuilt by the host before a continuation
        self.state: Any = self.initial_state() if self._declares_state() else None

    def emit(self, event: Event, *, headers: dict[str, str] | None = None) -> None:
        """Record an event (an instance of an Event subclass) to append when the handler
        returns successfully. Raises InvalidEventError (a TypeError) naming the handler and the
        value for anything else, so the handler fails and nothing is appended."""
        if not isinstance(event, Event):
            raise InvalidEventError(self._handler, event)
        self._pending.append((event, headers))
        if self._declares_state():
            self.state = self.apply(self.state, event)

    def schedule(self, event: Event, *, after: float | None = None,
                 at: datetime | None = None, headers: dict[str, str] | None = None) -> str:
        """Have ``event`` appended to this workflow's stream ``after`` seconds from now, or
        ``at`` a time (timezone-aware), with this workflow's id as correlation id. Recorded
        when the handler returns successfully, like emit(). Returns the schedule id (for
        :meth:`cancel_scheduled`). Raises ScheduleError for a negative delay, a time more than
        a second in the past, or both or neither of ``after`` and ``at``."""
        from .scheduling import PAST_TOLERANCE

        if not isinstance(event, Event):
            raise InvalidEventError(self._handler, event)
        now = time.time()
        if (after is None) == (at is None):
            raise ScheduleError("schedule() takes one of after=seconds or at=datetime")
        if after is not None:
            if not isinstance(after, (int, float)) or after < 0:
                raise ScheduleError(f"schedule(after={after!r}): the delay must be a number "
                                    "of seconds >= 0")
            due = now + after
        else:
            if not isinstance(at, datetime) or at.tzinfo is None:
                raise ScheduleError(f"schedule(at={at!r}): give a timezone-aware datetime")
            due = at.timestamp()
            if due < now - PAST_TOLERANCE:
                raise ScheduleError(
                    f"schedule(at={at.isoformat()}): that is {now - due:.1f} s in the past "
                    f"(more than the {PAST_TOLERANCE:g} s tolerated)")
        schedule_id = str(uuid.uuid4()) if self._ids is None else \
            self._ids(f"schedule/{len(self._schedules)}")
        self._schedules.append((schedule_id, event, due, headers))
        return schedule_id

    def cancel_scheduled(self, schedule_id: str) -> None:
        """Cancel a scheduled event that has not fired yet, when the handler returns
        successfully (an unknown or fired id is ignored)."""
        self._cancels.append(schedule_id)

    # --- state: a workflow type may declare it -------------------------------------------------

    def initial_state(self) -> Any:
        """The state of a workflow without events. Override it with :meth:`apply` to give the
        workflow type a state, which continuations get rebuilt in ``workflow.state``."""
        return None

    def apply(self, state: Any, event: Any) -> Any:
        """Fold one event (decoded, an Event instance or plain JSON) into the state and
        return the new state."""
        return state

    #: the type the state is stored as in snapshots (default: the type of initial_state())
    state_type: ClassVar[Any] = None
    #: a snapshot of the state is saved every this many events (stores that keep snapshots)
    snapshot_every: ClassVar[int | None] = 100

    @classmethod
    def _declares_state(cls) -> bool:
        return cls.apply is not Workflow.apply

    @property
    def pending_events(self) -> list[Any]:
        return [event for event, _ in self._pending]

    @classmethod
    def default_stream_name(cls) -> str:
        """``UserWorkflow`` -> ``user``; ``InvitationWorkflow`` -> ``invitation``."""
        name = cls.__name__
        if name.endswith("Workflow") and name != "Workflow":
            name = name[: -len("Workflow")]
        return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id} new={self.is_new} version={self.version}>"
