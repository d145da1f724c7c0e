"""The log of each stream: streams, append (idempotent by event id, optimistic concurrency per
correlation id, in the store's transaction or in the application's own: the outbox), reads,
and retention (by count and age in bounded steps, with the stream's retention policy for what a
delivery group has not settled).

Appends to one stream serialize on the stream's row (``SELECT ... FOR UPDATE``): sequences are
assigned under that lock, so they are dense and commit in order (a reader that sees sequence
``n`` sees every sequence before it)."""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec

from svrnty_events.config import RetentionPolicy, StreamConfig, StreamType
from svrnty_events.errors import ConcurrencyError, UnknownStreamError
from svrnty_events.events import RecordedEvent, partition_of
from svrnty_events.store import StreamInfo, batch_correlation, check_partitions

from .connection import Notifier
from .rows import (
    E_COLUMNS,
    EVENT_COLUMNS,
    decode_filter,
    event,
    filter_sql,
    headers_encoder,
    now_us,
    pack_event,
    to_us,
)

if TYPE_CHECKING:
    from .connection import PostgresStoreOptions

#: an ephemeral stream is trimmed of settled events once it holds this many
EPHEMERAL_TRIM_AT = 1024
_retention_log = logging.getLogger("svrnty_events.retention")
config_encoder = msgspec.json.Encoder()
stream_config_decoder = msgspec.json.Decoder(StreamConfig)


@dataclass
class Stream:
    id: int
    name: str
    config: StreamConfig
    notifier: Notifier = field(default_factory=Notifier)
    appended_since_trim: int = 0


class Log:
    """The streams part of :class:`~svrnty_events_postgres.PostgresStore`."""

    options: PostgresStoreOptions
    s: str
    channel: str
    _streams: dict[str, Stream]
    _notifiers: dict[int, Notifier]

    if TYPE_CHECKING:
        def _tx(self, own: bool = True) -> Any: ...
        def _conn(self, own: bool = True) -> Any: ...

    def _stream(self, name: str) -> Stream:
        try:
            return self._streams[name]
        except KeyError:
            raise UnknownStreamError(name, self._streams) from None

    async def create_stream(self, config: StreamConfig) -> None:
        s = self.s
        async with self._tx() as conn:
            row = await conn.fetchrow(f"SELECT config, first_seq, next_seq FROM {s}.streams "
                                      "WHERE name = $1 FOR UPDATE", config.name)
            if row is not None:
                stored = stream_config_decoder.decode(row[0]).partitions
                check_partitions(config.name, stored, config.partitions,
                                 has_events=row[2] > row[1])
            stream_id = await conn.fetchval(
                f"INSERT INTO {s}.streams (name, type, config) VALUES ($1, $2, $3) "
                "ON CONFLICT (name) DO UPDATE SET type = excluded.type, "
                "config = excluded.config RETURNING id",
                config.name, str(config.type), config_encoder.encode(config))
        st = self._streams.get(config.name)
        if st is None:
            st = self._streams[config.name] = Stream(stream_id, config.name, config)
            self._notifiers[stream_id] = st.notifier
        st.config = config
        await self._retain(st)  # the configuration may have tightened retention

    async def append(self, stream: str, events: Sequence[RecordedEvent], *,
                     expected_version: int | None = None) -> list[RecordedEvent]:
        st = self._stream(stream)
        if not events:
            return []
        batch_correlation(events, expected_version)
        fast = None
        if expected_version is None:
            fast = await self._append_new(st, events)
        if fast is not None:
            out, added, needs_retention = fast
        else:
            async with self._tx() as conn:
                out, added, needs_retention = await self._append(conn, st, events,
                                                                 expected_version)
        if added:
            self._appended(st, added, needs_retention)
            if needs_retention or (st.config.type is StreamType.EPHEMERAL
                                   and st.appended_since_trim >= EPHEMERAL_TRIM_AT // 2):
                await self._retain(st)
        return out

    async def append_in(self, connection: asyncpg.Connection, stream: str,
                        events: Sequence[RecordedEvent], *,
                        expected_version: int | None = None) -> list[RecordedEvent]:
        """Append ``events`` on ``connection``, inside the transaction the caller has open
        there (the transactional outbox): they are in the stream if and only if that
        transaction commits, and consumers are woken when it does (NOTIFY is transactional).

        The stream's row stays locked until the caller's transaction ends: other appends to
        the stream wait for it, so keep the transaction short. Raises ConcurrencyError like
        :meth:`append`; retention runs with the next append through the store."""
        st = self._stream(stream)
        if not events:
            return []
        batch_correlation(events, expected_version)
        if not connection.is_in_transaction():
            raise ValueError("append_in needs a connection with an open transaction "
                             "(async with connection.transaction(): ...)")
        out, added, _ = await self._append(connection, st, events, expected_version)
        if added:
            st.appended_since_trim += added  # this host's waiters wake with the NOTIFY
        return out

    def _appended(self, st: Stream, added: int, needs_retention: bool) -> None:
        st.appended_since_trim += added
        st.notifier.bump()  # this host's waiters at once; the others with the NOTIFY

    async def _append_new(self, st: Stream, events: Sequence[RecordedEvent]
                          ) -> tuple[list[RecordedEvent], int, bool] | None:
        """The batch appended in one statement, when none of its ids is in the stream yet
        (else None: nothing was appended)."""
        unique: dict[str, RecordedEvent] = {}
        for e in events:
            unique.setdefault(e.id, e)
        batch = list(unique.values())
        partitions = st.config.partitions
        parts = [partition_of(e.correlation_id, partitions) for e in batch]
        try:
            async with self._conn() as conn:
                next_seq, first, oldest_ts, _ = await conn.fetchrow(
                    _append_sql(self.s), st.id, list(unique), [e.type for e in batch],
                    [e.correlation_id for e in batch], [to_us(e.timestamp) for e in batch],
                    [e.data for e in batch], [e.content_type for e in batch],
                    [headers_encoder.encode(e.headers) if e.headers else None for e in batch],
                    parts, self.channel)
        except asyncpg.exceptions.UniqueViolationError:
            return None
        replace = msgspec.structs.replace
        recorded = {e.id: replace(e, sequence=next_seq + i, stream=st.name, partition=p)
                    for i, (e, p) in enumerate(zip(batch, parts))}
        added = len(batch)
        return ([recorded[e.id] for e in events], added,
                self._needs_retention(st, first, next_seq + added, oldest_ts, batch))

    @staticmethod
    def _needs_retention(st: Stream, first: int, end: int, oldest_ts: int | None,
                         batch: Sequence[RecordedEvent]) -> bool:
        max_count, cutoff = _probe(st)
        if max_count is not None and end - first > max_count:
            return True
        if cutoff is not None:
            oldest = oldest_ts if oldest_ts is not None else \
                min(to_us(e.timestamp) for e in batch)
            return oldest < cutoff
        return False

    async def _append(self, conn: asyncpg.Connection, st: Stream,
                      events: Sequence[RecordedEvent], expected_version: int | None
                      ) -> tuple[list[RecordedEvent], int, bool]:
        s = self.s
        correlation = events[0].correlation_id
        first, next_seq, version, oldest_ts = await conn.fetchrow(
            f"SELECT first_seq, next_seq, (SELECT version FROM {s}.correlations WHERE "
            "stream_id = $1 AND correlation_id = $2), (SELECT ts FROM "
            f"{s}.events e WHERE e.stream_id = $1 AND e.seq >= st.first_seq ORDER BY e.seq "
            f"LIMIT 1) FROM {s}.streams st WHERE id = $1 FOR UPDATE", st.id, correlation)
        if expected_version is not None and (version or 0) != expected_version:
            raise ConcurrencyError(st.name, correlation, expected_version, version or 0)
        partitions = st.config.partitions
        parts = [partition_of(e.correlation_id, partitions) for e in events]
        # one statement: the events not in the stream yet (nor earlier in the batch) get the
        # next sequences, the correlation versions and the stream's end move, NOTIFY is queued
        rows = await conn.fetch(
            f"WITH input AS (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], "
            "$5::bigint[], $6::bytea[], $7::text[], $8::bytea[], $9::int[]) WITH ORDINALITY "
            "AS t(id, type, correlation_id, ts, data, content_type, headers, part, ord)), "
            # one unique-index probe per event (a hash join would read the whole stream)
            "fresh AS (SELECT DISTINCT ON (i.id) i.* FROM input i LEFT JOIN LATERAL (SELECT 1 "
            f"AS found FROM {s}.events e WHERE e.stream_id = $1 AND e.id = i.id LIMIT 1) k "
            "ON true WHERE k.found IS NULL ORDER BY i.id, i.ord), "
            f"ins AS (INSERT INTO {s}.events (stream_id, seq, id, type, correlation_id, ts, "
            "data, content_type, headers, part) SELECT $1, $10 + row_number() OVER (ORDER BY "
            "ord) - 1, id, type, correlation_id, ts, data, content_type, headers, part FROM "
            "fresh RETURNING id, seq, correlation_id), "
            f"ver AS (INSERT INTO {s}.correlations (stream_id, correlation_id, version) "
            "SELECT $1, correlation_id, count(*) FROM ins GROUP BY correlation_id "
            "ON CONFLICT (stream_id, correlation_id) DO UPDATE SET version = "
            "correlations.version + excluded.version), "
            f"moved AS (UPDATE {s}.streams SET next_seq = next_seq + (SELECT count(*) FROM ins) "
            "WHERE id = $1 AND EXISTS (SELECT 1 FROM ins) "
            "RETURNING pg_notify($11, $1::text)) "
            "SELECT id, seq FROM ins, (SELECT count(*) FROM moved) AS m",
            st.id, [e.id for e in events], [e.type for e in events],
            [e.correlation_id for e in events], [to_us(e.timestamp) for e in events],
            [e.data for e in events], [e.content_type for e in events],
            [headers_encoder.encode(e.headers) if e.headers else None for e in events], parts,
            next_seq, self.channel)
        seqs = {r[0]: r[1] for r in rows}
        existing: dict[str, RecordedEvent] = {}
        if len(seqs) < len(events):
            missing = list({e.id for e in events} - seqs.keys())
            for r in await conn.fetch(f"SELECT {EVENT_COLUMNS} FROM {s}.events WHERE "
                                      "stream_id = $1 AND id = ANY($2::text[])", st.id,
                                      missing):
                existing[r[1]] = event(r, st.name)
        replace = msgspec.structs.replace
        out: list[RecordedEvent] = []
        for e, part in zip(events, parts):
            known = existing.get(e.id)
            if known is None:
                known = existing[e.id] = replace(e, sequence=seqs[e.id], stream=st.name,
                                                 partition=part)
            out.append(known)
        added = len(seqs)
        return out, added, added > 0 and self._needs_retention(st, first, next_seq + added,
                                                               oldest_ts, events)

    async def _retain(self, st: Stream) -> None:
        """Apply retention (count, age, ephemeral trim) in bounded steps: each step is one
        transaction of at most ``retention_step`` deleted events."""
        st.appended_since_trim = 0
        lost: Counter[str] = Counter()
        more = True
        while more:
            async with self._tx() as conn:
                more, step_lost = await self._retention_step(conn, st)
            lost.update(step_lost)
        for subscription, count in lost.items():
            _retention_log.warning(
                "stream %s: retention removed %d event(s) that subscription %s had not "
                "settled; they are in its dead-letter queue (reason: retention)",
                st.name, count, subscription)

    async def read(self, stream: str, *, from_sequence: int = 0, limit: int | None = None,
                   correlation_id: str | None = None, event_types: Sequence[str] | None = None,
                   since: datetime | None = None) -> list[RecordedEvent]:
        st = self._stream(stream)
        sql = f"SELECT {EVENT_COLUMNS} FROM {self.s}.events WHERE stream_id = $1 AND seq >= $2"
        args: list[Any] = [st.id, from_sequence]
        if correlation_id is not None:
            args.append(correlation_id)
            sql += f" AND correlation_id = ${len(args)}"
        if event_types:
            args.append(list(dict.fromkeys(event_types)))
            sql += f" AND type = ANY(${len(args)}::text[])"
        if since is not None:
            args.append(to_us(since))
            sql += f" AND ts >= ${len(args)}"
        sql += " ORDER BY seq"
        if limit is not None:
            args.append(limit)
            sql += f" LIMIT ${len(args)}"
        async with self._conn() as conn:
            rows = await conn.fetch(sql, *args)
        return [event(row, stream) for row in rows]

    async def correlation_version(self, stream: str, correlation_id: str) -> int:
        async with self._conn() as conn:
            version = await conn.fetchval(
                f"SELECT version FROM {self.s}.correlations WHERE stream_id = $1 AND "
                "correlation_id = $2", self._stream(stream).id, correlation_id)
        return version or 0

    async def stream_info(self, stream: str) -> StreamInfo:
        st = self._stream(stream)
        async with self._conn() as conn:
            first, end = await conn.fetchrow(
                f"SELECT first_seq, next_seq FROM {self.s}.streams WHERE id = $1", st.id)
        return StreamInfo(name=stream, type=str(st.config.type), length=end - first,
                          first_sequence=first, next_sequence=end,
                          metadata={"store": "postgres", "schema": self.options.schema,
                                    "partitions": str(st.config.partitions)})

    # --- retention -----------------------------------------------------------------------------

    async def _retention_step(self, conn: asyncpg.Connection, st: Stream
                              ) -> tuple[bool, Counter[str]]:
        """Delete up to ``retention_step`` of the oldest events due to go, dead-lettering what
        a group had not settled (or, with the keep_unsettled policy, keeping it). Returns
        whether more are due, and the events dead-lettered per subscription. Locks the stream
        row, then the groups' rows (the order claims take them in too)."""
        s, step, config = self.s, self.options.retention_step, st.config
        first, end = await conn.fetchrow(
            f"SELECT first_seq, next_seq FROM {s}.streams WHERE id = $1 FOR UPDATE", st.id)
        max_count, cutoff = _probe(st)
        target = first
        more_old = False  # the age scan saw only old events: more may follow
        if max_count is not None and end - first > max_count:
            target = end - max_count
        if cutoff is not None:
            rows = await conn.fetch(f"SELECT seq, ts FROM {s}.events WHERE stream_id = $1 AND "
                                    "seq >= $2 ORDER BY seq LIMIT $3", st.id, target, step)
            more_old = len(rows) == step
            for seq, ts in rows:
                if ts >= cutoff:
                    more_old = False
                    break
                target = seq + 1
        if config.type is StreamType.EPHEMERAL and end - first >= EPHEMERAL_TRIM_AT:
            target = max(target, await self._settled_floor(conn, st.id, end))
        stop = min(target, first + step)
        more = stop < target or (more_old and stop == target)
        lost: Counter[str] = Counter()
        if stop > first:
            groups = await conn.fetch(
                f"SELECT g.id, g.cursor, g.filter, b.id, b.name, g.name FROM {s}.groups g "
                f"JOIN {s}.subscriptions b ON b.id = g.sub_id WHERE b.stream_id = $1 "
                "ORDER BY g.id FOR UPDATE OF g", st.id)
            if config.retention_policy is RetentionPolicy.KEEP_UNSETTLED:
                low = stop
                for g in groups:
                    low = min(low, await self._unsettled(conn, st.id, first, stop, *g[:3]))
                if low < stop:
                    stop, more = low, False
            else:
                for g in groups:
                    lost[g[4]] += await self._retire(conn, st, first, stop, *g)
        if stop > first:
            await conn.execute(f"DELETE FROM {s}.events WHERE stream_id = $1 AND seq >= $2 AND "
                               "seq < $3", st.id, first, stop)
            await conn.execute(f"UPDATE {s}.streams SET first_seq = $2 WHERE id = $1",
                               st.id, stop)
        return more, +lost

    async def _unsettled(self, conn: asyncpg.Connection, stream_id: int, first: int, stop: int,
                         gid: int, cursor: int, filter_blob: bytes | None) -> int:
        """The oldest sequence below ``stop`` the group has not settled (else ``stop``)."""
        s = self.s
        low = await conn.fetchval(
            f"SELECT least((SELECT min(seq) FROM {s}.pending WHERE group_id = $1 AND seq >= "
            f"$2), (SELECT min(seqs[1]) FROM {s}.batches WHERE group_id = $1))", gid, first)
        low = stop if low is None else min(low, stop)
        match, args = filter_sql(decode_filter(filter_blob), 4)
        seq = await conn.fetchval(f"SELECT seq FROM {s}.events WHERE stream_id = $1 AND seq >= "
                                  f"$2 AND seq < $3{match} ORDER BY seq LIMIT 1",
                                  stream_id, max(cursor, first), low, *args)
        return low if seq is None else seq

    async def _retire(self, conn: asyncpg.Connection, st: Stream, first: int, stop: int,
                      gid: int, cursor: int, filter_blob: bytes | None, sub_id: int, _sub: str,
                      group: str) -> int:
        """Retention removes the events below ``stop``: those the group had not read yet and
        those waiting for redelivery go to its dead-letter queue; an event in flight is copied
        into its pending row, to stay with the group until settled. Returns how many were
        dead-lettered."""
        s = self.s
        match, args = filter_sql(decode_filter(filter_blob), 4)
        # (event, attempts, last reason) of each unsettled event
        unsettled = [(event(r, st.name), 0, None) for r in await conn.fetch(
            f"SELECT {EVENT_COLUMNS} FROM {s}.events WHERE stream_id = $1 AND seq >= $2 AND "
            f"seq < $3{match} ORDER BY seq", st.id, max(cursor, first), stop, *args)]
        if cursor < stop:
            await conn.execute(f"UPDATE {s}.groups SET cursor = $2 WHERE id = $1", gid, stop)
        # the batches holding an event about to go become pending rows, which keep a copy
        tokens = await conn.fetchval(f"SELECT array_agg(token) FROM {s}.batches WHERE "
                                     "group_id = $1 AND seqs[1] < $2", gid, stop)
        if tokens:
            await conn.execute(detach_sql(s), gid, st.id, None, tokens, None)
        rows = await conn.fetch(
            f"SELECT p.state, p.attempts, p.reason, {E_COLUMNS} FROM {s}.pending p "
            f"JOIN {s}.events e ON e.stream_id = $1 AND e.seq = p.seq "
            "WHERE p.group_id = $2 AND p.seq < $3 AND p.event IS NULL FOR UPDATE OF p",
            st.id, gid, stop)
        unsettled += [(event(r, st.name, 3), r[1], r[2]) for r in rows if r[0] == 0]
        kept = [(gid, r[3], pack_event(event(r, st.name, 3))) for r in rows if r[0] == 1]
        if kept:
            await conn.executemany(f"UPDATE {s}.pending SET event = $3 WHERE group_id = $1 "
                                   "AND seq = $2", kept)
        await conn.execute(f"DELETE FROM {s}.pending WHERE group_id = $1 AND seq < $2 AND "
                           "state = 0 AND event IS NULL", gid, stop)
        if unsettled:
            at = now_us()
            await conn.executemany(
                f"INSERT INTO {s}.dead_letters (sub_id, group_name, event_id, seq, consumer, "
                "reason, attempts, error, at, event) VALUES ($1, $2, $3, $4, '', 'retention', "
                "$5, $6, $7, $8) ON CONFLICT (sub_id, group_name, event_id) DO UPDATE SET "
                "seq = excluded.seq, consumer = excluded.consumer, reason = excluded.reason, "
                "attempts = excluded.attempts, error = excluded.error, at = excluded.at, "
                "event = excluded.event",
                [(sub_id, group, e.id, e.sequence, attempts, reason, at, pack_event(e))
                 for e, attempts, reason in unsettled])
        return len(unsettled)

    async def _settled_floor(self, conn: asyncpg.Connection, stream_id: int, end: int) -> int:
        """Ephemeral streams: the oldest event some subscription has not settled."""
        s = self.s
        low = end
        for sub_id, floor in await conn.fetch(f"SELECT id, floor FROM {s}.subscriptions WHERE "
                                              "stream_id = $1", stream_id):
            groups = await conn.fetchval(
                f"SELECT min(least(g.cursor, (SELECT min(p.seq) FROM {s}.pending p "
                f"WHERE p.group_id = g.id), (SELECT min(b.seqs[1]) FROM {s}.batches b "
                f"WHERE b.group_id = g.id))) FROM {s}.groups g WHERE g.sub_id = $1",
                sub_id)
            if groups is not None:
                floor = groups
                await conn.execute(f"UPDATE {s}.subscriptions SET floor = $2 WHERE id = $1",
                                   sub_id, floor)
            low = min(low, floor)
        return low


@functools.lru_cache(maxsize=16)
def detach_sql(schema: str) -> str:
    """detach.sql: batches rows into the pending rows they stand for."""
    return files(__package__).joinpath("detach.sql").read_text(encoding="utf-8").replace(
        "{s}", schema)


@functools.lru_cache(maxsize=64)
def _append_sql(schema: str) -> str:
    return files(__package__).joinpath("append.sql").read_text(encoding="utf-8").replace(
        "{s}", schema)


def _probe(st: Stream) -> tuple[int | None, int | None]:
    """(retention_max_count, oldest timestamp kept in microseconds): what append checks."""
    cfg = st.config
    cutoff = None if cfg.retention_max_age is None else \
        now_us() - int(cfg.retention_max_age * 1e6)
    return cfg.retention_max_count, cutoff
