"""Events: the user's event types and the recorded envelope every store keeps."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, ClassVar

import msgspec

JSON = "application/json"

_encoder = msgspec.json.Encoder()


class Event(msgspec.Struct, kw_only=True):
    """Base class of user event types. The event's type name is the class name.

    Subclasses are registered by name as they are defined, so delivered events decode back
    to their class::

        class UserAdded(Event):
            user_id: int
            name: str

    Set ``__event_type__ = "name"`` on a class to give it another type name. When several
    classes of the process share a type name, a payload decodes into the newest one it fits;
    a host decodes into the classes it knows first (see :class:`EventTypes`).
    """

    _registry: ClassVar[dict[str, list[type[Event]]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Event._registry.setdefault(event_type_name(cls), []).append(cls)


class EventTypes:
    """Event classes by type name: what a host (or a remote client) decodes payloads into.

    Classes added here win over the process-wide registry of Event subclasses, so two modules
    defining a class of the same name cannot change how each other's deliveries decode. Two
    different classes with one type name in the same registry are an error: give one of them
    an ``__event_type__`` class attribute.
    """

    def __init__(self, classes: Any = ()) -> None:
        self._by_name: dict[str, type] = {}
        for cls in classes:
            self.add(cls)

    def add(self, cls: type) -> None:
        name = event_type_name(cls)
        existing = self._by_name.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(
                f'event type "{name}" names both {existing.__module__}.{existing.__qualname__} '
                f"and {cls.__module__}.{cls.__qualname__}; set __event_type__ on one of them")
        self._by_name[name] = cls

    def get(self, name: str) -> type | None:
        return self._by_name.get(name) or lookup_event_type(name)

    def decode(self, type_name: str, data: bytes, content_type: str = JSON) -> Any:
        return decode_payload(type_name, data, content_type, self._by_name.get(type_name))

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def classes(self) -> list[type]:
        return list(self._by_name.values())


def event_type_name(cls: type) -> str:
    return getattr(cls, "__event_type__", None) or cls.__name__


def lookup_event_type(name: str) -> type[Event] | None:
    """The newest Event subclass with this type name, if any."""
    classes = Event._registry.get(name)
    return classes[-1] if classes else None


class RecordedEvent(msgspec.Struct, frozen=True, gc=False):
    """The envelope of an event in a stream.

    ``data`` is the encoded payload (JSON unless ``content_type`` says otherwise), so any store
    can keep it and any language can read it. ``sequence`` is assigned by the store on append
    (position in the stream, from 0); it is -1 before that.
    """

    id: str
    stream: str
    type: str
    correlation_id: str
    timestamp: datetime
    data: bytes
    sequence: int = -1
    content_type: str = JSON
    headers: dict[str, str] = {}

    def decode(self, type: type | None = None) -> Any:
        """Decode ``data``: into ``type`` if given, else into the registered class of
        ``self.type``, else into plain JSON values."""
        return decode_payload(self.type, self.data, self.content_type, type)


_decoders: dict[type, msgspec.json.Decoder] = {}
_plain_decoder = msgspec.json.Decoder()


def decode_payload(type_name: str, data: bytes, content_type: str = JSON,
                   cls: type | None = None) -> Any:
    if content_type != JSON:
        return data
    if cls is not None:
        return _decoder(cls).decode(data)
    candidates = Event._registry.get(type_name)
    if not candidates:
        return _plain_decoder.decode(data)
    if len(candidates) == 1:
        return _decoder(candidates[0]).decode(data)
    # same-named classes: the newest whose fields match the payload's keys exactly, else the
    # newest that decodes it
    raw = _plain_decoder.decode(data)
    keys = set(raw) if isinstance(raw, dict) else None
    ordered = list(reversed(candidates))
    if keys is not None:
        for candidate in ordered:
            fields = msgspec.structs.fields(candidate)
            names = {f.encode_name for f in fields}
            required = {f.encode_name for f in fields if f.required}
            if required <= keys <= names:
                return msgspec.convert(raw, candidate)
    for candidate in ordered[:-1]:
        try:
            return _decoder(candidate).decode(data)
        except msgspec.ValidationError:
            continue
    return _decoder(ordered[-1]).decode(data)


def _decoder(cls: type) -> msgspec.json.Decoder:
    decoder = _decoders.get(cls)
    if decoder is None:
        decoder = _decoders[cls] = msgspec.json.Decoder(cls)
    return decoder


def encode_payload(event: Any) -> bytes:
    return _encoder.encode(event)


def new_event_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def record(event: Any, *, stream: str, correlation_id: str, headers: dict[str, str] | None = None,
           event_id: str | None = None, timestamp: datetime | None = None) -> RecordedEvent:
    """Build the envelope of a user event (not yet appended: ``sequence`` is -1)."""
    return RecordedEvent(
        id=event_id or new_event_id(),
        stream=stream,
        type=event_type_name(type(event)),
        correlation_id=correlation_id,
        timestamp=timestamp or utcnow(),
        data=encode_payload(event),
        headers=headers or {},
    )
