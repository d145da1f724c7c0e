"""Delivery state of each subscription: groups and their cursors, claims, ack / nack /
release, dead letters, receipts and processed marks.

``pending`` holds a group's events between its cursor and their settlement: waiting for
(re)delivery (state 0, claimable from ``due`` on) or in flight to a consumer (state 1, until
``due``). Settling an event deletes its row; the cursor marks everything before it, except the
rows still pending, as settled. A row keeps a copy of its event (``pending.event``) when
retention removed the event from the log while it was in flight.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from svrnty_events.config import DeliverySemantics, SubscriptionConfig
from svrnty_events.errors import UnknownSubscriptionError
from svrnty_events.store import (
    Claimed,
    ClaimFilter,
    ClaimResult,
    DeadLetter,
    Receipt,
    processed_key,
)

from .log import Stream, config_encoder, stream_config_decoder
from .rows import (
    E_COLUMNS,
    EVENT_COLUMNS,
    chunks,
    decode_filter,
    encode_filter,
    event,
    filter_sql,
    from_us,
    marks,
    now_us,
    pack_event,
    unpack_event,
)

if TYPE_CHECKING:
    from .database import Database
    from .log import Log

    _Base = Log
else:
    _Base = object

_IN_FLIGHT = 1  # pending.state; 0 is waiting
_RESTART_REASON = "host restarted before ack"
_EXPIRED_REASON = "visibility timeout expired"


@dataclass
class Subscription:
    id: int
    name: str
    stream: Stream
    config: SubscriptionConfig


class Delivery(_Base):
    """The subscriptions part of :class:`~svrnty_events_sqlite.SqliteStore`."""

    _db: Database
    _subs: dict[str, Subscription]
    _groups: dict[tuple[str, str], int]
    _group_filters: dict[int, bytes | None]

    def _sub(self, name: str) -> Subscription:
        try:
            return self._subs[name]
        except KeyError:
            raise UnknownSubscriptionError(name, self._subs) from None

    async def create_subscription(self, config: SubscriptionConfig) -> None:
        s = self._stream(config.stream)
        [(sub_id,)] = await self._db.query(
            "INSERT INTO subscriptions (name, stream_id, config, floor) "
            "SELECT ?, id, ?, first_seq FROM streams WHERE id = ? ON CONFLICT (name) "
            "DO UPDATE SET config = excluded.config RETURNING id",
            (config.name, config_encoder.encode(config), s.id))
        sub = self._subs.get(config.name)
        if sub is None:
            self._subs[config.name] = Subscription(sub_id, config.name, s, config)
        else:
            sub.config = config

    async def _group_id(self, subscription: str, group: str, *, create: bool = True,
                        start: int | None = None) -> int | None:
        key = (subscription, group)
        gid = self._groups.get(key)
        if gid is None:
            sub = self._sub(subscription)
            gid = await self._db.call(_group_row, sub.id, sub.stream.id, group, start, create)
            if gid is not None:
                self._groups[key] = gid
        return gid

    async def ensure_group(self, subscription: str, group: str, *,
                           start: int | None = None, filter: ClaimFilter | None = None) -> None:
        # the filter says what the group holds, for retention (each claim passes it too)
        blob = encode_filter(filter)
        key = (subscription, group)
        gid = self._groups.get(key)
        if gid is None or self._group_filters.get(gid, False) != blob:
            sub = self._sub(subscription)
            gid = await self._db.transaction(_ensure_group, sub.id, sub.stream.id, group,
                                             start, blob)
            self._groups[key], self._group_filters[gid] = gid, blob

    async def delete_group(self, subscription: str, group: str) -> None:
        sub = self._sub(subscription)
        gid = self._groups.pop((subscription, group), None)
        self._group_filters.pop(gid or 0, None)
        await self._db.transaction(_delete_group, sub.id, group)

    # --- claim and settle ------------------------------------------------------------------------

    async def claim(self, subscription: str, group: str, consumer_id: str, *, max_count: int,
                    visibility_timeout: float, filter: ClaimFilter | None = None) -> ClaimResult:
        """Hand up to ``max_count`` events to ``consumer_id`` (see the contract), in one
        worker transaction, with the filter in the queries."""
        s = self._sub(subscription).stream
        gid = await self._group_id(subscription, group)
        # read before looking, so an append that lands meanwhile wakes the next wait
        version = s.notifier.version
        claimed, next_due = await self._db.transaction(
            _claim, gid, s, consumer_id, max_count, visibility_timeout,
            None if filter is None or filter.empty else filter)
        return ClaimResult(claimed, version, next_due)

    async def _held(self, subscription: str, group: str, consumer_id: str,
                    event_ids: Sequence[str], change: str, *args: Any) -> list[str]:
        """Apply ``change`` (``UPDATE pending SET ...`` or ``DELETE FROM pending``, with
        ``args``) to the events of ``event_ids`` that ``consumer_id`` holds. Returns the
        others."""
        gid = await self._group_id(subscription, group)
        ids = list(event_ids)

        def run(conn: sqlite3.Connection) -> set[str]:
            return {row[0] for chunk in chunks(ids) for row in conn.execute(
                f"{change} WHERE group_id = ? AND state = 1 AND consumer = ? AND "
                f"event_id IN ({marks(len(chunk))}) RETURNING event_id",
                (*args, gid, consumer_id, *chunk))}

        done = await self._db.transaction(run) if ids else set()
        return [i for i in ids if i not in done]

    async def ack(self, subscription: str, group: str, consumer_id: str,
                  event_ids: Sequence[str]) -> list[str]:
        return await self._held(subscription, group, consumer_id, event_ids,
                                "DELETE FROM pending")

    async def extend(self, subscription: str, group: str, consumer_id: str,
                     event_ids: Sequence[str], *, visibility_timeout: float) -> list[str]:
        return await self._held(subscription, group, consumer_id, event_ids,
                                "UPDATE pending SET due = ?", time.time() + visibility_timeout)

    async def nack(self, subscription: str, group: str, consumer_id: str, event_id: str, *,
                   delay: float, reason: str | None = None) -> bool:
        due = time.time() + delay if delay > 0 else 0.0
        done = not await self._held(
            subscription, group, consumer_id, [event_id], "UPDATE pending SET state = 0, "
            "consumer = NULL, due = ?, reason = COALESCE(?, reason)", due, reason or None)
        if done:
            self._sub(subscription).stream.notifier.bump()
        return done

    async def release(self, subscription: str, group: str, consumer_id: str, *,
                      event_ids: Sequence[str] | None = None,
                      unseen: Sequence[str] = ()) -> int:
        sub = self._sub(subscription)
        gid = await self._group_id(subscription, group, create=False)
        if gid is None:
            return 0
        if event_ids is not None:
            wanted = set(event_ids)
            unseen = [i for i in unseen if i in wanted]
        held = "group_id = ? AND state = 1 AND consumer = ?"

        def run(conn: sqlite3.Connection) -> int:
            # claimed but never handed to the consumer's code: not an attempt
            conn.executemany(f"UPDATE pending SET attempts = attempts - 1 WHERE {held} AND "
                             "event_id = ? AND attempts > 0",
                             [(gid, consumer_id, i) for i in unseen])
            back = "UPDATE pending SET state = 0, consumer = NULL, due = 0 WHERE " + held
            if event_ids is None:
                return conn.execute(back, (gid, consumer_id)).rowcount
            return sum(conn.execute(back + f" AND event_id IN ({marks(len(chunk))})",
                                    (gid, consumer_id, *chunk)).rowcount
                       for chunk in chunks(list(dict.fromkeys(event_ids))))

        count = await self._db.transaction(run)
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
            row = conn.execute("SELECT seq, state, consumer, event FROM pending WHERE "
                               "group_id = ? AND event_id = ?", (gid, event_id)).fetchone()
            if row is None or (row[1] == _IN_FLIGHT and row[2] != consumer_id):
                return False
            seq, kept = row[0], row[3]
            conn.execute("DELETE FROM pending WHERE group_id = ? AND seq = ?", (gid, seq))
            found = conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? AND "
                                 "seq = ?", (s.id, seq)).fetchone()
            if found is None and kept is None:  # removed by retention: nothing left to keep
                return False
            conn.execute(
                "INSERT OR REPLACE INTO dead_letters (sub_id, group_name, event_id, seq, "
                "consumer, reason, attempts, error, at, event) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sub.id, group, event_id, seq, consumer_id, reason, attempts, error,
                 now_us(), pack_event(event(found, s.name)) if found else kept))
            return True

        return await self._db.transaction(run)

    async def group_lags(self, subscription: str) -> dict[str, int]:
        sub = self._sub(subscription)
        stream_id = sub.stream.id

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            out: dict[str, int] = {}
            groups = conn.execute("SELECT id, name, cursor, filter FROM groups WHERE sub_id = ?",
                                  (sub.id,)).fetchall()
            for gid, name, cursor, blob in groups:
                f = decode_filter(blob)
                if f is not None and f.partition is not None:  # the partition index
                    ahead = conn.execute(
                        "SELECT count(*) FROM events WHERE stream_id = ? AND part = ? AND "
                        "seq >= ?", (stream_id, f.partition, cursor)).fetchone()[0]
                else:  # a range of the primary key
                    ahead = conn.execute(
                        "SELECT count(*) FROM events WHERE stream_id = ? AND seq >= ?",
                        (stream_id, cursor)).fetchone()[0]
                held = conn.execute("SELECT count(*) FROM pending WHERE group_id = ?",
                                    (gid,)).fetchone()[0]
                out[name] = ahead + held
            return out

        return await self._db.transaction(run)

    async def list_dead_letters(self, subscription: str, *,
                                limit: int | None = None) -> list[DeadLetter]:
        rows = await self._db.query(
            "SELECT event, group_name, consumer, reason, attempts, at, error FROM "
            "dead_letters WHERE sub_id = ? ORDER BY id LIMIT ?",
            (self._sub(subscription).id, -1 if limit is None else limit))
        return [DeadLetter(event=unpack_event(r[0]), subscription=subscription,
                           group=r[1], consumer_id=r[2], reason=r[3], attempts=r[4],
                           dead_lettered_at=from_us(r[5]), error=r[6]) for r in rows]

    async def replay_dead_letters(self, subscription: str,
                                  event_ids: Sequence[str] | None = None) -> int:
        sub = self._sub(subscription)
        s = sub.stream

        def run(conn: sqlite3.Connection) -> int:
            letters = _pick_letters(conn, sub.id, event_ids)
            for letter_id, group, event_id, seq in letters:
                conn.execute("DELETE FROM dead_letters WHERE id = ?", (letter_id,))
                if conn.execute("SELECT 1 FROM events WHERE stream_id = ? AND seq = ? AND "
                                "id = ?", (s.id, seq, event_id)).fetchone() is None:
                    continue  # removed by retention: nothing to redeliver
                gid = _group_row(conn, sub.id, s.id, group, None, True)
                conn.execute("INSERT OR IGNORE INTO pending (group_id, seq, event_id, state, "
                             "due, attempts) VALUES (?, ?, ?, 0, 0, 0)", (gid, seq, event_id))
            return len(letters)

        count = await self._db.transaction(run)
        if count:
            s.notifier.bump()
        return count

    async def purge_dead_letters(self, subscription: str,
                                 event_ids: Sequence[str] | None = None) -> int:
        sub = self._sub(subscription)

        def run(conn: sqlite3.Connection) -> int:
            letters = _pick_letters(conn, sub.id, event_ids)
            conn.executemany("DELETE FROM dead_letters WHERE id = ?", [(r[0],) for r in letters])
            return len(letters)

        return await self._db.transaction(run)

    # --- receipts and idempotent processing ------------------------------------------------------

    async def record_receipts(self, subscription: str, consumer_id: str,
                              event_ids: Sequence[str], *, read: bool) -> None:
        sub = self._sub(subscription)
        now = now_us()
        rows = [(sub.id, consumer_id, i, now) for i in event_ids]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT OR IGNORE INTO receipts (sub_id, consumer, event_id, "
                             "delivered_at) VALUES (?, ?, ?, ?)", rows)
            if read:
                conn.executemany("UPDATE receipts SET read_at = ? WHERE sub_id = ? AND "
                                 "consumer = ? AND event_id = ? AND read_at IS NULL",
                                 [(now, s, c, e) for s, c, e, _ in rows])

        if rows:
            await self._db.transaction(run)

    async def list_receipts(self, subscription: str, *, event_id: str | None = None,
                            consumer_id: str | None = None) -> list[Receipt]:
        sql = "SELECT consumer, event_id, delivered_at, read_at FROM receipts WHERE sub_id = ?"
        args: list[Any] = [self._sub(subscription).id]
        if event_id is not None:
            sql += " AND event_id = ?"
            args.append(event_id)
        if consumer_id is not None:
            sql += " AND consumer = ?"
            args.append(consumer_id)
        return [Receipt(subscription, r[0], r[1], from_us(r[2]),
                        None if r[3] is None else from_us(r[3]))
                for r in await self._db.query(sql + " ORDER BY rowid", args)]

    async def mark_processed(self, subscription: str, key: str) -> bool:
        return await self._db.call(_mark_processed, self._sub(subscription).id, key)

    async def ack_processed(self, subscription: str, group: str, consumer_id: str,
                            event_id: str) -> bool:
        # the processed mark and the ack in one transaction: both happen, or neither
        sub_id = self._sub(subscription).id
        gid = await self._group_id(subscription, group)
        key = processed_key(group, event_id)

        def run(conn: sqlite3.Connection) -> bool:
            _mark_processed(conn, sub_id, key)
            return conn.execute("DELETE FROM pending WHERE group_id = ? AND state = 1 AND "
                                "consumer = ? AND event_id = ?",
                                (gid, consumer_id, event_id)).rowcount == 1

        return await self._db.transaction(run)

    async def process_in_transaction(self, subscription: str, group: str, consumer_id: str,
                                     event_id: str, effect: Callable[[Any], Any]) -> bool | None:
        """See the contract. ``effect`` gets the ``sqlite3.Connection`` and runs on the
        store's database thread, inside the transaction (it must not commit it)."""
        sub_id = self._sub(subscription).id
        gid = await self._group_id(subscription, group)
        key = processed_key(group, event_id)

        def run(conn: sqlite3.Connection) -> bool | None:
            if conn.execute("SELECT 1 FROM pending WHERE group_id = ? AND state = 1 AND "
                            "consumer = ? AND event_id = ?",
                            (gid, consumer_id, event_id)).fetchone() is None:
                return None
            fresh = _mark_processed(conn, sub_id, key)
            if fresh:
                effect(conn)
            conn.execute("DELETE FROM pending WHERE group_id = ? AND event_id = ?",
                         (gid, event_id))
            return fresh

        return await self._db.transaction(run)

    async def is_processed(self, subscription: str, key: str) -> bool:
        return bool(await self._db.query("SELECT 1 FROM processed WHERE sub_id = ? AND key = ?",
                                         (self._sub(subscription).id, key)))


# --- on the database thread ------------------------------------------------------------------

def recover(conn: sqlite3.Connection) -> None:
    """At start: no consumer of a previous process survives it (the file lock guarantees no
    other process has the file), so its in-flight events are redelivered now rather than when
    their visibility deadlines pass. At-most-once streams count an event as done once handed
    over: theirs are dropped instead."""
    at_most_once = [
        row[0] for row in conn.execute("SELECT id, config FROM streams")
        if stream_config_decoder.decode(row[1]).delivery_semantics
        is DeliverySemantics.AT_MOST_ONCE]
    if at_most_once:
        conn.execute(
            "DELETE FROM pending WHERE state = 1 AND group_id IN (SELECT g.id FROM groups g "
            "JOIN subscriptions s ON s.id = g.sub_id "
            f"WHERE s.stream_id IN ({marks(len(at_most_once))}))", at_most_once)
    conn.execute("UPDATE pending SET state = 0, consumer = NULL, due = 0, "
                 "reason = COALESCE(reason, ?) WHERE state = 1", (_RESTART_REASON,))


def _claim(conn: sqlite3.Connection, gid: int, s: Stream, consumer_id: str, max_count: int,
           visibility_timeout: float, f: ClaimFilter | None
           ) -> tuple[list[Claimed], float | None]:
    """One claim, one transaction: the group's due pending rows first (those the filter does
    not match are settled), then new events past the cursor that match, read through the
    filter's index. The cursor passes every new event looked at: all of them up to the
    stream's end when fewer than the room left match."""
    index, match, match_args = filter_sql(f)
    now = time.time()
    deadline = now + visibility_timeout
    # settle the due rows that are not the group's (or whose event retention removed, unless
    # it kept a copy for the consumer that had it)
    conn.execute(f"DELETE FROM pending WHERE group_id = ? AND due <= ? AND event IS NULL AND "
                 f"NOT EXISTS (SELECT 1 FROM events WHERE stream_id = ? AND seq = pending.seq"
                 f"{match})", (gid, now, s.id, *match_args))
    claimed: list[Claimed] = []
    again: list[tuple[Any, ...]] = []
    for row in conn.execute(
            f"SELECT p.seq, p.attempts, p.state, p.reason, p.event, {E_COLUMNS} FROM pending p "
            f"LEFT JOIN events e ON e.stream_id = ? AND e.seq = p.seq "
            f"WHERE p.group_id = ? AND p.due <= ? ORDER BY p.seq LIMIT ?",
            (s.id, gid, now, max_count)):
        seq, attempts, state, reason, kept = row[0], row[1] + 1, row[2], row[3], row[4]
        if state == _IN_FLIGHT and reason is None:
            reason = _EXPIRED_REASON
        e = unpack_event(kept) if row[5] is None else event(row[5:], s.name)
        claimed.append(Claimed(e, attempts, reason))
        again.append((consumer_id, deadline, attempts, reason, gid, seq))
    conn.executemany("UPDATE pending SET state = 1, consumer = ?, due = ?, attempts = ?, "
                     "reason = ? WHERE group_id = ? AND seq = ?", again)
    room = max_count - len(claimed)
    if room > 0:
        cursor, first, end = conn.execute(
            "SELECT g.cursor, s.first_seq, s.next_seq FROM groups g, streams s "
            "WHERE g.id = ? AND s.id = ?", (gid, s.id)).fetchone()
        new = [event(row, s.name) for row in conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events{index} WHERE stream_id = ? AND seq >= ?"
            f"{match} ORDER BY seq LIMIT ?", (s.id, max(cursor, first), *match_args, room))]
        conn.executemany("INSERT INTO pending (group_id, seq, event_id, state, consumer, due, "
                         "attempts) VALUES (?, ?, ?, 1, ?, ?, 1)",
                         [(gid, e.sequence, e.id, consumer_id, deadline) for e in new])
        claimed.extend(Claimed(e, 1) for e in new)
        passed = new[-1].sequence + 1 if len(new) == room else end
        if passed != cursor:
            conn.execute("UPDATE groups SET cursor = ? WHERE id = ?", (passed, gid))
    next_due = conn.execute("SELECT MIN(due) FROM pending WHERE group_id = ? AND due > ?",
                            (gid, now)).fetchone()[0]
    return claimed, next_due


def _delete_group(conn: sqlite3.Connection, sub_id: int, group: str) -> None:
    row = conn.execute("SELECT id, cursor FROM groups WHERE sub_id = ? AND name = ?",
                       (sub_id, group)).fetchone()
    if row is None:
        return
    gid, cursor = row
    low = conn.execute("SELECT MIN(seq) FROM pending WHERE group_id = ?", (gid,)).fetchone()[0]
    conn.execute("DELETE FROM pending WHERE group_id = ?", (gid,))
    conn.execute("DELETE FROM groups WHERE id = ?", (gid,))
    if conn.execute("SELECT 1 FROM groups WHERE sub_id = ?", (sub_id,)).fetchone() is None:
        # the subscription's next group starts where this one left off
        conn.execute("UPDATE subscriptions SET floor = MAX(floor, ?) WHERE id = ?",
                     (cursor if low is None else min(cursor, low), sub_id))


def _ensure_group(conn: sqlite3.Connection, sub_id: int, stream_id: int, group: str,
                  start: int | None, filter_blob: bytes | None) -> int:
    gid = _group_row(conn, sub_id, stream_id, group, start, True)
    conn.execute("UPDATE groups SET filter = ? WHERE id = ?", (filter_blob, gid))
    return gid  # type: ignore[return-value]


def _group_row(conn: sqlite3.Connection, sub_id: int, stream_id: int, group: str,
               start: int | None, create: bool) -> int | None:
    row = conn.execute("SELECT id FROM groups WHERE sub_id = ? AND name = ?",
                       (sub_id, group)).fetchone()
    if row is not None or not create:
        return None if row is None else row[0]
    first, floor = conn.execute("SELECT s.first_seq, b.floor FROM streams s, subscriptions b "
                                "WHERE s.id = ? AND b.id = ?", (stream_id, sub_id)).fetchone()
    cursor = max(floor if start is None else start, first)
    return conn.execute("INSERT INTO groups (sub_id, name, cursor) VALUES (?, ?, ?)",
                        (sub_id, group, cursor)).lastrowid


def _pick_letters(conn: sqlite3.Connection, sub_id: int,
                  event_ids: Sequence[str] | None) -> list[tuple[Any, ...]]:
    sql = "SELECT id, group_name, event_id, seq FROM dead_letters WHERE sub_id = ?"
    if event_ids is None:
        return conn.execute(sql + " ORDER BY id", (sub_id,)).fetchall()
    ids = list(dict.fromkeys(event_ids))
    return sorted(row for chunk in chunks(ids) for row in conn.execute(
        sql + f" AND event_id IN ({marks(len(chunk))})", (sub_id, *chunk)))


def _mark_processed(conn: sqlite3.Connection, sub_id: int, key: str) -> bool:
    return conn.execute("INSERT OR IGNORE INTO processed (sub_id, key, at) VALUES (?, ?, ?)",
                        (sub_id, key, now_us())).rowcount == 1
