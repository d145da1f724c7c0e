"""What the HTTP API and the gRPC CommandService share: running a named command or query, and
turning its errors into one description (a :class:`Problem`) that each transport renders in its
own way (RFC 7807 problem details, gRPC status codes)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from svrnty_events import EventStreamingHost
from svrnty_events.commands import CommandResult
from svrnty_events.errors import (
    ConcurrencyError,
    UnknownCommandError,
    UnknownWorkflowError,
    WorkflowClosedError,
    ValidationError,
)

from .domain import ConflictError, NotFoundError, continued_workflow


async def run_command(host: EventStreamingHost, name: str, payload: Any,
                      workflow_id: str | None = None) -> CommandResult:
    """Decode ``payload`` for command ``name`` and send it. The command continues a workflow when
    ``workflow_id`` is given or when the command names one (``acceptInvitation`` carries the
    invitation id); otherwise it starts a new one. Raises ValidationError naming the field."""
    handler = host.handlers.named(name, "command")
    command = host.handlers.decode(handler, whole_numbers(payload))
    named = continued_workflow(command)
    if workflow_id and named and workflow_id != named:
        raise ValidationError(type(command).continues, contradicting_workflow(named, workflow_id))
    return await host.send(command, workflow_id or named)


async def run_query(host: EventStreamingHost, name: str, payload: Any) -> Any:
    return await host.query_named(name, whole_numbers(payload))


def contradicting_workflow(named: str, workflow_id: str) -> str:
    """The refusal of a command whose field names one workflow and whose request another."""
    return (f"names workflow {named}, but the request's workflow id (Workflow-Id) is "
            f"{workflow_id}; send only one, or the same id in both")


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def whole_numbers(payload: Any) -> Any:
    """A JSON body with every whole-number float (``30.0``) turned into an integer: JSON
    Schema's ``integer`` is any number without a fraction, so the schemas allow ``30.0`` where
    the Structs say ``int``. A ``float`` field still takes the integer. Anything that is not
    JSON bytes is returned as it is (a mapping is converted leniently by the kernel already,
    and malformed JSON is the kernel's to report)."""
    if not isinstance(payload, (bytes, str)) or not payload:
        return payload
    try:
        value = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return payload
    return msgspec.json.encode(_integral(value))


#: msgspec quotes a pattern with repr() ("matching regex '^[^@\\t...'"), doubling backslashes
_QUOTED_REGEX = re.compile(r"""(matching regex )('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def plain_regex(message: str) -> str:
    """``message`` with a quoted pattern shown as the schema has it (``\\s``, not ``\\\\s``)."""
    def unquote(m: re.Match[str]) -> str:
        try:
            return f"{m.group(1)}`{ast.literal_eval(m.group(2))}`"
        except (ValueError, SyntaxError):
            return m.group(0)
    return _QUOTED_REGEX.sub(unquote, message)


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
        message = plain_regex(exc.message)
        return Problem("validation", 400, "Validation failed", f"{name}: {message}",
                       [FieldError(name, message)])
    if isinstance(exc, UnknownCommandError):
        return Problem("unknown_operation", 404, f"Unknown {exc.kind}", str(exc))
    if isinstance(exc, UnknownWorkflowError):
        return Problem("not_found", 404, "Unknown workflow", str(exc))
    if isinstance(exc, NotFoundError):
        return Problem("not_found", 404, "Not found", str(exc))
    if isinstance(exc, (ConflictError, ConcurrencyError, WorkflowClosedError)):
        return Problem("conflict", 409, "Conflict", str(exc))
    return None
