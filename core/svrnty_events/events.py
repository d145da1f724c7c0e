"""Events: the user's event types and the recorded envelope every store keeps."""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, ClassVar

import msgspec

from .errors import DuplicateEventTypeError
from .upcasting import VERSION_HEADER, Upcasters

JSON = "application/json"

_encoder = msgspec.json.Encoder()


class _EventMeta(type(msgspec.Struct)):  # type: ignore[misc]
    """Takes the ``version=`` class keyword of Event subclasses (msgspec's own metaclass
    refuses keywords it does not know)."""

    def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any],
                version: int = 1, **kwargs: Any) -> Any:
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise TypeError(f"class {name}: version must be an integer >= 1, got {version!r}")
        cls = super().__new__(mcls, name, bases, namespace, **kwargs)
        cls.__event_version__ = version
        if version != 1:
            _EventMeta.versioned = True
        return cls

    #: an Event class of a version other than 1 was defined in this process
    versioned = False


class Event(msgspec.Struct, kw_only=True, metaclass=_EventMeta):
    """Base class of user event types. The event's type name is the class name.

    Subclasses are registered by type name as they are defined, so delivered events decode
    back to their class::

        class UserAdded(Event):
            user_id: int
            name: str

    ``class UserAdded(Event, version=2)`` declares the version of the class (default 1); it is
    recorded with each event, and upcasters (``EventStreaming.upcaster``) turn stored events
    of older versions into this one before they are decoded.

    Set ``__event_type__ = "name"`` on a class to give it another type name. A type name
    belongs to one class: defining a second class of the same type name in another module
    raises :class:`~svrnty_events.errors.DuplicateEventTypeError` naming both (events carry
    only their type name, so consumers could not tell them apart); so does a second class of
    that name elsewhere in the same module. Defining the same class again (a reload, a REPL, a
    class inside a function called twice) replaces the earlier definition.
    """

    _registry: ClassVar[dict[str, type[Event]]] = {}
    __event_version__: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = event_type_name(cls)
        _check_one_definition(name, Event._registry.get(name), cls)
        Event._registry[name] = cls


class EventTypes:
    """Event classes by type name: what a host (or a remote client) decodes payloads into.

    Classes added here win over the process-wide registry of Event subclasses (they may also be
    plain msgspec Structs). Two classes of one type name are an error as in the registry
    (DuplicateEventTypeError, a ValueError); a redefinition of a class replaces it.
    """

    def __init__(self, classes: Any = ()) -> None:
        self._by_name: dict[str, type] = {}
        self._versioned = False  # a class of a version other than 1 was added
        #: upcasters of stored payloads, applied by :meth:`upcast`
        self.upcasters = Upcasters()
        for cls in classes:
            self.add(cls)

    def add(self, cls: type) -> None:
        name = event_type_name(cls)
        _check_one_definition(name, self._by_name.get(name), cls)
        self._by_name[name] = cls
        if event_version(cls) != 1:
            self._versioned = True

    def get(self, name: str) -> type | None:
        return self._by_name.get(name) or lookup_event_type(name)

    def decode(self, type_name: str, data: bytes, content_type: str = JSON) -> Any:
        return decode_payload(type_name, data, content_type, self._by_name.get(type_name))

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    @property
    def all_version_one(self) -> bool:
        """True while every class known here, or to the process-wide registry, is version 1
        (what lets a claim skip the version check of each event's class)."""
        return not (self._versioned or _EventMeta.versioned)

    def current_version(self, name: str) -> int | None:
        """The version of the class of this type name, None if no class is known."""
        cls = self.get(name)
        return None if cls is None else event_version(cls)

    def upcast(self, record: RecordedEvent) -> RecordedEvent:
        """``record`` as the current version of its class: unchanged when it is that version
        already, else with its payload run through the upcasters and its version header set.
        Raises EventVersionError (naming type, versions and event id) when it is newer than
        the class or no upcaster chain leads there."""
        return self.upcasters.upcast(record, self.current_version(record.type))

    def names(self) -> set[str]:
        """Type names known here or to the process-wide registry of Event subclasses."""
        return {*self._by_name, *Event._registry}

    def classes(self) -> list[type]:
        return list(self._by_name.values())


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _source_file(cls: type) -> str | None:
    return getattr(sys.modules.get(cls.__module__), "__file__", None)


def _check_one_definition(name: str, existing: type | None, cls: type) -> None:
    """Raise DuplicateEventTypeError unless ``cls`` may take type name ``name`` from
    ``existing``: the same class, or a redefinition of it (same module, and the same qualified
    name or a class defined inside a function). The same file imported under two module names
    counts as one module."""
    if existing is None or existing is cls:
        return
    file = _source_file(cls)
    same_module = existing.__module__ == cls.__module__ or \
        (file is not None and file == _source_file(existing))
    if same_module and (existing.__qualname__ == cls.__qualname__
                        or "<locals>" in existing.__qualname__
                        or "<locals>" in cls.__qualname__):
        return
    raise DuplicateEventTypeError(name, _qualified_name(existing), _qualified_name(cls))


def event_version(cls: type) -> int:
    """The declared version of an event class (1 when it declares none)."""
    return getattr(cls, "__event_version__", 1)


def event_type_name(cls: type) -> str:
    return getattr(cls, "__event_type__", None) or cls.__name__


def lookup_event_type(name: str) -> type[Event] | None:
    """The Event subclass of this type name, if any."""
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
    #: partition of the stream, fixed on append from the correlation id (see partition_of)
    partition: int = 0

    @property
    def version(self) -> int:
        """The version of the event's class it was written with (1 when not recorded)."""
        v = self.headers.get(VERSION_HEADER) if self.headers else None
        return int(v) if v and v.isdigit() else 1

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
    cls = Event._registry.get(type_name)
    if cls is None:
        return _plain_decoder.decode(data)
    return _decoder(cls).decode(data)


def _decoder(cls: type) -> msgspec.json.Decoder:
    decoder = _decoders.get(cls)
    if decoder is None:
        decoder = _decoders[cls] = msgspec.json.Decoder(cls)
    return decoder


def partition_of(correlation_id: str, partitions: int) -> int:
    """The partition of a correlation id in a stream of ``partitions`` partitions: CRC-32
    (zlib, IEEE) of its UTF-8 bytes modulo ``partitions``. Every store and host computes it
    the same way, so one workflow's events always land in one partition."""
    if partitions <= 1:
        return 0
    return zlib.crc32(correlation_id.encode()) % partitions


def encode_payload(event: Any) -> bytes:
    return _encoder.encode(event)


def new_event_id() -> str:
    """A random (version 4) UUID in its canonical text form, as ``str(uuid.uuid4())`` gives,
    built from the 16 random bytes directly: ``uuid.UUID``'s checks and ``__str__`` cost
    three times what the bytes do, once per event."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


#: a hex digit -> the digit with the RFC 4122 variant bits (10xx) set
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def record(event: Any, *, stream: str, correlation_id: str, headers: dict[str, str] | None = None,
           event_id: str | None = None, timestamp: datetime | None = None) -> RecordedEvent:
    """Build the envelope of a user event (not yet appended: ``sequence`` is -1)."""
    version = event_version(type(event))
    headers = dict(headers) if headers else {}  # its own: plugins may add to it
    if version != 1:
        headers = {**headers, VERSION_HEADER: str(version)}
    return RecordedEvent(
        id=event_id or new_event_id(),
        stream=stream,
        type=event_type_name(type(event)),
        correlation_id=correlation_id,
        timestamp=timestamp or utcnow(),
        data=encode_payload(event),
        headers=headers,
    )


def type_names(types: Iterable[type | str] | None) -> list[str]:
    """Event type names of classes (or names, kept as they are)."""
    return [t if isinstance(t, str) else event_type_name(t) for t in (types or ())]
