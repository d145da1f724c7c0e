"""The SQLite event store.

Streams, events and every subscription's delivery state live in one SQLite database file
(WAL mode), so a host that is killed and restarted loses no acked event and redelivers every
unacked one.

Threading: one connection, owned by one dedicated worker thread; every statement runs there
(:class:`_Database`), so blocking SQLite calls never stall the event loop, and operations are
applied in the order they were submitted. The engine's selector (which reads mode state) runs on
the event-loop thread only: a claim with a selector fetches candidate rows in the worker, selects
on the loop, then marks its choices in a second worker transaction that re-checks each row is
unchanged (see :meth:`SqliteStore.claim`).

One process per database file: :meth:`SqliteStore.start` takes an exclusive lock on
``<path>.lock`` and a second process fails with :class:`DatabaseInUseError`. That is what lets
the store release every in-flight event at start (no consumer of a previous process can still
hold one) and keep its wake-ups in-process (pushed by appends, releases and notify; no polling).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from svrnty_events.config import DeliverySemantics, StreamConfig, StreamType, SubscriptionConfig
from svrnty_events.errors import (
    ConcurrencyError,
    StoreUnavailableError,
    SvrntyEventsError,
    UnknownStreamError,
    UnknownSubscriptionError,
)
from svrnty_events.events import RecordedEvent
from svrnty_events.store import (
    Capabilities,
    ChangeNotifier,
    Claimed,
    ClaimResult,
    DeadLetter,
    EventStore,
    Receipt,
    Selection,
    Selector,
    StreamInfo,
)

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

T = TypeVar("T")

_DELIVER, _SKIP, _DROP = Selection.DELIVER, Selection.SKIP, Selection.DROP
_WAITING, _IN_FLIGHT = 0, 1
_CHUNK = 500  # ids per "IN (...)" query, below SQLite's variable limit
#: an ephemeral stream is trimmed of settled events once it holds this many
_EPHEMERAL_TRIM_AT = 1024
_RESTART_REASON = "host restarted before ack"
_EXPIRED_REASON = "visibility timeout expired"


class SqliteStoreOptions(msgspec.Struct, forbid_unknown_fields=True):
    #: database file; created with its parent directories if missing. A lock file
    #: ``<path>.lock`` sits beside it while a host has it open.
    path: str
    #: "full": a commit is on disk when append/ack returns, even across a power loss.
    #: "normal": in WAL mode a power loss (not a process crash) can lose the last commits;
    #: several times faster per small transaction.
    synchronous: Literal["full", "normal"] = "full"
    #: seconds to wait for a lock held by another connection (e.g. an external backup tool)
    busy_timeout: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    #: events deleted per transaction by retention (age, count, ephemeral trim), so a large
    #: backlog is removed in bounded steps between other operations
    retention_step: Annotated[int, msgspec.Meta(ge=1)] = 1000


class DatabaseInUseError(SvrntyEventsError):
    """Another process has the database file open: one host per SQLite file."""

    def __init__(self, path: str, lock_path: str, holder: str) -> None:
        self.path, self.lock_path = path, lock_path
        who = f"process {holder}" if holder else "another process"
        super().__init__(
            f'SQLite event store "{path}" is already in use by {who} (lock file "{lock_path}"); '
            "svrnty-events-sqlite serves one host per database file: stop the other host, or "
            "give this one another path")


class Snapshot(msgspec.Struct, frozen=True):
    """A workflow's state after its first ``version`` events (the last at ``sequence``)."""

    stream: str
    correlation_id: str
    key: str
    version: int
    sequence: int
    state: bytes
    taken_at: datetime


# --- helpers ---------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_headers_encoder = msgspec.json.Encoder()
_headers_decoder = msgspec.json.Decoder(dict[str, str])
_event_encoder = msgspec.msgpack.Encoder()
_event_decoder = msgspec.msgpack.Decoder(RecordedEvent)
_config_encoder = msgspec.json.Encoder()
_stream_config_decoder = msgspec.json.Decoder(StreamConfig)


def _to_us(dt: datetime) -> int:
    """Microseconds since the epoch: exact, and ordered like the datetimes."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _US


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


_EVENT_COLUMNS = "seq, id, type, correlation_id, ts, data, content_type, headers"


def _event(row: Sequence[Any], stream: str) -> RecordedEvent:
    headers = row[7]
    return RecordedEvent(id=row[1], stream=stream, type=row[2], correlation_id=row[3],
                         timestamp=_from_us(row[4]), data=row[5], sequence=row[0],
                         content_type=row[6],
                         headers=_headers_decoder.decode(headers) if headers else {})


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    config BLOB NOT NULL,
    first_seq INTEGER NOT NULL DEFAULT 0,
    next_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    stream_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    data BLOB NOT NULL,
    content_type TEXT NOT NULL,
    headers BLOB,
    PRIMARY KEY (stream_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events (stream_id, id);
CREATE INDEX IF NOT EXISTS events_by_correlation ON events (stream_id, correlation_id, seq);
CREATE TABLE IF NOT EXISTS correlations (
    stream_id INTEGER NOT NULL,
    correlation_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (stream_id, correlation_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    stream_id INTEGER NOT NULL,
    config BLOB NOT NULL,
    floor INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY,
    sub_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    UNIQUE (sub_id, name)
);
CREATE TABLE IF NOT EXISTS pending (
    group_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    consumer TEXT,
    due REAL NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT,
    PRIMARY KEY (group_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS pending_by_event ON pending (group_id, event_id);
CREATE INDEX IF NOT EXISTS pending_by_due ON pending (group_id, due);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    sub_id INTEGER NOT NULL,
    group_name TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT,
    at INTEGER NOT NULL,
    event BLOB NOT NULL,
    UNIQUE (sub_id, group_name, event_id)
);
CREATE TABLE IF NOT EXISTS receipts (
    sub_id INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    delivered_at INTEGER NOT NULL,
    read_at INTEGER,
    UNIQUE (sub_id, consumer, event_id)
);
CREATE INDEX IF NOT EXISTS receipts_by_event ON receipts (sub_id, event_id);
CREATE TABLE IF NOT EXISTS processed (
    sub_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (sub_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    stream_id INTEGER NOT NULL,
    correlation_id TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    state BLOB NOT NULL,
    taken_at INTEGER NOT NULL,
    PRIMARY KEY (stream_id, correlation_id, key)
) WITHOUT ROWID;
"""
_SCHEMA_VERSION = 1


class _Database:
    """One SQLite connection on one dedicated thread. Jobs run in submission order."""

    def __init__(self, options: SqliteStoreOptions) -> None:
        self.options = options
        self.path = options.path
        self.conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="svrnty-sqlite")
        await self.call(self._open)

    def _open(self, _conn: None) -> None:
        o = self.options
        if o.path != ":memory:":
            Path(o.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(o.path, timeout=o.busy_timeout, isolation_level=None,
                               check_same_thread=True)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal" and o.path != ":memory:":
                raise StoreUnavailableError(f'SQLite event store "{o.path}": cannot switch to '
                                            f"WAL mode (journal mode is {mode})")
            conn.execute(f"PRAGMA synchronous={o.synchronous.upper()}")
            conn.execute(f"PRAGMA busy_timeout={int(o.busy_timeout * 1000)}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise StoreUnavailableError(
                    f'SQLite event store "{o.path}" has schema version {version}, newer than '
                    f"this svrnty-events-sqlite ({_SCHEMA_VERSION}): upgrade the package")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the database thread."""
        if self._executor is None:
            raise StoreUnavailableError(f'SQLite event store "{self.path}" is not open')
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._run, fn, args)
        except RuntimeError as exc:  # executor shut down by close()
            if "shutdown" in str(exc):
                raise StoreUnavailableError(f'SQLite event store "{self.path}" is closed') \
                    from None
            raise

    @property
    def closed(self) -> bool:
        return self._executor is None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Queue ``fn(conn, *args)`` without awaiting it (a concurrent.futures.Future)."""
        assert self._executor is not None
        return self._executor.submit(self._run, fn, args)

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self.conn
        if conn is None:
            return fn(None, *args)
        try:
            return fn(conn, *args)
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreUnavailableError(f'SQLite event store "{self.path}": {exc}') from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._close)
        finally:
            executor.shutdown(wait=True)

    def _close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.execute("PRAGMA optimize")
            conn.close()


class _FileLock:
    """An exclusive advisory lock on ``<path>.lock``, released by the OS if the process dies."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = f"{path}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        Path(self.lock_path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:  # pragma: no cover - Windows
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            try:
                holder = os.read(fd, 64).decode(errors="replace").strip()
            finally:
                os.close(fd)
            raise DatabaseInUseError(self.path, self.lock_path, holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the lock


@dataclass
class _Stream:
    id: int
    name: str
    config: StreamConfig
    notifier: ChangeNotifier = field(default_factory=ChangeNotifier)
    appended_since_trim: int = 0


@dataclass
class _Subscription:
    id: int
    name: str
    stream: _Stream
    config: SubscriptionConfig


@dataclass
class _Candidates:
    """What the worker read for a claim with a selector."""

    cursor: int          # the group's cursor as stored
    start: int           # where new events begin (cursor, or the oldest retained event)
    pending: list[tuple[Any, ...]]   # (seq, state, due, attempts, reason, event | None)
    pending_more: bool
    new: list[RecordedEvent]
    new_more: bool
    next_due: float | None


class SqliteStore(EventStore):
    """Durable store on one SQLite file: streams, events and subscription delivery state."""

    capabilities = Capabilities(durable=True, idempotent_append=True, shared=False)

    def __init__(self, options: SqliteStoreOptions | dict[str, Any]) -> None:
        if isinstance(options, dict):
            options = msgspec.convert(options, SqliteStoreOptions)
        self.options = options
        self.path = options.path
        self._db = _Database(options)
        self._lock = _FileLock(options.path)
        self._streams: dict[str, _Stream] = {}
        self._subs: dict[str, _Subscription] = {}
        self._groups: dict[tuple[str, str], int] = {}
        self._claim_locks: dict[int, asyncio.Lock] = {}
        self._started = False
        self._closed = False

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Lock the file (DatabaseInUseError if another process has it), open it, create the
        schema, and return every event left in flight by a previous process for redelivery."""
        if self._started:
            return
        if self.path != ":memory:":
            self._lock.acquire()
        try:
            await self._db.open()
            await self._db.call(self._recover)
        except BaseException:
            await self._db.close()
            self._lock.release()
            raise
        self._started = True

    @staticmethod
    def _recover(conn: sqlite3.Connection) -> None:
        # No consumer of a previous process survives it (the file lock guarantees no other
        # process has the file), so its in-flight events are redelivered now rather than when
        # their visibility deadlines pass. At-most-once streams count an event as done once
        # handed over: theirs are dropped instead.
        at_most_once = [
            row[0] for row in conn.execute("SELECT id, config FROM streams")
            if _stream_config_decoder.decode(row[1]).delivery_semantics
            is DeliverySemantics.AT_MOST_ONCE]
        conn.execute("BEGIN IMMEDIATE")
        if at_most_once:
            conn.execute(
                "DELETE FROM pending WHERE state = 1 AND group_id IN (SELECT g.id FROM groups g "
                "JOIN subscriptions s ON s.id = g.sub_id "
                f"WHERE s.stream_id IN ({_marks(len(at_most_once))}))", at_most_once)
        conn.execute("UPDATE pending SET state = 0, consumer = NULL, due = 0, "
                     "reason = COALESCE(reason, ?) WHERE state = 1", (_RESTART_REASON,))
        conn.execute("COMMIT")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._db.close()
        finally:
            self._lock.release()
            for s in self._streams.values():
                s.notifier.bump()  # waiters return; their next call raises StoreUnavailable

    async def __aenter__(self) -> SqliteStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- streams ---------------------------------------------------------------------------------

    def _stream(self, name: str) -> _Stream:
        try:
            return self._streams[name]
        except KeyError:
            raise UnknownStreamError(name, self._streams) from None

    def _sub(self, name: str) -> _Subscription:
        try:
            return self._subs[name]
        except KeyError:
            raise UnknownSubscriptionError(name, self._subs) from None

    async def create_stream(self, config: StreamConfig) -> None:
        stream_id = await self._db.call(self._create_stream, config)
        s = self._streams.get(config.name)
        if s is None:
            s = self._streams[config.name] = _Stream(stream_id, config.name, config)
        s.config = config
        await self._retain(s)  # the configuration may have tightened retention

    @staticmethod
    def _create_stream(conn: sqlite3.Connection, config: StreamConfig) -> int:
        conn.execute("INSERT INTO streams (name, type, config) VALUES (?, ?, ?) "
                     "ON CONFLICT (name) DO UPDATE SET type = excluded.type, "
                     "config = excluded.config",
                     (config.name, str(config.type), _config_encoder.encode(config)))
        return conn.execute("SELECT id FROM streams WHERE name = ?", (config.name,)).fetchone()[0]

    async def append(self, stream: str, events: Sequence[RecordedEvent], *,
                     expected_version: int | None = None) -> list[RecordedEvent]:
        s = self._stream(stream)
        if not events:
            return []
        correlation = events[0].correlation_id
        if expected_version is not None and any(e.correlation_id != correlation for e in events):
            raise ValueError("expected_version needs a batch with one correlation id")
        out, added, needs_retention = await self._db.call(
            self._append, s.id, stream, list(events), expected_version, self._retention_probe(s))
        if added:
            s.appended_since_trim += added
            if needs_retention or (s.config.type is StreamType.EPHEMERAL
                                   and s.appended_since_trim >= _EPHEMERAL_TRIM_AT // 2):
                await self._retain(s)
            s.notifier.bump()
        return out

    def _retention_probe(self, s: _Stream) -> tuple[int | None, int | None]:
        cfg = s.config
        cutoff = None
        if cfg.retention_max_age is not None:
            cutoff = _to_us(datetime.now(timezone.utc)) - int(cfg.retention_max_age * 1e6)
        return cfg.retention_max_count, cutoff

    @staticmethod
    def _append(conn: sqlite3.Connection, stream_id: int, stream: str,
                events: list[RecordedEvent], expected_version: int | None,
                probe: tuple[int | None, int | None]
                ) -> tuple[list[RecordedEvent], int, bool]:
        conn.execute("BEGIN IMMEDIATE")
        if expected_version is not None:
            correlation = events[0].correlation_id
            row = conn.execute("SELECT version FROM correlations WHERE stream_id = ? AND "
                               "correlation_id = ?", (stream_id, correlation)).fetchone()
            actual = row[0] if row else 0
            if actual != expected_version:
                raise ConcurrencyError(stream, correlation, expected_version, actual)
        first, next_seq = conn.execute("SELECT first_seq, next_seq FROM streams WHERE id = ?",
                                       (stream_id,)).fetchone()
        # the usual case has no duplicate: insert at once, and look duplicates up only if the
        # unique index on event ids refuses the batch
        conn.execute("SAVEPOINT batch")
        try:
            out, rows, versions, seq = SqliteStore._insert(conn, stream_id, stream, events,
                                                           next_seq, {})
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK TO batch")
            existing: dict[str, RecordedEvent] = {}
            ids = list({e.id for e in events})
            for chunk in _chunks(ids):
                for row in conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE "
                                        f"stream_id = ? AND id IN ({_marks(len(chunk))})",
                                        (stream_id, *chunk)):
                    existing[row[1]] = _event(row, stream)
            out, rows, versions, seq = SqliteStore._insert(conn, stream_id, stream, events,
                                                           next_seq, existing)
        conn.execute("RELEASE batch")
        needs_retention = False
        if rows:
            conn.executemany("INSERT INTO correlations (stream_id, correlation_id, version) "
                             "VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET "
                             "version = version + excluded.version",
                             [(stream_id, c, n) for c, n in versions.items()])
            conn.execute("UPDATE streams SET next_seq = ? WHERE id = ?", (seq, stream_id))
            max_count, cutoff = probe
            if max_count is not None and seq - first > max_count:
                needs_retention = True
            elif cutoff is not None:
                oldest = conn.execute("SELECT ts FROM events WHERE stream_id = ? AND seq >= ? "
                                      "ORDER BY seq LIMIT 1", (stream_id, first)).fetchone()
                needs_retention = oldest is not None and oldest[0] < cutoff
        conn.execute("COMMIT")
        return out, len(rows), needs_retention

    @staticmethod
    def _insert(conn: sqlite3.Connection, stream_id: int, stream: str,
                events: list[RecordedEvent], seq: int, existing: dict[str, RecordedEvent]
                ) -> tuple[list[RecordedEvent], list[tuple[Any, ...]], dict[str, int], int]:
        """Insert the events not in ``existing`` (nor earlier in the batch) from ``seq`` on.
        Returns the recorded batch, the rows, appends per correlation id, the next sequence."""
        out: list[RecordedEvent] = []
        rows: list[tuple[Any, ...]] = []
        versions: dict[str, int] = {}
        replace = msgspec.structs.replace
        encode_headers = _headers_encoder.encode
        for e in events:
            known = existing.get(e.id)
            if known is not None:
                out.append(known)
                continue
            r = replace(e, sequence=seq, stream=stream)
            existing[e.id] = r
            out.append(r)
            rows.append((stream_id, seq, e.id, e.type, e.correlation_id, _to_us(e.timestamp),
                         e.data, e.content_type, encode_headers(e.headers) if e.headers else None))
            versions[e.correlation_id] = versions.get(e.correlation_id, 0) + 1
            seq += 1
        if rows:
            conn.executemany("INSERT INTO events (stream_id, seq, id, type, correlation_id, ts, "
                             "data, content_type, headers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             rows)
        return out, rows, versions, seq

    async def _retain(self, s: _Stream) -> None:
        """Apply retention (count, age, ephemeral trim) in bounded steps: each step is one
        transaction of at most ``retention_step`` deleted events, so other operations run
        between steps."""
        ephemeral = s.config.type is StreamType.EPHEMERAL
        s.appended_since_trim = 0
        while await self._db.call(self._retention_step, s.id, self._retention_probe(s),
                                  ephemeral, self.options.retention_step):
            pass

    @staticmethod
    def _retention_step(conn: sqlite3.Connection, stream_id: int,
                        probe: tuple[int | None, int | None], ephemeral: bool,
                        step: int) -> bool:
        """Delete up to ``step`` of the oldest events due to go. True if more are due."""
        conn.execute("BEGIN IMMEDIATE")
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
        if ephemeral and end - first >= _EPHEMERAL_TRIM_AT:
            target = max(target, SqliteStore._settled_floor(conn, stream_id, end))
        stop = min(target, first + step)
        if stop > first:
            conn.execute("DELETE FROM events WHERE stream_id = ? AND seq >= ? AND seq < ?",
                         (stream_id, first, stop))
            conn.execute("UPDATE streams SET first_seq = ? WHERE id = ?", (stop, stream_id))
        conn.execute("COMMIT")
        return stop < target or (more_old and stop == target)

    @staticmethod
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

    async def read(self, stream: str, *, from_sequence: int = 0, limit: int | None = None,
                   correlation_id: str | None = None, event_types: Sequence[str] | None = None,
                   since: datetime | None = None) -> list[RecordedEvent]:
        s = self._stream(stream)
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE stream_id = ? AND seq >= ?"
        args: list[Any] = [s.id, from_sequence]
        if correlation_id is not None:
            sql += " AND correlation_id = ?"
            args.append(correlation_id)
        if event_types:
            types = list(dict.fromkeys(event_types))
            sql += f" AND type IN ({_marks(len(types))})"
            args.extend(types)
        if since is not None:
            sql += " AND ts >= ?"
            args.append(_to_us(since))
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)

        def run(conn: sqlite3.Connection) -> list[RecordedEvent]:
            return [_event(row, stream) for row in conn.execute(sql, args)]

        return await self._db.call(run)

    async def correlation_version(self, stream: str, correlation_id: str) -> int:
        s = self._stream(stream)

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT version FROM correlations WHERE stream_id = ? AND "
                               "correlation_id = ?", (s.id, correlation_id)).fetchone()
            return row[0] if row else 0

        return await self._db.call(run)

    async def stream_info(self, stream: str) -> StreamInfo:
        s = self._stream(stream)

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            return conn.execute("SELECT first_seq, next_seq FROM streams WHERE id = ?",
                                (s.id,)).fetchone()

        first, end = await self._db.call(run)
        return StreamInfo(name=stream, type=str(s.config.type), length=end - first,
                          first_sequence=first, next_sequence=end,
                          metadata={"store": "sqlite", "path": self.path})

    # --- subscriptions and groups ----------------------------------------------------------------

    async def create_subscription(self, config: SubscriptionConfig) -> None:
        s = self._stream(config.stream)

        def run(conn: sqlite3.Connection) -> int:
            first = conn.execute("SELECT first_seq FROM streams WHERE id = ?",
                                 (s.id,)).fetchone()[0]
            conn.execute("INSERT INTO subscriptions (name, stream_id, config, floor) "
                         "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                         "config = excluded.config",
                         (config.name, s.id, _config_encoder.encode(config), first))
            return conn.execute("SELECT id FROM subscriptions WHERE name = ?",
                                (config.name,)).fetchone()[0]

        sub_id = await self._db.call(run)
        sub = self._subs.get(config.name)
        if sub is None:
            self._subs[config.name] = _Subscription(sub_id, config.name, s, config)
        else:
            sub.config = config

    @staticmethod
    def _group_row(conn: sqlite3.Connection, sub_id: int, stream_id: int, group: str,
                   start: int | None, create: bool) -> int | None:
        row = conn.execute("SELECT id FROM groups WHERE sub_id = ? AND name = ?",
                           (sub_id, group)).fetchone()
        if row is not None:
            return row[0]
        if not create:
            return None
        first = conn.execute("SELECT first_seq FROM streams WHERE id = ?",
                             (stream_id,)).fetchone()[0]
        if start is not None:
            cursor = max(start, first)
        else:
            floor = conn.execute("SELECT floor FROM subscriptions WHERE id = ?",
                                 (sub_id,)).fetchone()[0]
            cursor = max(floor, first)
        return conn.execute("INSERT INTO groups (sub_id, name, cursor) VALUES (?, ?, ?)",
                            (sub_id, group, cursor)).lastrowid

    async def _group_id(self, subscription: str, group: str, *, create: bool = True,
                        start: int | None = None) -> int | None:
        key = (subscription, group)
        gid = self._groups.get(key)
        if gid is not None:
            return gid
        sub = self._sub(subscription)
        gid = await self._db.call(self._group_row, sub.id, sub.stream.id, group, start, create)
        if gid is not None:
            self._groups[key] = gid
        return gid

    async def ensure_group(self, subscription: str, group: str, *,
                           start: int | None = None) -> None:
        await self._group_id(subscription, group, start=start)

    async def delete_group(self, subscription: str, group: str) -> None:
        sub = self._sub(subscription)
        self._groups.pop((subscription, group), None)

        def run(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT id, cursor FROM groups WHERE sub_id = ? AND name = ?",
                               (sub.id, group)).fetchone()
            if row is None:
                return None
            gid, cursor = row
            conn.execute("BEGIN IMMEDIATE")
            low = conn.execute("SELECT MIN(seq) FROM pending WHERE group_id = ?",
                               (gid,)).fetchone()[0]
            floor = cursor if low is None else min(cursor, low)
            conn.execute("DELETE FROM pending WHERE group_id = ?", (gid,))
            conn.execute("DELETE FROM groups WHERE id = ?", (gid,))
            if conn.execute("SELECT 1 FROM groups WHERE sub_id = ?", (sub.id,)).fetchone() is None:
                conn.execute("UPDATE subscriptions SET floor = MAX(floor, ?) WHERE id = ?",
                             (floor, sub.id))
            conn.execute("COMMIT")
            return gid

        gid = await self._db.call(run)
        if gid is not None:
            self._claim_locks.pop(gid, None)

    # --- claim -----------------------------------------------------------------------------------

    async def claim(self, subscription: str, group: str, consumer_id: str, *, max_count: int,
                    visibility_timeout: float, selector: Selector | None = None) -> ClaimResult:
        """Hand up to ``max_count`` events to ``consumer_id`` (see the contract).

        Claims of one group are serialized by an asyncio lock. Without a selector the whole
        claim is one worker transaction. With one, candidates are read in the worker, the
        selector runs here on the event-loop thread (it reads mode state), and the choices are
        written in a second transaction that re-checks every waiting row is unchanged and the
        cursor did not move (ack, nack, release, dead-letter or retention may have run in
        between): a row that changed is simply not claimed this time.
        """
        sub = self._sub(subscription)
        s = sub.stream
        gid = await self._group_id(subscription, group)
        assert gid is not None
        lock = self._claim_locks.get(gid)
        if lock is None:
            lock = self._claim_locks[gid] = asyncio.Lock()
        async with lock:
            # read before looking, so an append that lands meanwhile wakes the next wait
            version = s.notifier.version
            if selector is None:
                claimed, next_due = await self._claiming(
                    s, gid, consumer_id, self._claim_all, gid, s.id, s.name, consumer_id,
                    max_count, visibility_timeout)
                return ClaimResult(claimed, version, next_due)
            return await self._claim_selected(gid, s, consumer_id, max_count,
                                              visibility_timeout, selector, version)

    async def _claim_selected(self, gid: int, s: _Stream, consumer_id: str, max_count: int,
                              visibility_timeout: float, selector: Selector,
                              version: int) -> ClaimResult:
        claimed: list[Claimed] = []
        after = -1              # waiting rows up to this sequence were looked at
        pending_done = False    # every waiting row was looked at: new events are next
        page = max_count + 64
        next_due: float | None = None
        while len(claimed) < max_count:
            c: _Candidates = await self._db.call(
                self._candidates, gid, s.id, s.name, after, 0 if pending_done else page, page)
            next_due = c.next_due
            room = max_count - len(claimed)
            take: list[tuple[Any, ...]] = []   # waiting rows to deliver
            drop: list[tuple[Any, ...]] = []   # waiting rows to settle
            looked = 0
            for row in c.pending:
                if room <= 0:
                    break
                looked += 1
                after = row[0]
                e = row[5]
                verdict = _DROP if e is None else selector(e)  # None: removed by retention
                if verdict is _DELIVER:
                    take.append(row)
                    room -= 1
                elif verdict is _DROP:
                    drop.append(row)
            if not pending_done and looked == len(c.pending) and not c.pending_more:
                pending_done = True
            new_take: list[RecordedEvent] = []
            new_skip: list[RecordedEvent] = []
            cursor = c.start
            new_looked = 0
            if pending_done:
                for e in c.new:
                    if room <= 0:
                        break
                    new_looked += 1
                    cursor = e.sequence + 1
                    verdict = selector(e)
                    if verdict is _DELIVER:
                        new_take.append(e)
                        room -= 1
                    elif verdict is _SKIP:
                        new_skip.append(e)
            if take or drop or new_take or new_skip or cursor != c.cursor:
                done = await self._claiming(
                    s, gid, consumer_id, self._commit_claim, gid, consumer_id,
                    visibility_timeout, c.cursor, cursor, take, drop, new_take, new_skip)
                if done is None:  # the group was deleted or its cursor moved: look again soon
                    return ClaimResult(claimed, version, time.time())
                got, next_due = done
                claimed.extend(got)
            if pending_done:
                more = c.new_more and new_looked == len(c.new)
            else:
                more = c.pending_more or looked < len(c.pending)
            if not more:
                break
        return ClaimResult(claimed, version, next_due)

    async def _claiming(self, s: _Stream, gid: int, consumer_id: str,
                        fn: Callable[..., Any], *args: Any) -> Any:
        """Run a claim's writing job so that a cancelled caller loses nothing: the job runs to
        its end in the worker anyway, and the events it marked in flight for a caller that
        will never see them are handed back (attempt count restored) right after."""
        job = asyncio.ensure_future(self._db.call(fn, *args))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(lambda done: self._undo_claim(s, gid, consumer_id, done))
            raise

    def _undo_claim(self, s: _Stream, gid: int, consumer_id: str,
                    job: asyncio.Future[Any]) -> None:
        if job.cancelled() or job.exception() is not None or job.result() is None:
            return
        claimed: list[Claimed] = job.result()[0]
        if not claimed or self._db.closed:
            return
        rows = [(gid, c.event.id, consumer_id) for c in claimed]
        loop = asyncio.get_running_loop()

        def undo(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("UPDATE pending SET state = 0, consumer = NULL, due = 0, "
                             "attempts = attempts - 1 WHERE group_id = ? AND event_id = ? AND "
                             "state = 1 AND consumer = ?", rows)
            conn.execute("COMMIT")

        def woken(_: Any) -> None:
            with suppress(RuntimeError):  # the loop may be gone by now
                loop.call_soon_threadsafe(s.notifier.bump)

        # straight onto the worker's queue (ordered after the claim), no task to track
        self._db.submit(undo).add_done_callback(woken)

    @staticmethod
    def _read_candidates(conn: sqlite3.Connection, gid: int, stream_id: int, stream: str,
                         after: int, pending_limit: int, new_limit: int
                         ) -> _Candidates | None:
        row = conn.execute("SELECT cursor FROM groups WHERE id = ?", (gid,)).fetchone()
        if row is None:
            return None
        cursor = row[0]
        first = conn.execute("SELECT first_seq FROM streams WHERE id = ?",
                             (stream_id,)).fetchone()[0]
        now = time.time()
        pending: list[tuple[Any, ...]] = []
        if pending_limit:
            for r in conn.execute(
                    f"SELECT p.seq, p.state, p.due, p.attempts, p.reason, e.id, e.type, "
                    f"e.correlation_id, e.ts, e.data, e.content_type, e.headers FROM pending p "
                    f"LEFT JOIN events e ON e.stream_id = ? AND e.seq = p.seq "
                    f"WHERE p.group_id = ? AND p.due <= ? AND p.seq > ? ORDER BY p.seq LIMIT ?",
                    (stream_id, gid, now, after, pending_limit)):
                e = None if r[5] is None else _event((r[0], *r[5:]), stream)
                pending.append((r[0], r[1], r[2], r[3], r[4], e))
        start = max(cursor, first)
        new = [_event(r, stream) for r in conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE stream_id = ? AND seq >= ? "
            "ORDER BY seq LIMIT ?", (stream_id, start, new_limit))] if new_limit else []
        next_due = conn.execute("SELECT MIN(due) FROM pending WHERE group_id = ? AND due > ?",
                                (gid, now)).fetchone()[0]
        return _Candidates(cursor, start, pending, len(pending) == pending_limit > 0, new,
                           len(new) == new_limit > 0, next_due)

    @staticmethod
    def _candidates(conn: sqlite3.Connection, gid: int, stream_id: int, stream: str, after: int,
                    pending_limit: int, new_limit: int) -> _Candidates:
        conn.execute("BEGIN")  # one snapshot for both reads
        c = SqliteStore._read_candidates(conn, gid, stream_id, stream, after, pending_limit,
                                         new_limit)
        conn.execute("COMMIT")
        if c is None:
            return _Candidates(0, 0, [], False, [], False, None)
        return c

    @staticmethod
    def _write_claim(conn: sqlite3.Connection, gid: int, consumer_id: str,
                     visibility_timeout: float, old_cursor: int, cursor: int,
                     take: list[tuple[Any, ...]], drop: list[tuple[Any, ...]],
                     new_take: list[RecordedEvent], new_skip: list[RecordedEvent]
                     ) -> tuple[list[Claimed], float | None] | None:
        """Write a claim's choices inside the caller's transaction. None if the cursor moved."""
        if cursor != old_cursor:
            if conn.execute("UPDATE groups SET cursor = ? WHERE id = ? AND cursor = ?",
                            (cursor, gid, old_cursor)).rowcount != 1:
                return None
        now = time.time()
        deadline = now + visibility_timeout
        claimed: list[Claimed] = []
        for seq, state, due, attempts, reason, e in take:
            if state == _IN_FLIGHT and reason is None:
                reason = _EXPIRED_REASON
            if conn.execute(
                    "UPDATE pending SET state = 1, consumer = ?, due = ?, attempts = ?, "
                    "reason = ? WHERE group_id = ? AND seq = ? AND state = ? AND due = ? AND "
                    "attempts = ?", (consumer_id, deadline, attempts + 1, reason, gid, seq,
                                     state, due, attempts)).rowcount == 1:
                claimed.append(Claimed(e, attempts + 1, reason))
        for seq, state, due, attempts, _reason, _e in drop:
            conn.execute("DELETE FROM pending WHERE group_id = ? AND seq = ? AND state = ? AND "
                         "due = ? AND attempts = ?", (gid, seq, state, due, attempts))
        if new_take or new_skip:
            conn.executemany(
                "INSERT INTO pending (group_id, seq, event_id, state, consumer, due, attempts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [*((gid, e.sequence, e.id, _IN_FLIGHT, consumer_id, deadline, 1)
                   for e in new_take),
                 *((gid, e.sequence, e.id, _WAITING, None, 0.0, 0) for e in new_skip)])
            claimed.extend(Claimed(e, 1) for e in new_take)
        next_due = conn.execute("SELECT MIN(due) FROM pending WHERE group_id = ? AND due > ?",
                                (gid, now)).fetchone()[0]
        return claimed, next_due

    @staticmethod
    def _commit_claim(conn: sqlite3.Connection, gid: int, consumer_id: str,
                      visibility_timeout: float, old_cursor: int, cursor: int,
                      take: list[tuple[Any, ...]], drop: list[tuple[Any, ...]],
                      new_take: list[RecordedEvent], new_skip: list[RecordedEvent]
                      ) -> tuple[list[Claimed], float | None] | None:
        conn.execute("BEGIN IMMEDIATE")
        done = SqliteStore._write_claim(conn, gid, consumer_id, visibility_timeout, old_cursor,
                                        cursor, take, drop, new_take, new_skip)
        conn.execute("COMMIT" if done is not None else "ROLLBACK")
        return done

    @staticmethod
    def _claim_all(conn: sqlite3.Connection, gid: int, stream_id: int, stream: str,
                   consumer_id: str, max_count: int, visibility_timeout: float
                   ) -> tuple[list[Claimed], float | None]:
        """A claim without a selector: every candidate is delivered, in one transaction."""
        conn.execute("BEGIN IMMEDIATE")
        claimed: list[Claimed] = []
        next_due: float | None = None
        after = -1
        while len(claimed) < max_count:
            room = max_count - len(claimed)
            c = SqliteStore._read_candidates(conn, gid, stream_id, stream, after, room, room)
            if c is None:
                break
            next_due = c.next_due
            take = [row for row in c.pending if row[5] is not None]
            drop = [row for row in c.pending if row[5] is None]  # trimmed by retention
            new: list[RecordedEvent] = []
            cursor = c.start
            if not c.pending_more:
                new = c.new[:room - len(take)]
                if new:
                    cursor = new[-1].sequence + 1
            if c.pending:
                after = c.pending[-1][0]
            done = SqliteStore._write_claim(conn, gid, consumer_id, visibility_timeout, c.cursor,
                                            cursor, take, drop, new, [])
            assert done is not None  # one transaction: nothing moved meanwhile
            claimed.extend(done[0])
            next_due = done[1]
            if not c.pending_more and not c.new_more:
                break
            if not take and not drop and not new:
                break
        conn.execute("COMMIT")
        return claimed, next_due

    # --- settle ----------------------------------------------------------------------------------

    async def ack(self, subscription: str, group: str, consumer_id: str,
                  event_ids: Sequence[str]) -> list[str]:
        gid = await self._group_id(subscription, group)
        ids = list(event_ids)

        def run(conn: sqlite3.Connection) -> set[str]:
            acked: set[str] = set()
            conn.execute("BEGIN IMMEDIATE")
            for chunk in _chunks(ids):
                acked.update(row[0] for row in conn.execute(
                    f"DELETE FROM pending WHERE group_id = ? AND state = 1 AND consumer = ? AND "
                    f"event_id IN ({_marks(len(chunk))}) RETURNING event_id",
                    (gid, consumer_id, *chunk)))
            conn.execute("COMMIT")
            return acked

        acked = await self._db.call(run) if ids else set()
        return [i for i in ids if i not in acked]

    async def nack(self, subscription: str, group: str, consumer_id: str, event_id: str, *,
                   delay: float, reason: str | None = None) -> bool:
        sub = self._sub(subscription)
        gid = await self._group_id(subscription, group)
        due = time.time() + delay if delay > 0 else 0.0

        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "UPDATE pending SET state = 0, consumer = NULL, due = ?, "
                "reason = COALESCE(?, reason) WHERE group_id = ? AND event_id = ? AND "
                "state = 1 AND consumer = ?",
                (due, reason or None, gid, event_id, consumer_id)).rowcount == 1

        done = await self._db.call(run)
        if done:
            sub.stream.notifier.bump()
        return done

    async def release(self, subscription: str, group: str, consumer_id: str, *,
                      unseen: Sequence[str] = ()) -> int:
        sub = self._sub(subscription)
        gid = await self._group_id(subscription, group, create=False)
        if gid is None:
            return 0
        unseen_rows = [(gid, event_id, consumer_id) for event_id in unseen]

        def run(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # prefetched but never handed to the consumer's code: not an attempt
                conn.executemany("UPDATE pending SET attempts = attempts - 1 WHERE "
                                 "group_id = ? AND event_id = ? AND state = 1 AND consumer = ? "
                                 "AND attempts > 0", unseen_rows)
                count = conn.execute("UPDATE pending SET state = 0, consumer = NULL, due = 0 "
                                     "WHERE group_id = ? AND state = 1 AND consumer = ?",
                                     (gid, consumer_id)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return count

        count = await self._db.call(run)
        if count:
            sub.stream.notifier.bump()
        return count

    async def wait_for_change(self, subscription: str, group: str, version: int,
                              timeout: float | None) -> int:
        return await self._sub(subscription).stream.notifier.wait(version, timeout)

    def notify(self, subscription: str) -> None:
        self._sub(subscription).stream.notifier.bump()

    # --- dead letters ----------------------------------------------------------------------------

    async def dead_letter(self, subscription: str, group: str, consumer_id: str, event_id: str, *,
                          reason: str, attempts: int, error: str | None = None) -> bool:
        sub = self._sub(subscription)
        gid = await self._group_id(subscription, group)
        s = sub.stream

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT seq, state, consumer FROM pending WHERE group_id = ? AND "
                               "event_id = ?", (gid, event_id)).fetchone()
            if row is None or (row[1] == _IN_FLIGHT and row[2] != consumer_id):
                conn.execute("ROLLBACK")
                return False
            seq = row[0]
            conn.execute("DELETE FROM pending WHERE group_id = ? AND seq = ?", (gid, seq))
            found = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE stream_id = ? AND "
                                 "seq = ?", (s.id, seq)).fetchone()
            if found is None:  # removed by retention meanwhile: nothing left to keep
                conn.execute("COMMIT")
                return False
            conn.execute(
                "INSERT OR REPLACE INTO dead_letters (sub_id, group_name, event_id, seq, "
                "consumer, reason, attempts, error, at, event) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sub.id, group, event_id, seq, consumer_id, reason, attempts, error,
                 _to_us(datetime.now(timezone.utc)), _event_encoder.encode(_event(found, s.name))))
            conn.execute("COMMIT")
            return True

        return await self._db.call(run)

    async def list_dead_letters(self, subscription: str, *,
                                limit: int | None = None) -> list[DeadLetter]:
        sub = self._sub(subscription)

        def run(conn: sqlite3.Connection) -> list[DeadLetter]:
            rows = conn.execute(
                "SELECT event, group_name, consumer, reason, attempts, at, error FROM "
                "dead_letters WHERE sub_id = ? ORDER BY id LIMIT ?",
                (sub.id, -1 if limit is None else limit))
            return [DeadLetter(event=_event_decoder.decode(r[0]), subscription=subscription,
                               group=r[1], consumer_id=r[2], reason=r[3], attempts=r[4],
                               dead_lettered_at=_from_us(r[5]), error=r[6]) for r in rows]

        return await self._db.call(run)

    @staticmethod
    def _pick_letters(conn: sqlite3.Connection, sub_id: int,
                      event_ids: Sequence[str] | None) -> list[tuple[Any, ...]]:
        sql = "SELECT id, group_name, event_id, seq FROM dead_letters WHERE sub_id = ?"
        if event_ids is None:
            return conn.execute(sql + " ORDER BY id", (sub_id,)).fetchall()
        rows: list[tuple[Any, ...]] = []
        ids = list(dict.fromkeys(event_ids))
        for chunk in _chunks(ids):
            rows.extend(conn.execute(sql + f" AND event_id IN ({_marks(len(chunk))})",
                                     (sub_id, *chunk)))
        return sorted(rows)

    async def replay_dead_letters(self, subscription: str,
                                  event_ids: Sequence[str] | None = None) -> int:
        sub = self._sub(subscription)
        s = sub.stream

        def run(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            letters = self._pick_letters(conn, sub.id, event_ids)
            for letter_id, group, event_id, seq in letters:
                conn.execute("DELETE FROM dead_letters WHERE id = ?", (letter_id,))
                if conn.execute("SELECT 1 FROM events WHERE stream_id = ? AND seq = ? AND "
                                "id = ?", (s.id, seq, event_id)).fetchone() is None:
                    continue  # removed by retention: nothing to redeliver
                gid = self._group_row(conn, sub.id, s.id, group, None, True)
                conn.execute("INSERT OR IGNORE INTO pending (group_id, seq, event_id, state, "
                             "due, attempts) VALUES (?, ?, ?, 0, 0, 0)", (gid, seq, event_id))
            conn.execute("COMMIT")
            return len(letters)

        count = await self._db.call(run)
        if count:
            s.notifier.bump()
        return count

    async def purge_dead_letters(self, subscription: str,
                                 event_ids: Sequence[str] | None = None) -> int:
        sub = self._sub(subscription)

        def run(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            letters = self._pick_letters(conn, sub.id, event_ids)
            conn.executemany("DELETE FROM dead_letters WHERE id = ?", [(r[0],) for r in letters])
            conn.execute("COMMIT")
            return len(letters)

        return await self._db.call(run)

    # --- receipts and idempotent processing -------------------------------------------------

    async def record_receipts(self, subscription: str, consumer_id: str,
                              event_ids: Sequence[str], *, read: bool) -> None:
        sub = self._sub(subscription)
        now = _to_us(datetime.now(timezone.utc))
        rows = [(sub.id, consumer_id, i, now) for i in event_ids]
        if not rows:
            return

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR IGNORE INTO receipts (sub_id, consumer, event_id, "
                             "delivered_at) VALUES (?, ?, ?, ?)", rows)
            if read:
                conn.executemany("UPDATE receipts SET read_at = ? WHERE sub_id = ? AND "
                                 "consumer = ? AND event_id = ? AND read_at IS NULL",
                                 [(now, s, c, e) for s, c, e, _ in rows])
            conn.execute("COMMIT")

        await self._db.call(run)

    async def list_receipts(self, subscription: str, *, event_id: str | None = None,
                            consumer_id: str | None = None) -> list[Receipt]:
        sub = self._sub(subscription)
        sql = "SELECT consumer, event_id, delivered_at, read_at FROM receipts WHERE sub_id = ?"
        args: list[Any] = [sub.id]
        if event_id is not None:
            sql += " AND event_id = ?"
            args.append(event_id)
        if consumer_id is not None:
            sql += " AND consumer = ?"
            args.append(consumer_id)
        sql += " ORDER BY rowid"

        def run(conn: sqlite3.Connection) -> list[Receipt]:
            return [Receipt(subscription, r[0], r[1], _from_us(r[2]),
                            None if r[3] is None else _from_us(r[3]))
                    for r in conn.execute(sql, args)]

        return await self._db.call(run)

    async def mark_processed(self, subscription: str, key: str) -> bool:
        sub = self._sub(subscription)
        now = _to_us(datetime.now(timezone.utc))

        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute("INSERT OR IGNORE INTO processed (sub_id, key, at) "
                                "VALUES (?, ?, ?)", (sub.id, key, now)).rowcount == 1

        return await self._db.call(run)

    async def ack_processed(self, subscription: str, group: str, consumer_id: str,
                            event_id: str) -> bool:
        # the processed mark and the ack in one transaction: both happen, or neither
        sub = self._sub(subscription)
        gid = await self._group_id(subscription, group)
        now = _to_us(datetime.now(timezone.utc))

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("INSERT OR IGNORE INTO processed (sub_id, key, at) "
                             "VALUES (?, ?, ?)", (sub.id, event_id, now))
                held = conn.execute("DELETE FROM pending WHERE group_id = ? AND state = 1 AND "
                                    "consumer = ? AND event_id = ?",
                                    (gid, consumer_id, event_id)).rowcount == 1
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return held

        return await self._db.call(run)

    async def is_processed(self, subscription: str, key: str) -> bool:
        sub = self._sub(subscription)

        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute("SELECT 1 FROM processed WHERE sub_id = ? AND key = ?",
                                (sub.id, key)).fetchone() is not None

        return await self._db.call(run)

    # --- snapshots (used by svrnty_events_sqlite.rebuild) ---------------------------------------

    async def load_snapshot(self, stream: str, correlation_id: str,
                            key: str = "default") -> Snapshot | None:
        """The latest snapshot of a workflow's state, or None."""
        s = self._stream(stream)

        def run(conn: sqlite3.Connection) -> Snapshot | None:
            row = conn.execute("SELECT version, seq, state, taken_at FROM snapshots WHERE "
                               "stream_id = ? AND correlation_id = ? AND key = ?",
                               (s.id, correlation_id, key)).fetchone()
            if row is None:
                return None
            return Snapshot(stream, correlation_id, key, row[0], row[1], row[2],
                            _from_us(row[3]))

        return await self._db.call(run)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` as the workflow's latest (an older one is not kept)."""
        s = self._stream(snapshot.stream)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO snapshots (stream_id, correlation_id, key, version, seq, state, "
                "taken_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "version = excluded.version, seq = excluded.seq, state = excluded.state, "
                "taken_at = excluded.taken_at WHERE excluded.version > snapshots.version",
                (s.id, snapshot.correlation_id, snapshot.key, snapshot.version,
                 snapshot.sequence, snapshot.state, _to_us(snapshot.taken_at)))

        await self._db.call(run)
