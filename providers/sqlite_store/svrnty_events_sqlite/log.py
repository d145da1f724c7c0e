"""The log of each stream: streams, append (with idempotence by event id and optimistic
concurrency per correlation id), reads, and retention (by count and age in bounded steps, with
the stream's retention policy for what a delivery group has not settled)."""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from svrnty_events.config import RetentionPolicy, StreamConfig, StreamType
from svrnty_events.errors import ConcurrencyError, UnknownStreamError
from svrnty_events.events import RecordedEvent, partition_of
from svrnty_events.store import ChangeNotifier, StreamInfo, batch_correlation, check_partitions

from .rows import (
    E_COLUMNS,
    EVENT_COLUMNS,
    chunks,
    decode_filter,
    event,
    filter_sql,
    headers_encoder,
    marks,
    now_us,
    pack_event,
    to_us,
)

if TYPE_CHECKING:
    from .database import Database
    from .store import SqliteStoreOptions

#: an ephemeral stream is trimmed of settled events once it holds this many
EPHEMERAL_TRIM_AT = 1024
_retention_log = logging.getLogger("svrnty_events.retention")
config_encoder = msgspec.json.Encoder()
stream_config_decoder = msgspec.json.Decoder(StreamConfig)

#: (retention_max_count, oldest timestamp kept in microseconds): what append checks
_Probe = tuple[int | None, int | None]


@dataclass
class Stream:
    id: int
    name: str
    config: StreamConfig
    notifier: ChangeNotifier = field(default_factory=ChangeNotifier)
    appended_since_trim: int = 0


class Log:
    """The streams part of :class:`~svrnty_events_sqlite.SqliteStore`."""

    options: SqliteStoreOptions
    path: str
    _db: Database
    _streams: dict[str, Stream]

    def _stream(self, name: str) -> Stream:
        try:
            return self._streams[name]
        except KeyError:
            raise UnknownStreamError(name, self._streams) from None

    async def create_stream(self, config: StreamConfig) -> None:
        stream_id = await self._db.transaction(_create_stream, config)
        s = self._streams.get(config.name)
        if s is None:
            s = self._streams[config.name] = Stream(stream_id, config.name, config)
        s.config = config
        await self._retain(s)  # the configuration may have tightened retention

    async def append(self, stream: str, events: Sequence[RecordedEvent], *,
                     expected_version: int | None = None) -> list[RecordedEvent]:
        s = self._stream(stream)
        if not events:
            return []
        batch_correlation(events, expected_version)
        out, added, needs_retention = await self._db.transaction(
            _append, s, list(events), expected_version, _probe(s))
        if added:
            s.appended_since_trim += added
            if needs_retention or (s.config.type is StreamType.EPHEMERAL
                                   and s.appended_since_trim >= EPHEMERAL_TRIM_AT // 2):
                await self._retain(s)
            s.notifier.bump()
        return out

    async def _retain(self, s: Stream) -> None:
        """Apply retention (count, age, ephemeral trim) in bounded steps: each step is one
        transaction of at most ``retention_step`` deleted events, so other operations run
        between steps."""
        s.appended_since_trim = 0
        lost: Counter[str] = Counter()
        more = True
        while more:
            more, step_lost = await self._db.transaction(
                _retention_step, s.id, _probe(s), s.config, self.options.retention_step)
            lost.update(step_lost)
        for subscription, count in lost.items():
            _retention_log.warning(
                "stream %s: retention removed %d event(s) that subscription %s had not "
                "settled; they are in its dead-letter queue (reason: retention)",
                s.name, count, subscription)

    async def read(self, stream: str, *, from_sequence: int = 0, limit: int | None = None,
                   correlation_id: str | None = None, event_types: Sequence[str] | None = None,
                   since: datetime | None = None) -> list[RecordedEvent]:
        s = self._stream(stream)
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? AND seq >= ?"
        args: list[Any] = [s.id, from_sequence]
        if correlation_id is not None:
            sql += " AND correlation_id = ?"
            args.append(correlation_id)
        if event_types:
            types = list(dict.fromkeys(event_types))
            sql += f" AND type IN ({marks(len(types))})"
            args.extend(types)
        if since is not None:
            sql += " AND ts >= ?"
            args.append(to_us(since))
        sql += " ORDER BY seq LIMIT ?"
        args.append(-1 if limit is None else limit)
        return [event(row, stream) for row in await self._db.query(sql, args)]

    async def correlation_version(self, stream: str, correlation_id: str) -> int:
        rows = await self._db.query("SELECT version FROM correlations WHERE stream_id = ? AND "
                                    "correlation_id = ?", (self._stream(stream).id,
                                                           correlation_id))
        return rows[0][0] if rows else 0

    async def stream_info(self, stream: str) -> StreamInfo:
        s = self._stream(stream)
        [(first, end)] = await self._db.query(
            "SELECT first_seq, next_seq FROM streams WHERE id = ?", (s.id,))
        return StreamInfo(name=stream, type=str(s.config.type), length=end - first,
                          first_sequence=first, next_sequence=end,
                          metadata={"store": "sqlite", "path": self.path})


# --- on the database thread ------------------------------------------------------------------

def _probe(s: Stream) -> _Probe:
    cfg = s.config
    cutoff = None if cfg.retention_max_age is None else \
        now_us() - int(cfg.retention_max_age * 1e6)
    return cfg.retention_max_count, cutoff


def _create_stream(conn: sqlite3.Connection, config: StreamConfig) -> int:
    row = conn.execute("SELECT config, first_seq, next_seq FROM streams WHERE name = ?",
                       (config.name,)).fetchone()
    if row is not None:
        stored = stream_config_decoder.decode(row[0]).partitions
        check_partitions(config.name, stored, config.partitions, has_events=row[2] > row[1])
    conn.execute("INSERT INTO streams (name, type, config) VALUES (?, ?, ?) "
                 "ON CONFLICT (name) DO UPDATE SET type = excluded.type, "
                 "config = excluded.config",
                 (config.name, str(config.type), config_encoder.encode(config)))
    return conn.execute("SELECT id FROM streams WHERE name = ?", (config.name,)).fetchone()[0]


def _append(conn: sqlite3.Connection, s: Stream, events: list[RecordedEvent],
            expected_version: int | None, probe: _Probe
            ) -> tuple[list[RecordedEvent], int, bool]:
    if expected_version is not None:
        correlation = events[0].correlation_id
        row = conn.execute("SELECT version FROM correlations WHERE stream_id = ? AND "
                           "correlation_id = ?", (s.id, correlation)).fetchone()
        actual = row[0] if row else 0
        if actual != expected_version:
            raise ConcurrencyError(s.name, correlation, expected_version, actual)
    first, next_seq = conn.execute("SELECT first_seq, next_seq FROM streams WHERE id = ?",
                                   (s.id,)).fetchone()
    # the usual case has no duplicate: insert at once, and look duplicates up only if the
    # unique index on event ids refuses the batch
    conn.execute("SAVEPOINT batch")
    try:
        out, rows, versions, seq = _insert(conn, s, events, next_seq, {})
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK TO batch")
        existing: dict[str, RecordedEvent] = {}
        for chunk in chunks(list({e.id for e in events})):
            for row in conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? "
                                    f"AND id IN ({marks(len(chunk))})", (s.id, *chunk)):
                existing[row[1]] = event(row, s.name)
        out, rows, versions, seq = _insert(conn, s, events, next_seq, existing)
    conn.execute("RELEASE batch")
    needs_retention = False
    if rows:
        conn.executemany("INSERT INTO correlations (stream_id, correlation_id, version) "
                         "VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET "
                         "version = version + excluded.version",
                         [(s.id, c, n) for c, n in versions.items()])
        conn.execute("UPDATE streams SET next_seq = ? WHERE id = ?", (seq, s.id))
        max_count, cutoff = probe
        if max_count is not None and seq - first > max_count:
            needs_retention = True
        elif cutoff is not None:
            oldest = conn.execute("SELECT ts FROM events WHERE stream_id = ? AND seq >= ? "
                                  "ORDER BY seq LIMIT 1", (s.id, first)).fetchone()
            needs_retention = oldest is not None and oldest[0] < cutoff
    return out, len(rows), needs_retention


def _insert(conn: sqlite3.Connection, s: Stream, events: list[RecordedEvent], seq: int,
            existing: dict[str, RecordedEvent]
            ) -> tuple[list[RecordedEvent], list[tuple[Any, ...]], dict[str, int], int]:
    """Insert the events not in ``existing`` (nor earlier in the batch) from ``seq`` on, each
    in its partition. Returns the recorded batch, the rows, appends per correlation id and the
    next sequence."""
    out: list[RecordedEvent] = []
    rows: list[tuple[Any, ...]] = []
    versions: dict[str, int] = {}
    replace = msgspec.structs.replace
    partitions = s.config.partitions
    for e in events:
        known = existing.get(e.id)
        if known is not None:
            out.append(known)
            continue
        part = partition_of(e.correlation_id, partitions)
        r = replace(e, sequence=seq, stream=s.name, partition=part)
        existing[e.id] = r
        out.append(r)
        rows.append((s.id, seq, e.id, e.type, e.correlation_id, to_us(e.timestamp), e.data,
                     e.content_type, headers_encoder.encode(e.headers) if e.headers else None,
                     part))
        versions[e.correlation_id] = versions.get(e.correlation_id, 0) + 1
        seq += 1
    if rows:
        conn.executemany("INSERT INTO events (stream_id, seq, id, type, correlation_id, ts, "
                         "data, content_type, headers, part) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return out, rows, versions, seq


def _retention_step(conn: sqlite3.Connection, stream_id: int, probe: _Probe,
                    config: StreamConfig, step: int) -> tuple[bool, Counter[str]]:
    """Delete up to ``step`` of the oldest events due to go, dead-lettering what a group had
    not settled (or, with the keep_unsettled policy, keeping it). Returns whether more are
    due, and the events dead-lettered per subscription."""
    first, end = conn.execute("SELECT first_seq, next_seq FROM streams WHERE id = ?",
                              (stream_id,)).fetchone()
    max_count, cutoff = probe
    target = first
    more_old = False  # the age scan saw only old events: more may follow
    if max_count is not None and end - first > max_count:
        target = end - max_count
    if cutoff is not None:
        # events are kept in timestamp order: drop the prefix older than the cutoff
        rows = conn.execute("SELECT seq, ts FROM events WHERE stream_id = ? AND seq >= ? "
                            "ORDER BY seq LIMIT ?", (stream_id, target, step)).fetchall()
        more_old = len(rows) == step
        for seq, ts in rows:
            if ts >= cutoff:
                more_old = False
                break
            target = seq + 1
    if config.type is StreamType.EPHEMERAL and end - first >= EPHEMERAL_TRIM_AT:
        target = max(target, _settled_floor(conn, stream_id, end))
    stop = min(target, first + step)
    more = stop < target or (more_old and stop == target)
    lost: Counter[str] = Counter()
    if stop > first:
        groups = conn.execute(
            "SELECT g.id, g.cursor, g.filter, s.id, s.name, g.name FROM groups g "
            "JOIN subscriptions s ON s.id = g.sub_id WHERE s.stream_id = ?",
            (stream_id,)).fetchall()
        if config.retention_policy is RetentionPolicy.KEEP_UNSETTLED:
            low = min((_unsettled(conn, stream_id, first, stop, *g[:3]) for g in groups),
                      default=stop)
            if low < stop:
                stop, more = low, False
        else:
            for g in groups:
                lost[g[4]] += _retire(conn, stream_id, config.name, first, stop, *g)
    if stop > first:
        conn.execute("DELETE FROM events WHERE stream_id = ? AND seq >= ? AND seq < ?",
                     (stream_id, first, stop))
        conn.execute("UPDATE streams SET first_seq = ? WHERE id = ?", (stop, stream_id))
    return more, +lost


def _unsettled(conn: sqlite3.Connection, stream_id: int, first: int, stop: int, gid: int,
               cursor: int, filter_blob: bytes | None) -> int:
    """The oldest sequence below ``stop`` the group has not settled (else ``stop``)."""
    index, match, args = filter_sql(decode_filter(filter_blob))
    low = conn.execute("SELECT MIN(seq) FROM pending WHERE group_id = ? AND seq >= ?",
                       (gid, first)).fetchone()[0]
    low = stop if low is None else min(low, stop)
    row = conn.execute(f"SELECT seq FROM events{index} WHERE stream_id = ? AND seq >= ? AND "
                       f"seq < ?{match} ORDER BY seq LIMIT 1",
                       (stream_id, max(cursor, first), low, *args)).fetchone()
    return low if row is None else row[0]


def _retire(conn: sqlite3.Connection, stream_id: int, stream: str, first: int, stop: int,
            gid: int, cursor: int, filter_blob: bytes | None, sub_id: int, _sub: str,
            group: str) -> int:
    """Retention removes the events below ``stop``: those the group had not read yet and those
    waiting for redelivery go to its dead-letter queue; an event in flight is copied into its
    pending row, to stay with the group until settled. Returns how many were dead-lettered."""
    index, match, args = filter_sql(decode_filter(filter_blob))
    # (event row, attempts, last reason) of each unsettled event
    unsettled = [(row, 0, None) for row in conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events{index} WHERE stream_id = ? AND seq >= ? AND "
        f"seq < ?{match} ORDER BY seq", (stream_id, max(cursor, first), stop, *args))]
    if cursor < stop:
        conn.execute("UPDATE groups SET cursor = ? WHERE id = ?", (stop, gid))
    rows = conn.execute(f"SELECT p.state, p.attempts, p.reason, {E_COLUMNS} FROM pending p "
                        "JOIN events e ON e.stream_id = ? AND e.seq = p.seq "
                        "WHERE p.group_id = ? AND p.seq < ? AND p.event IS NULL",
                        (stream_id, gid, stop)).fetchall()
    unsettled += [(r[3:], r[1], r[2]) for r in rows if r[0] == 0]
    conn.executemany("UPDATE pending SET event = ? WHERE group_id = ? AND seq = ?",
                     [(pack_event(event(r[3:], stream)), gid, r[3]) for r in rows if r[0] == 1])
    conn.execute("DELETE FROM pending WHERE group_id = ? AND seq < ? AND state = 0 AND "
                 "event IS NULL", (gid, stop))
    at = now_us()
    conn.executemany(
        "INSERT OR REPLACE INTO dead_letters (sub_id, group_name, event_id, seq, consumer, "
        "reason, attempts, error, at, event) VALUES (?, ?, ?, ?, '', 'retention', ?, ?, ?, ?)",
        [(sub_id, group, r[1], r[0], attempts, reason, at, pack_event(event(r, stream)))
         for r, attempts, reason in unsettled])
    return len(unsettled)


def _settled_floor(conn: sqlite3.Connection, stream_id: int, end: int) -> int:
    """Ephemeral streams: the oldest event some subscription has not settled."""
    low = end
    for sub_id, floor in conn.execute("SELECT id, floor FROM subscriptions WHERE "
                                      "stream_id = ?", (stream_id,)).fetchall():
        groups = conn.execute(
            "SELECT MIN(MIN(g.cursor), COALESCE((SELECT MIN(p.seq) FROM pending p "
            "WHERE p.group_id = g.id), g.cursor)) FROM groups g WHERE g.sub_id = ? "
            "GROUP BY g.id", (sub_id,)).fetchall()
        if groups:
            floor = min(row[0] for row in groups)
            conn.execute("UPDATE subscriptions SET floor = ? WHERE id = ?", (floor, sub_id))
        low = min(low, floor)
    return low
