"""How values are kept in rows: times as integer microseconds, events as columns, and the
helpers for ``IN (...)`` lists. Shared by the log and the delivery state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import msgspec

from svrnty_events.events import RecordedEvent
from svrnty_events.store import ClaimFilter

T = TypeVar("T")

_CHUNK = 500  # ids per "IN (...)" query, below SQLite's variable limit
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
headers_encoder = msgspec.json.Encoder()
_headers_decoder = msgspec.json.Decoder(dict[str, str])
_json = msgspec.json.Encoder()
_filter_decoder = msgspec.json.Decoder(ClaimFilter)
#: whole events, as dead letters and as pending rows keep them
pack_event = msgspec.msgpack.Encoder().encode
unpack_event = msgspec.msgpack.Decoder(RecordedEvent).decode

#: the columns :func:`event` reads, in its order (``E_COLUMNS``: of a table aliased ``e``)
_FIELDS = ("seq", "id", "type", "correlation_id", "ts", "data", "content_type", "headers", "part")
EVENT_COLUMNS = ", ".join(_FIELDS)
E_COLUMNS = ", ".join(f"e.{c}" for c in _FIELDS)


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch: exact, and ordered like the datetimes."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _US


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def now_us() -> int:
    return to_us(datetime.now(timezone.utc))


def event(row: Sequence[Any], stream: str) -> RecordedEvent:
    """The event of a row of :data:`EVENT_COLUMNS`."""
    headers = row[7]
    return RecordedEvent(id=row[1], stream=stream, type=row[2], correlation_id=row[3],
                         timestamp=from_us(row[4]), data=row[5], sequence=row[0],
                         content_type=row[6],
                         headers=_headers_decoder.decode(headers) if headers else {},
                         partition=row[8])


def encode_filter(f: ClaimFilter | None) -> bytes | None:
    return None if f is None or f.empty else _json.encode(f)


def decode_filter(blob: bytes | None) -> ClaimFilter | None:
    return None if blob is None else _filter_decoder.decode(blob)


def filter_sql(f: ClaimFilter | None) -> tuple[str, str, list[Any]]:
    """A claim filter as SQL on ``events``: the index that reads only matching rows (one
    correlation id, else one partition, else none: the table in sequence order), the
    ``AND ...`` conditions and their arguments."""
    if f is None:
        return "", "", []
    sql, args = "", []
    if f.event_types is not None:
        types = sorted(f.event_types)
        sql += f" AND type IN ({marks(len(types))})"
        args += types
    if f.correlation_id is not None:
        sql += " AND correlation_id = ?"
        args.append(f.correlation_id)
    if f.partition is not None:
        sql += " AND part = ?"
        args.append(f.partition)
    index = "events_by_correlation" if f.correlation_id is not None else \
        "events_by_part" if f.partition is not None else ""
    return (f" INDEXED BY {index}" if index else ""), sql, args


def chunks(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def marks(n: int) -> str:
    return ",".join("?" * n)
