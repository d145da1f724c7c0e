"""Command and query handlers, their registry and payload decoding."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .config import split_validation_error
from .errors import UnknownCommandError, ValidationError
from .events import RecordedEvent
from .workflow import Workflow


def operation_name(cls: type) -> str:
    """``AddUser`` / ``AddUserCommand`` -> ``addUser``; ``GetUserQuery`` -> ``getUser``."""
    name = re.sub(r"(Command|Query)$", "", cls.__name__) or cls.__name__
    return name[:1].lower() + name[1:]


@dataclass(frozen=True)
class Handler:
    kind: str  # "command" | "query"
    name: str
    payload_type: type
    func: Callable[..., Any]
    workflow: type[Workflow] | None = None
    description: str = ""

    @property
    def label(self) -> str:
        """How errors name the handler: ``command "addUser" (handler app.domain.add_user)``."""
        func = self.func
        qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
        module = getattr(func, "__module__", None)
        return f'{self.kind} "{self.name}" (handler {f"{module}." if module else ""}{qualname})'

    @property
    def return_type(self) -> Any:
        hints = inspect.get_annotations(self.func, eval_str=True)
        return hints.get("return", Any)


@dataclass
class CommandResult:
    """What ``host.send`` returns: the handler's value, the workflow id and the appended events."""

    value: Any
    workflow_id: str | None
    events: list[RecordedEvent] = field(default_factory=list)


class HandlerRegistry:
    def __init__(self) -> None:
        self.commands: dict[str, Handler] = {}
        self.queries: dict[str, Handler] = {}
        self._by_type: dict[type, Handler] = {}

    def add(self, handler: Handler) -> None:
        table = self.commands if handler.kind == "command" else self.queries
        if handler.name in table:
            raise ValueError(f'{handler.kind} "{handler.name}" already has a handler')
        if handler.payload_type in self._by_type:
            raise ValueError(f"{handler.payload_type.__name__} already has a handler")
        table[handler.name] = handler
        self._by_type[handler.payload_type] = handler

    def for_payload(self, payload: Any, kind: str) -> Handler:
        handler = self._by_type.get(type(payload))
        if handler is None or handler.kind != kind:
            table = self.commands if kind == "command" else self.queries
            raise UnknownCommandError(kind, type(payload).__name__,
                                      [h.payload_type.__name__ for h in table.values()])
        return handler

    def named(self, name: str, kind: str) -> Handler:
        table = self.commands if kind == "command" else self.queries
        try:
            return table[name]
        except KeyError:
            raise UnknownCommandError(kind, name, table) from None

    def decode(self, handler: Handler, data: bytes | str | dict[str, Any] | None) -> Any:
        """Decode a payload (JSON bytes/str or a mapping) into the handler's Struct.
        Raises ValidationError naming the field."""
        try:
            if data is None or data == b"" or data == "":
                return msgspec.convert({}, handler.payload_type)
            if isinstance(data, (bytes, str)):
                return msgspec.json.decode(data, type=handler.payload_type)
            return msgspec.convert(data, handler.payload_type, strict=False)
        except msgspec.ValidationError as exc:
            path, message = split_validation_error(exc)
            raise ValidationError(path, message) from None
        except msgspec.DecodeError as exc:
            raise ValidationError("", f"malformed JSON: {exc}") from None
