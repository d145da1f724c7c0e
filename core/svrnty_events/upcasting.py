"""Event versions and upcasters: stored events of an older version of their class are turned
into the current version before they are decoded, so a renamed or added field does not break
the events a stream kept for years.

An event class declares its version (``class UserAdded(Event, version=2)``); the version is
recorded with each event in its envelope (the :data:`VERSION_HEADER` header, which every store
keeps; an event without it is version 1, as everything written before versions existed is).
An upcaster is a function from the payload (a dict) of version n to the payload of version
n + 1, registered with ``@streaming.upcaster("UserAdded", from_version=1)``; chains run in
order. The subscription engine applies them to every claimed event before it is handed over
(in-process consumers, catch-up, dead-letter replay and remote consumers alike), and
:func:`~svrnty_events.replay.rebuild` / :func:`~svrnty_events.replay.iter_events` to what they
read. An event that cannot be brought to the current version raises
:class:`~svrnty_events.errors.EventVersionError`, and the engine dead-letters it with that
reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from .errors import EventVersionError, UpcasterError

if TYPE_CHECKING:
    from .events import RecordedEvent

#: the envelope header that records an event's version when it is not 1 (every store keeps it
#: as it keeps headers; an event without it, as every event written before versions, is 1)
VERSION_HEADER = "svrnty-event-version"

JSON = "application/json"

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()


class Upcasters:
    """Upcasters by event type name and the version they read."""

    def __init__(self) -> None:
        self._steps: dict[str, dict[int, Upcaster]] = {}

    def add(self, event_type: str, from_version: int, func: Upcaster) -> None:
        """Register ``func``: payload of ``event_type`` version ``from_version`` -> payload of
        version ``from_version + 1``. Raises UpcasterError for a version below 1 or a second
        upcaster of the same step."""
        if not isinstance(event_type, str) or not event_type:
            raise UpcasterError(f"upcaster {getattr(func, '__name__', func)!r}: the event type "
                                f"must be a type name (a non-empty str), got {event_type!r}")
        if not isinstance(from_version, int) or isinstance(from_version, bool) \
                or from_version < 1:
            raise UpcasterError(f'upcaster of "{event_type}": from_version must be an integer '
                                f">= 1, got {from_version!r}")
        steps = self._steps.setdefault(event_type, {})
        if from_version in steps and steps[from_version] is not func:
            raise UpcasterError(
                f'two upcasters of "{event_type}" from version {from_version}: '
                f"{_name(steps[from_version])} and {_name(func)}")
        steps[from_version] = func

    def __bool__(self) -> bool:
        return bool(self._steps)

    def upcast(self, record: RecordedEvent, current: int | None) -> RecordedEvent:
        """``record`` as version ``current`` of its class (None: no class is known here, so
        every upcaster registered for the type is applied in order). Raises EventVersionError
        when it is newer than ``current`` or a step is missing."""
        stored = record.version
        steps = self._steps.get(record.type)
        if current is None:
            if not steps or stored not in steps:
                return record
            current = stored
            while current in steps:
                current += 1
        if stored == current:
            return record
        if stored > current:
            raise EventVersionError(record.type, stored, current, record.id)
        missing = next((v for v in range(stored, current) if not steps or v not in steps), None)
        if missing is not None:
            raise EventVersionError(record.type, stored, current, record.id, missing)
        if record.content_type not in (JSON, ""):
            raise EventVersionError(record.type, stored, current, record.id, stored)
        assert steps is not None
        payload: Any = _decoder.decode(record.data)
        for version in range(stored, current):
            func = steps[version]
            try:
                payload = func(payload)
            except Exception as exc:
                raise UpcasterError(f'upcaster {_name(func)} of "{record.type}" from version '
                                    f"{version} failed on event {record.id}: "
                                    f"{type(exc).__name__}: {exc}") from exc
            if not isinstance(payload, dict):
                raise UpcasterError(f'upcaster {_name(func)} of "{record.type}" from version '
                                    f"{version} returned {type(payload).__name__}, not a dict "
                                    f"(event {record.id})")
        headers = {**record.headers, VERSION_HEADER: str(current)}
        return msgspec.structs.replace(record, data=_encoder.encode(payload), headers=headers)


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


def upcast_claimed(event_types: Any, taken: list[tuple[str, list[Any]]]
                   ) -> list[tuple[str, Any, Exception]]:
    """Bring what a claim brought (``(group, [Claimed])`` pairs) to the current versions, in
    place. The events that cannot be (EventVersionError, or an upcaster that failed) are taken
    out of their lists and returned with their group and error, for the dead-letter queue."""
    failed: list[tuple[str, Any, Exception]] = []
    # the common case costs a header lookup per event: no upcaster registered, stored at
    # version 1 (no version header) and the class is version 1 (or not known here)
    plain = not event_types.upcasters
    versions: dict[str, int] = {}
    # every class at version 1: only an event stored with a version header needs a look
    # (checked a whole claim at once)
    quick = plain and event_types.all_version_one
    for group, claimed in taken:
        if quick and not [c for c in claimed if VERSION_HEADER in c.event.headers]:
            continue
        bad: set[int] = set()
        for i, c in enumerate(claimed):
            if plain and VERSION_HEADER not in c.event.headers:
                current = versions.get(c.event.type)
                if current is None:
                    current = versions[c.event.type] = \
                        event_types.current_version(c.event.type) or 1
                if current == 1:
                    continue
            try:
                c.event = event_types.upcast(c.event)
            except (EventVersionError, UpcasterError) as exc:
                failed.append((group, c, exc))
                bad.add(i)
        if bad:
            claimed[:] = [c for i, c in enumerate(claimed) if i not in bad]
    return failed
