"""Stream entries <-> events: an entry's fields are ``e`` (the envelope, a JSON array readable
with redis-cli), ``d`` (the payload bytes) and ``t`` (the event's timestamp in ms, for retention
by age)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from svrnty_events.events import RecordedEvent


class Envelope(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    """An entry's field ``e``. Trailing defaults are left out, so an event of partition 0
    without headers is stored as before partitions existed."""

    id: str
    type: str
    corr: str
    ts: datetime
    ct: str
    h: dict[str, str] = {}
    p: int = 0


_encode = msgspec.json.Encoder().encode
decode_envelope = msgspec.json.Decoder(Envelope).decode
_headers = msgspec.json.Decoder(dict[str, str])


def envelope(e: RecordedEvent, partition: int) -> bytes:
    return _encode(Envelope(e.id, e.type, e.correlation_id, e.timestamp, e.content_type,
                            e.headers, partition))


def from_envelope(stream: str, seq: int, env: bytes, data: bytes) -> RecordedEvent:
    v = decode_envelope(env)
    return RecordedEvent(v.id, stream, v.type, v.corr, v.ts, data, seq, v.ct, v.h, v.p)


def event(stream: str, seq: int, flat: list[Any]) -> RecordedEvent:
    """An entry's event from its flat field list (name, value, name, value...)."""
    if flat[0] == b"e" and flat[2] == b"d":  # as the append script writes it
        return from_envelope(stream, seq, flat[1], flat[3])
    it = iter(flat)
    return event_from(stream, seq, dict(zip(it, it)))


def event_from(stream: str, seq: int, f: dict[bytes, bytes]) -> RecordedEvent:
    env = f.get(b"e")
    if env is not None:
        return from_envelope(stream, seq, env, f[b"d"])
    # entries written with one field per envelope attribute (before partitions: partition 0)
    headers = f.get(b"h")
    return RecordedEvent(
        id=f[b"id"].decode(), stream=stream, type=f[b"type"].decode(),
        correlation_id=f[b"corr"].decode(), timestamp=datetime.fromisoformat(f[b"ts"].decode()),
        data=f[b"data"], sequence=seq, content_type=f[b"ct"].decode(),
        headers=_headers.decode(headers) if headers else {})


def seq_of(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])
