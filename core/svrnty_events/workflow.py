"""Workflows: the business process a command handler runs in. Its id is the correlation id of
every event it emits; a later command can continue it by passing that id."""

from __future__ import annotations

import re
import uuid
from typing import Any, ClassVar

from .errors import InvalidEventError
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

    def __init__(self, id: str | None = None, *, is_new: bool = True, version: int = 0) -> None:
        self.id = id or str(uuid.uuid4())
        self.is_new = is_new
        self.version = version
        self._pending: list[tuple[Any, dict[str, str] | None]] = []

    def emit(self, event: Event, *, headers: dict[str, str] | None = None) -> None:
        """Record an event (an instance of an Event subclass) to append when the handler
        returns successfully. Raises InvalidEventError (a TypeError) naming the handler and the
        value for anything else, so the handler fails and nothing is appended."""
        if not isinstance(event, Event):
            raise InvalidEventError(self._handler, event)
        self._pending.append((event, headers))

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
