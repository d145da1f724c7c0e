"""How values are kept in rows: times as integer microseconds, events as columns, claim
filters as SQL. Shared by the log and the delivery state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

from svrnty_events.events import RecordedEvent
from svrnty_events.store import ClaimFilter

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
#: the server's clock, in seconds since the epoch (delivery deadlines, leases)
NOW = "extract(epoch from clock_timestamp())::float8"


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch: exact, and ordered like the datetimes."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _US


def from_us(us: int, _epoch: datetime = _EPOCH, _delta: type[timedelta] = timedelta
            ) -> datetime:
    # seconds and microseconds apart: timedelta(microseconds=...) of a large number is slower
    return _epoch + _delta(0, us // 1_000_000, us % 1_000_000)


def now_us() -> int:
    return to_us(datetime.now(timezone.utc))


def event(row: Sequence[Any], stream: str, at: int = 0) -> RecordedEvent:
    """The event of a row of :data:`EVENT_COLUMNS` from column ``at`` on."""
    headers = row[at + 7]
    return RecordedEvent(id=row[at + 1], stream=stream, type=row[at + 2],
                         correlation_id=row[at + 3], timestamp=from_us(row[at + 4]),
                         data=row[at + 5], sequence=row[at], content_type=row[at + 6],
                         headers=_headers_decoder.decode(headers) if headers else {},
                         partition=row[at + 8])


def encode_filter(f: ClaimFilter | None) -> bytes | None:
    return None if f is None or f.empty else _json.encode(f)


def decode_filter(blob: bytes | None) -> ClaimFilter | None:
    return None if blob is None else _filter_decoder.decode(blob)


def filter_sql(f: ClaimFilter | None, first: int, alias: str = "") -> tuple[str, list[Any]]:
    """A claim filter as ``AND ...`` conditions on ``events`` with parameters numbered from
    ``$first``, and their arguments. The planner reads one correlation id through
    ``events_by_correlation`` and one partition through ``events_by_part``."""
    if f is None:
        return "", []
    sql, args = "", []
    p = f"{alias}." if alias else ""
    if f.event_types is not None:
        args.append(sorted(f.event_types))
        sql += f" AND {p}type = ANY(${first + len(args) - 1}::text[])"
    if f.correlation_id is not None:
        args.append(f.correlation_id)
        sql += f" AND {p}correlation_id = ${first + len(args) - 1}"
    if f.partition is not None:
        args.append(f.partition)
        sql += f" AND {p}part = ${first + len(args) - 1}"
    return sql, args
