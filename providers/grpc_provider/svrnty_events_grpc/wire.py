"""The bytes of the Subscribe responses that carry events, written without protobuf objects.

Building a ``DeliveredEvent`` message (its ``Timestamp`` and ``headers`` map included), then an
``EventBatch`` of them, then its bytes costs about 5 µs per event with the upb protobuf runtime,
as much as the subscription engine's work for the event; writing the encoding directly costs
about 1.5 µs, because most fields repeat from event to event (type, correlation id, stream,
content type, partition, version: encoded once per combination) and only the id, sequence,
timestamp, headers, data and attempt are new. The bytes are exactly a ``SubscribeResponse`` with ``events`` set
(``protos/svrnty/events/v1/events.proto``), so nothing changes on the wire: any protobuf library
reads them (the tests parse them back with the generated classes). Fields at their default value
are left out, as protobuf does.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from svrnty_events.upcasting import VERSION_HEADER

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SMALL = [bytes((i,)) for i in range(128)]
#: most entries of each cache below (cleared when full: they only save work)
_CACHE_SIZE = 4096


def varint(n: int) -> bytes:
    """The base-128 varint of ``n`` (negative: as a 64-bit two's complement, like int64)."""
    if n < 0x80:
        if n >= 0:
            return _SMALL[n]
        n += 1 << 64
    elif n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    elif n < 0x200000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14))
    elif n < 0x10000000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21))
    elif n < 0x800000000:  # Timestamp.nanos, 32-bit sizes
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80,
                      n >> 21 & 0x7F | 0x80, n >> 28))
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _text(tag: bytes, value: str) -> bytes:
    b = value.encode()
    return tag + varint(len(b)) + b if b else b""


# DeliveredEvent field tags: (field number << 3) | wire type (0 varint, 2 length-delimited)
_ID, _SEQUENCE, _TIMESTAMP, _ATTEMPT = b"\x0a", b"\x28", b"\x32", b"\x38"
_HEADER, _DATA = b"\x42", b"\x4a"

#: (type, correlation_id, stream, content_type, partition, version) -> their encoded fields
_shapes: dict[tuple[str, str, str, str, int, int], bytes] = {}
#: Timestamp.seconds -> its encoded field (events of one second share it)
_seconds: dict[int, bytes] = {}


def _shape(key: tuple[str, str, str, str, int, int]) -> bytes:
    type_, correlation_id, stream, content_type, partition, version = key
    b = b"".join((_text(b"\x12", type_), _text(b"\x1a", correlation_id),
                  _text(b"\x22", stream), _text(b"\x52", content_type),
                  b"\x58" + varint(partition) if partition else b"",
                  b"\x60" + varint(version) if version else b""))
    if len(_shapes) >= _CACHE_SIZE:
        _shapes.clear()
    _shapes[key] = b
    return b


def _second(s: int) -> bytes:
    b = b"\x08" + varint(s) if s else b""
    if len(_seconds) >= 64:
        _seconds.clear()
    _seconds[s] = b
    return b


def _headers(headers: dict[str, str]) -> bytes:
    parts = []
    for key, value in headers.items():
        k, v = key.encode(), value.encode()
        entry = b"\x0a" + varint(len(k)) + k + b"\x12" + varint(len(v)) + v
        parts += (_HEADER, varint(len(entry)), entry)
    return b"".join(parts)


def events_messages(deliveries: Iterable[Any], limit: int
                    ) -> tuple[list[bytes], list[tuple[Any, int]]]:
    """``SubscribeResponse`` messages with ``events`` set that carry ``deliveries`` (objects
    with ``record`` and ``attempt``: an engine ``Delivery``) in order, each at most ``limit``
    bytes, and the deliveries too large for any message with their encoded size.

    One loop with the encoding written out: a function call per field would cost more than the
    field's bytes."""
    messages: list[bytes] = []
    too_large: list[tuple[Any, int]] = []
    parts: list[bytes] = [b"", b""]  # the response's tag and length go first
    size = 0
    shapes, seconds, small, epoch = _shapes, _seconds, _SMALL, _EPOCH
    for d in deliveries:
        record = d.record
        headers = record.headers
        version = record.version if headers and VERSION_HEADER in headers else 1
        key = (record.type, record.correlation_id, record.stream, record.content_type,
               record.partition, version)
        shape = shapes.get(key) or _shape(key)
        event_id = record.id.encode()
        n = len(event_id)
        dt = record.timestamp
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        delta = dt - epoch
        sec = delta.days * 86400 + delta.seconds
        micros = delta.microseconds
        ts = (seconds.get(sec) or _second(sec)) + (b"\x10" + varint(micros * 1000) if micros
                                                    else b"")
        data = record.data
        sequence = record.sequence
        attempt = d.attempt
        body = b"".join((
            _ID, small[n] if n < 128 else varint(n), event_id, shape,
            _SEQUENCE + varint(sequence) if sequence else b"",
            _TIMESTAMP, small[len(ts)], ts,  # a Timestamp is at most 17 bytes
            _headers(headers) if headers else b"",
            _DATA + varint(len(data)) + data if data else b"",
            _ATTEMPT + varint(attempt) if attempt else b""))
        n = len(body)
        frame = b"\x0a" + (small[n] if n < 128 else varint(n))  # EventBatch.events
        framed = len(frame) + n
        if size + framed > limit:
            if framed > limit:
                too_large.append((d, framed))
                continue
            messages.append(_response(parts, size))
            parts, size = [b"", b""], 0
        parts += (frame, body)
        size += framed
    if size:
        messages.append(_response(parts, size))
    return messages, too_large


def _response(parts: list[bytes], size: int) -> bytes:
    """A ``SubscribeResponse`` with ``events``: ``parts[2:]`` are the content of the
    ``EventBatch`` (its events, framed)."""
    parts[0], parts[1] = b"\x12", varint(size)  # SubscribeResponse.events
    return b"".join(parts)
