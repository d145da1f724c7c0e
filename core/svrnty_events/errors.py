"""Typed errors. Each carries what a user needs to fix the input."""

from __future__ import annotations

from collections.abc import Iterable


class SvrntyEventsError(Exception):
    """Base class of every error raised by svrnty-events."""


# --- plugins -------------------------------------------------------------------------------


class PluginError(SvrntyEventsError):
    """A plugin could not be loaded or registered."""


class PluginImportError(PluginError):
    def __init__(self, name: str, cause: BaseException) -> None:
        self.plugin = name
        super().__init__(f'Error importing plugin "{name}": {type(cause).__name__}: {cause}')


class PluginValidationError(PluginError):
    """A hook implementation does not match its hookspec."""


class DuplicateNameError(PluginError):
    def __init__(self, kind: str, name: str, first: str, second: str) -> None:
        self.kind, self.name, self.first, self.second = kind, name, first, second
        super().__init__(
            f'{kind} "{name}" is registered by two plugins: "{first}" and "{second}"; '
            f"uninstall one of them or select one with SVRNTY_EVENTS_PLUGINS"
        )


class UnknownPluginError(PluginError):
    def __init__(self, kind: str, name: str, available: Iterable[str], path: str = "",
                 source: str | None = None) -> None:
        self.kind, self.name, self.available = kind, name, sorted(available)
        self.path, self.source = path, source
        names = ", ".join(self.available) if self.available else "none installed"
        where = "".join(f"{p}: " for p in (source, path) if p)
        super().__init__(f'{where}unknown {kind} "{name}"; available: {names}')


class NoStoreInstalledError(PluginError):
    def __init__(self) -> None:
        super().__init__(
            "no event store plugin is installed; install one, for example "
            "`pip install svrnty-events-memory` (in-memory) or `pip install svrnty-events-sqlite`"
        )


# --- configuration and input ----------------------------------------------------------------


class ConfigError(SvrntyEventsError):
    """Invalid configuration. ``path`` names the offending field, e.g. ``subscriptions[1].mode``."""

    def __init__(self, path: str, message: str, *, source: str | None = None) -> None:
        self.path, self.message, self.source = path, message, source
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{path}: {message}" if path else f"{prefix}{message}")


class ValidationError(SvrntyEventsError):
    """A command or query payload does not match its type. ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}" if field else message)


class UnknownCommandError(SvrntyEventsError):
    def __init__(self, kind: str, name: str, available: Iterable[str]) -> None:
        self.kind, self.name = kind, name
        super().__init__(f'unknown {kind} "{name}"; available: {", ".join(sorted(available))}')


class UnknownWorkflowError(SvrntyEventsError):
    def __init__(self, workflow_id: str, stream: str) -> None:
        self.workflow_id, self.stream = workflow_id, stream
        super().__init__(
            f'cannot continue workflow "{workflow_id}": no event of it exists in stream "{stream}"'
        )


class UnknownStreamError(SvrntyEventsError):
    def __init__(self, name: str, available: Iterable[str] = ()) -> None:
        self.name = name
        super().__init__(f'unknown stream "{name}"; available: {", ".join(sorted(available))}')


class UnknownSubscriptionError(SvrntyEventsError):
    def __init__(self, name: str, available: Iterable[str] = ()) -> None:
        self.name = name
        super().__init__(
            f'unknown subscription "{name}"; available: {", ".join(sorted(available))}'
        )


class StreamScopeError(SvrntyEventsError):
    """Publishing from outside the service to a stream whose scope is ``internal``."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(f'stream "{stream}" is internal; only cross_service streams accept publish')


# --- delivery ------------------------------------------------------------------------------


class UnknownDeliveryError(SvrntyEventsError):
    """Ack or nack of an event id the consumer does not hold (never delivered, or already settled)."""

    def __init__(self, event_ids: Iterable[str]) -> None:
        self.event_ids = list(event_ids)
        super().__init__(f"consumer does not hold event(s): {', '.join(self.event_ids)}")


class ConsumerClosedError(SvrntyEventsError):
    """The consumer was closed (unsubscribed, heartbeat expired, or the host stopped)."""


class ConcurrencyError(SvrntyEventsError):
    """Optimistic concurrency conflict on append with an expected version."""

    def __init__(self, stream: str, correlation_id: str, expected: int, actual: int) -> None:
        self.stream, self.correlation_id = stream, correlation_id
        self.expected, self.actual = expected, actual
        super().__init__(
            f'stream "{stream}", workflow "{correlation_id}": expected version {expected}, '
            f"actual {actual}"
        )


class StoreUnavailableError(SvrntyEventsError):
    """The store cannot be reached. Retryable: the operation had no effect."""

    retryable = True


class StoreFormatError(SvrntyEventsError):
    """The store holds data this version cannot use (written by another version, or with
    another stream layout). The message says what was found and what to do."""

    def __init__(self, store: str, found: str, action: str) -> None:
        self.store, self.found, self.action = store, found, action
        super().__init__(f"{store}: {found}; {action}")


# --- events --------------------------------------------------------------------------------


class InvalidEventError(SvrntyEventsError, TypeError):
    """``workflow.emit`` got something that is not an instance of an ``Event`` subclass.
    ``handler`` names the command handler that emitted it (None outside one)."""

    def __init__(self, handler: str | None, value: object) -> None:
        self.handler, self.value = handler, value
        if isinstance(value, type):
            got = f"the class {value.__module__}.{value.__qualname__} itself, not an instance"
        else:
            text = repr(value)
            if len(text) > 80:
                text = text[:77] + "..."
            cls = type(value)
            name = cls.__qualname__ if cls.__module__ == "builtins" \
                else f"{cls.__module__}.{cls.__qualname__}"
            got = f"{name}: {text}"
        where = f"{handler}: " if handler else ""
        super().__init__(
            f"{where}workflow.emit() takes an instance of an Event subclass, got {got}")


class DuplicateEventTypeError(SvrntyEventsError, ValueError):
    """Two classes of different modules have one event type name. Events carry only their type
    name, so a consumer could not tell which class an event is."""

    def __init__(self, name: str, first: str, second: str) -> None:
        self.name, self.first, self.second = name, first, second
        super().__init__(
            f'event type "{name}" is defined twice: by {first} and by {second}; events carry '
            f'only their type name, so rename one class or set __event_type__ = "..." on it')


# --- long-running workflows -------------------------------------------------------------------


class ScheduleError(SvrntyEventsError, ValueError):
    """``workflow.schedule`` got a due time it cannot honour (in the past beyond the tolerance,
    a negative delay, both or neither of ``after`` and ``at``)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class SchedulesUnsupportedError(SvrntyEventsError):
    """The store does not keep scheduled events, so nothing could fire them."""

    def __init__(self, store: str, what: str) -> None:
        self.store = store
        super().__init__(f'{what} needs a store that keeps scheduled events; store "{store}" '
                         "does not (memory, sqlite, redis and postgres do)")


class WorkflowClosedError(SvrntyEventsError):
    """A command tried to continue a workflow that is closed: it expired
    (``workflow_expiry``) or has a terminal event (``terminal_event_types``)."""

    def __init__(self, workflow_id: str, stream: str, reason: str, closed_at: object) -> None:
        self.workflow_id, self.stream, self.reason, self.closed_at = \
            workflow_id, stream, reason, closed_at
        super().__init__(f'cannot continue workflow "{workflow_id}" of stream "{stream}": '
                         f"it {reason} at {closed_at}")


class WorkflowExpiredError(WorkflowClosedError):
    """Continuing a workflow past its stream's ``workflow_expiry``."""

    def __init__(self, workflow_id: str, stream: str, expired_at: object) -> None:
        self.expired_at = expired_at
        super().__init__(workflow_id, stream, "expired", expired_at)


class EventVersionError(SvrntyEventsError, ValueError):
    """A stored event cannot be read as the current version of its class: its version is newer
    than the class, or no chain of upcasters leads from it to the class's version. The
    delivery is dead-lettered with this message as the reason."""

    def __init__(self, event_type: str, stored: int, current: int, event_id: str,
                 missing: int | None = None) -> None:
        self.event_type, self.stored, self.current, self.event_id = \
            event_type, stored, current, event_id
        self.missing = missing
        if stored > current:
            why = (f"stored version {stored} is newer than version {current}, the newest "
                   f"this code knows")
        else:
            why = (f"no upcaster from version {missing} (stored version {stored}, the class "
                   f"is version {current}); register "
                   f'@streaming.upcaster("{event_type}", from_version={missing})')
        super().__init__(f'event {event_id} of type "{event_type}": {why}')


class UpcasterError(SvrntyEventsError, ValueError):
    """An upcaster was registered wrongly (a version below 1, twice for one step), or raised
    or returned something that is not a dict."""


class UnknownProjectionError(SvrntyEventsError, KeyError):
    def __init__(self, name: str, known: object = ()) -> None:
        self.name = name
        names = ", ".join(sorted(known)) or "none"  # type: ignore[call-overload]
        super().__init__(f'unknown projection "{name}"; projections: {names}')

    def __str__(self) -> str:
        return str(self.args[0])
