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
    """

    _registry: ClassVar[dict[str, type[Event]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Event._registry[event_type_name(cls)] = cls


def event_type_name(cls: type) -> str:
    return getattr(cls, "__event_type__", None) or cls.__name__


def lookup_event_type(name: str) -> type[Event] | None:
    return Event._registry.get(name)


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
    cls = cls or lookup_event_type(type_name)
    if cls is None:
        return _plain_decoder.decode(data)
    decoder = _decoders.get(cls)
    if decoder is None:
        decoder = _decoders[cls] = msgspec.json.Decoder(cls)
    return decoder.decode(data)


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
