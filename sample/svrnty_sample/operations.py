"""What the HTTP API and the gRPC CommandService share: running a named command or query, and
turning its errors into one description (a :class:`Problem`) that each transport renders in its
own way (RFC 7807 problem details, gRPC status codes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from svrnty_events import EventStreamingHost
from svrnty_events.commands import CommandResult
from svrnty_events.errors import (
    ConcurrencyError,
    UnknownCommandError,
    UnknownWorkflowError,
    ValidationError,
)

from .domain import ConflictError, NotFoundError, continued_workflow


async def run_command(host: EventStreamingHost, name: str, payload: Any,
                      workflow_id: str | None = None) -> CommandResult:
    """Decode ``payload`` for command ``name`` and send it. The command continues a workflow when
    ``workflow_id`` is given or when the command names one (``acceptInvitation`` carries the
    invitation id); otherwise it starts a new one. Raises ValidationError naming the field."""
    handler = host.handlers.named(name, "command")
    command = host.handlers.decode(handler, payload)
    named = continued_workflow(command)
    if workflow_id and named and workflow_id != named:
        raise ValidationError(type(command).continues,
                              f"names workflow {named}, but workflow id {workflow_id} was given")
    return await host.send(command, workflow_id or named)


async def run_query(host: EventStreamingHost, name: str, payload: Any) -> Any:
    return await host.query_named(name, payload)


class FieldError(msgspec.Struct):
    field: str
    message: str


@dataclass
class Problem:
    """A refused operation: ``status`` is the HTTP status, ``kind`` picks the gRPC code."""

    kind: str  # validation | unknown_operation | not_found | conflict
    status: int
    title: str
    detail: str
    errors: list[FieldError] = field(default_factory=list)


def problem_for(exc: BaseException) -> Problem | None:
    """Describe a refusal the client can fix; None for anything else (an internal error)."""
    if isinstance(exc, ValidationError):
        name = exc.field or "body"
        return Problem("validation", 400, "Validation failed", f"{name}: {exc.message}",
                       [FieldError(name, exc.message)])
    if isinstance(exc, UnknownCommandError):
        return Problem("unknown_operation", 404, f"Unknown {exc.kind}", str(exc))
    if isinstance(exc, UnknownWorkflowError):
        return Problem("not_found", 404, "Unknown workflow", str(exc))
    if isinstance(exc, NotFoundError):
        return Problem("not_found", 404, "Not found", str(exc))
    if isinstance(exc, (ConflictError, ConcurrencyError)):
        return Problem("conflict", 409, "Conflict", str(exc))
    return None
