"""Delivery state of each subscription: groups and their cursors, claims, ack / nack /
release, dead letters, receipts, processed marks and leases.

``pending`` holds a group's events between its cursor and their settlement: waiting for
(re)delivery (state 0, claimable from ``due`` on) or in flight to a consumer (state 1, until
``due``). Events a claim hands over for the first time are one ``batches`` row per claim
instead (its sequences, consumer and deadline: what their pending rows would say), so that
the usual path, claim then ack, writes one row per claim rather than two per event; any other
change first detaches the row into pending rows (``detach.sql``). Settling an event deletes its
row; the cursor marks everything before it, except the rows still pending or in a batch, as
settled. Deadlines are on the server's clock.

A claim is one transaction: it locks its group's row (claims of one group take turns; claims
of different groups, e.g. the partitions of a consumer group, never wait for each other), takes
due pending rows with ``FOR UPDATE SKIP LOCKED`` (an ack or nack under way is passed over, not
waited for), then new events past the cursor through the filter's index. Lock order everywhere:
stream row, group row, batches rows, pending rows.

Each claim carries a token of the host's choosing, written with what it took. A claim whose
reply never arrived (the connection dropped after the commit) is resolved by its token before
the consumer's next claim (and in the background until then): what it took is given back
unseen, claimable at once with no attempt counted, instead of waiting out its deadline.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import asyncpg

from svrnty_events.config import SubscriptionConfig
from svrnty_events.errors import StoreUnavailableError, UnknownSubscriptionError
from svrnty_events.store import (
    Claimed,
    ClaimFilter,
    ClaimResult,
    DeadLetter,
    Receipt,
    processed_key,
)

from .log import Log, Stream, config_encoder, detach_sql
from .rows import (
    EVENT_COLUMNS,
    NOW,
    decode_filter,
    encode_filter,
    event,
    filter_sql,
    from_us,
    now_us,
    pack_event,
    unpack_event,
)

_EXPIRED_REASON = "visibility timeout expired"
_CLAIM = files(__package__).joinpath("claim.sql").read_text(encoding="utf-8")
log = logging.getLogger("svrnty_events_postgres")
#: (subscription, group, consumer): what this store claimed for a consumer
_Key = tuple[str, str, str]


def _by_ids(s: str, group: str, stream: str, ids: str) -> str:
    """``pending`` rows of group ``$group`` for the event ids ``$ids`` (text[]), through the
    sequences the events' unique index gives (or, for rows whose event retention removed,
    their own index): the rows' primary key, no index on pending.event_id."""
    return (f"seq = ANY(ARRAY(SELECT e.seq FROM {s}.events e WHERE e.stream_id = ${stream} "
            f"AND e.id = ANY(${ids}::text[]) UNION ALL SELECT k.seq FROM {s}.pending k WHERE "
            f"k.group_id = ${group} AND k.event IS NOT NULL AND k.event_id = "
            f"ANY(${ids}::text[]))) AND event_id = ANY(${ids}::text[])")


@functools.lru_cache(maxsize=256)
def _claim_sql(schema: str, match: str) -> str:
    return _CLAIM.replace("{s}", schema).replace("{match}", match)


def _settle_sql(s: str, batch_change: str, change: str) -> str:
    """``batch_change`` applied to the consumer's batches ``$3`` (tokens) and ``change`` to its
    pending rows of the sequences ``$4`` outside those batches, in one statement; returns the
    sequences changed. Their own parameters are ``$5``, ``$6``..."""
    return (f"WITH b AS ({batch_change} WHERE group_id = $1 AND consumer = $2 AND token = "
            "ANY($3::bigint[]) RETURNING seqs), "
            f"p AS ({change} WHERE group_id = $1 AND state = 1 AND consumer = $2 AND seq = "
            "ANY(ARRAY(SELECT unnest($4::bigint[]) EXCEPT SELECT unnest(seqs) FROM b)) "
            "RETURNING seq) SELECT unnest(seqs) FROM b UNION ALL SELECT seq FROM p")


@dataclass
class Subscription:
    id: int
    name: str
    stream: Stream
    config: SubscriptionConfig


class Delivery(Log):
    """The subscriptions part of :class:`~svrnty_events_postgres.PostgresStore`."""

    _subs: dict[str, Subscription]
    _groups: dict[tuple[str, str], int]
    _group_filters: dict[int, bytes | None]
    #: event id -> (sequence, token of the claim's batch or None), per consumer
    _claimed: dict[_Key, dict[str, tuple[int, int | None]]]
    #: token -> how many events its batch holds, per consumer
    _batches: dict[_Key, dict[int, int]]
    #: tokens of claims whose outcome is unknown (the reply was lost), per consumer
    _lost: dict[_Key, set[int]]
    #: consumers whose lost tokens a background task is giving back
    _resolving: set[_Key]

    if TYPE_CHECKING:
        def _keep(self, aw: Any) -> None: ...

    def _sub(self, name: str) -> Subscription:
        try:
            return self._subs[name]
        except KeyError:
            raise UnknownSubscriptionError(name, self._subs) from None

    async def _notify(self, conn: asyncpg.Connection, st: Stream) -> None:
        """Wake the stream's waiters on every host (at commit) and on this one (now)."""
        await conn.execute("SELECT pg_notify($1, $2)", self.channel, str(st.id))
        st.notifier.bump()

    async def create_subscription(self, config: SubscriptionConfig) -> None:
        st = self._stream(config.stream)
        s = self.s
        async with self._conn() as conn:
            sub_id = await conn.fetchval(
                f"INSERT INTO {s}.subscriptions (name, stream_id, config, floor) "
                f"SELECT $1, id, $2, first_seq FROM {s}.streams WHERE id = $3 "
                "ON CONFLICT (name) DO UPDATE SET config = excluded.config RETURNING id",
                config.name, config_encoder.encode(config), st.id)
        sub = self._subs.get(config.name)
        if sub is None:
            self._subs[config.name] = Subscription(sub_id, config.name, st, config)
        else:
            sub.config = config

    async def _group_row(self, conn: asyncpg.Connection, sub: Subscription, group: str,
                         start: int | None, create: bool) -> int | None:
        s = self.s
        gid = await conn.fetchval(f"SELECT id FROM {s}.groups WHERE sub_id = $1 AND name = $2",
                                  sub.id, group)
        if gid is not None or not create:
            return gid
        # a new group starts at `start`, else where the subscription's last group left off,
        # never before the oldest retained event; a host creating it at the same time wins
        gid = await conn.fetchval(
            f"INSERT INTO {s}.groups (sub_id, name, cursor) SELECT $1, $2, "
            f"greatest(COALESCE($3, b.floor), st.first_seq) FROM {s}.subscriptions b "
            f"JOIN {s}.streams st ON st.id = b.stream_id WHERE b.id = $1 "
            "ON CONFLICT (sub_id, name) DO NOTHING RETURNING id", sub.id, group, start)
        if gid is None:
            gid = await conn.fetchval(f"SELECT id FROM {s}.groups WHERE sub_id = $1 AND "
                                      "name = $2", sub.id, group)
        return gid

    async def _group_id(self, subscription: str, group: str, *, create: bool = True,
                        start: int | None = None) -> int | None:
        key = (subscription, group)
        gid = self._groups.get(key)
        if gid is None:
            sub = self._sub(subscription)
            async with self._conn() as conn:
                gid = await self._group_row(conn, sub, group, start, create)
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
            async with self._tx() as conn:
                gid = await self._group_row(conn, sub, group, start, True)
                await conn.execute(f"UPDATE {self.s}.groups SET filter = $2 WHERE id = $1 AND "
                                   "filter IS DISTINCT FROM $2", gid, blob)
            assert gid is not None
            self._groups[key], self._group_filters[gid] = gid, blob

    async def delete_group(self, subscription: str, group: str) -> None:
        sub = self._sub(subscription)
        gid = self._groups.pop((subscription, group), None)
        self._group_filters.pop(gid or 0, None)
        for key in [k for k in self._claimed if k[0] == subscription and k[1] == group]:
            del self._claimed[key]
            self._batches.pop(key, None)
        s = self.s
        async with self._tx() as conn:
            row = await conn.fetchrow(f"SELECT id, cursor FROM {s}.groups WHERE sub_id = $1 AND "
                                      "name = $2 FOR UPDATE", sub.id, group)
            if row is None:
                return
            gid, cursor = row
            low = await conn.fetchval(
                f"SELECT least((SELECT min(seq) FROM {s}.pending WHERE group_id = $1), "
                f"(SELECT min(seqs[1]) FROM {s}.batches WHERE group_id = $1))", gid)
            await conn.execute(f"DELETE FROM {s}.batches WHERE group_id = $1", gid)
            await conn.execute(f"DELETE FROM {s}.pending WHERE group_id = $1", gid)
            await conn.execute(f"DELETE FROM {s}.groups WHERE id = $1", gid)
            await conn.execute(f"DELETE FROM {s}.leases WHERE sub_id = $1 AND group_name = $2 "
                               "AND until <= " + NOW, sub.id, group)
            # the subscription's next group starts where this one left off
            await conn.execute(
                f"UPDATE {s}.subscriptions SET floor = greatest(floor, $2) WHERE id = $1 AND "
                f"NOT EXISTS (SELECT 1 FROM {s}.groups WHERE sub_id = $1)",
                sub.id, cursor if low is None else min(cursor, low))

    # --- claim and settle ------------------------------------------------------------------------

    async def claim(self, subscription: str, group: str, consumer_id: str, *, max_count: int,
                    visibility_timeout: float, filter: ClaimFilter | None = None) -> ClaimResult:
        """Hand up to ``max_count`` events to ``consumer_id`` (see the contract) in one
        transaction. A claim cancelled while the transaction runs lets it finish and gives
        back what it took at once (unseen: no attempt counted), so nothing stays invisible
        until its visibility timeout; so does a claim whose reply was lost (by its token)."""
        sub = self._sub(subscription)
        st = sub.stream
        version = st.notifier.version  # before the look: a change after it wakes the waiter
        f = None if filter is None or filter.empty else filter
        if f is not None and f.partition is not None and f.partition >= st.config.partitions:
            return ClaimResult([], version)  # a partition the stream does not have
        key = (subscription, group, consumer_id)
        if self._lost.get(key):  # what a claim whose reply was lost took comes back first
            await self._resolve_lost(key)
        token = secrets.randbits(63)
        job = asyncio.ensure_future(self._claim(sub, group, consumer_id, max_count,
                                                visibility_timeout, f, token))
        try:
            claimed, next_due, fresh = await asyncio.shield(job)
        except asyncio.CancelledError:
            self._keep(self._give_back(job, subscription, group, consumer_id))
            raise
        except StoreUnavailableError:
            # committed or not, nobody knows (a connection lost before the reply): whatever
            # the token took is given back, before this consumer's next claim or in the
            # background, whichever comes first
            self._lost.setdefault(key, set()).add(token)
            if key not in self._resolving:
                self._resolving.add(key)
                self._keep(self._resolve_later(key))
            raise
        if claimed:
            known = self._known(key)
            for c in claimed[:len(claimed) - fresh]:  # redeliveries: pending rows
                known[c.event.id] = (c.event.sequence, None)
            for c in claimed[len(claimed) - fresh:]:  # first hand-overs: the claim's batch
                known[c.event.id] = (c.event.sequence, token)
            if fresh:
                self._batches.setdefault(key, {})[token] = fresh
        return ClaimResult(claimed, version, next_due)

    async def _give_back(self, job: asyncio.Future[Any], subscription: str, group: str,
                         consumer_id: str) -> None:
        try:
            claimed, _, _ = await job
        except Exception:  # noqa: BLE001 - it took nothing (rolled back), or its token is lost
            return
        ids = [c.event.id for c in claimed]
        if ids:
            await self.release(subscription, group, consumer_id, event_ids=ids, unseen=ids)

    async def _resolve_lost(self, key: _Key) -> None:
        """Give back, unseen, what the claims of ``key`` whose replies were lost took (none,
        if they did not commit). Raises StoreUnavailableError while the server is away."""
        tokens = self._lost.get(key)
        if not tokens:
            return
        subscription, group, consumer_id = key
        sub = self._sub(subscription)
        gid = await self._group_id(subscription, group, create=False)
        todo = sorted(tokens)
        if gid is not None:
            s = self.s
            async with self._tx() as conn:
                await conn.execute(detach_sql(s), gid, sub.stream.id, consumer_id, todo, None)
                count = int((await conn.execute(
                    f"UPDATE {s}.pending SET state = 0, consumer = NULL, due = 0, attempts = "
                    "greatest(attempts - 1, 0) WHERE group_id = $1 AND state = 1 AND "
                    "consumer = $2 AND token = ANY($3::bigint[])", gid, consumer_id,
                    todo)).rsplit(" ", 1)[1])
                if count:
                    await self._notify(conn, sub.stream)
            if count:
                log.info("%s/%s: %d event(s) of a claim whose reply was lost given back",
                         subscription, consumer_id, count)
        tokens.difference_update(todo)
        if not tokens:
            self._lost.pop(key, None)

    async def _resolve_later(self, key: _Key) -> None:
        delay = 0.05
        try:
            while self._lost.get(key) and not self._closed:
                try:
                    await self._resolve_lost(key)
                except StoreUnavailableError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
        finally:
            self._resolving.discard(key)

    async def _claim(self, sub: Subscription, group: str, consumer_id: str, max_count: int,
                     visibility_timeout: float, f: ClaimFilter | None, token: int
                     ) -> tuple[list[Claimed], float | None, int]:
        """(what was claimed, redeliveries first; when the next event becomes due; how many
        of the claimed, at the end, are first hand-overs, in the claim's batch)"""
        s, st = self.s, sub.stream
        gid = await self._group_id(sub.name, group)
        match, args = filter_sql(f, 8, "e")
        sql = _claim_sql(s, match)
        async with self._conn() as conn:
            for _ in range(3):
                rows = await conn.fetch(sql, gid, st.id, max_count, consumer_id,
                                        float(visibility_timeout), _EXPIRED_REASON, token,
                                        *args)
                last = rows[-1]
                now, next_due = last[14], last[15]
                if now is None:  # another host deleted the group: make it again
                    gid = await self._group_row(conn, sub, group, None, True)
                    self._groups[(sub.name, group)] = gid  # type: ignore[assignment]
                elif not last[1]:
                    break
                # else batches past their deadline were detached: claim again, to find them
            claimed: list[Claimed] = []
            gone: list[int] = []
            fresh = 0
            for r in rows[:-1]:
                if r[0] == 1:
                    claimed.append(Claimed(event(r, st.name, 5), 1))
                    fresh += 1
                elif r[5] is not None:
                    claimed.append(Claimed(event(r, st.name, 5), r[2], r[3]))
                elif r[4] is not None:  # in flight when retention removed it: the copy
                    claimed.append(Claimed(unpack_event(r[4]), r[2], r[3]))
                else:  # removed by retention, no copy kept: nothing left to deliver
                    gone.append(r[1])
            if gone:
                await conn.execute(f"DELETE FROM {s}.pending WHERE group_id = $1 AND "
                                   "seq = ANY($2::bigint[])", gid, gone)
        if claimed:
            deadline = now + visibility_timeout
            next_due = deadline if next_due is None else min(next_due, deadline)
        # the server's clock -> this host's
        return claimed, None if next_due is None else time.time() + (next_due - now), fresh

    def _known(self, key: _Key) -> dict[str, tuple[int, int | None]]:
        """Event id -> (sequence, batch token) of what a consumer claimed through this store
        (so that settling finds the rows by primary key); bounded: an id missing here is
        looked up, and its batch detached."""
        known = self._claimed.get(key)
        if known is None:
            known = self._claimed[key] = {}
        elif len(known) > 100_000:
            known.clear()
            self._batches.pop(key, None)
        return known

    def _forget(self, subscription: str, group: str, consumer_id: str,
                event_ids: Sequence[str] | None) -> None:
        key = (subscription, group, consumer_id)
        if event_ids is None:
            self._claimed.pop(key, None)
            self._batches.pop(key, None)
        elif (known := self._claimed.get(key)) is not None:
            for event_id in event_ids:
                known.pop(event_id, None)

    async def _detach(self, conn: asyncpg.Connection, key: _Key, gid: int, stream_id: int,
                      event_ids: Sequence[str] | None, *, any_consumer: bool = False) -> None:
        """Turn the batches holding ``event_ids`` (all of the consumer's: None) into pending
        rows, so that a change of some of their events can be made on pending rows."""
        consumer = None if any_consumer else key[2]
        # what this host knows of the consumer's batches changes only once the detach is
        # committed: a transaction rolled back leaves the batches as they were
        batches = None if conn.is_in_transaction() else self._batches.get(key)
        if event_ids is None:
            await conn.execute(detach_sql(self.s), gid, stream_id, consumer, None, None)
            if batches:
                batches.clear()
            return
        known = self._claimed.get(key, {})
        tokens: set[int] = set()
        unknown: list[str] = []
        for event_id in event_ids:
            found = known.get(event_id)
            if found is None:
                unknown.append(event_id)
            elif found[1] is not None:
                tokens.add(found[1])
        if tokens:
            await conn.execute(detach_sql(self.s), gid, stream_id, consumer, sorted(tokens),
                               None)
            if batches is not None:
                for token in tokens:
                    batches.pop(token, None)
                for event_id in event_ids:
                    found = known.get(event_id)
                    if found is not None and found[1] in tokens:
                        known[event_id] = (found[0], None)
        if unknown:  # claimed through another store object, or forgotten: by sequence
            await conn.execute(
                detach_sql(self.s), gid, stream_id, consumer, None,
                await conn.fetchval(f"SELECT array_agg(seq) FROM {self.s}.events WHERE "
                                    "stream_id = $1 AND id = ANY($2::text[])", stream_id,
                                    unknown) or [])

    async def _held(self, subscription: str, group: str, consumer_id: str,
                    event_ids: Sequence[str], batch_change: str, change: str, *args: Any,
                    settles: bool = True) -> list[str]:
        """Apply ``batch_change`` (``UPDATE batches SET ...`` or ``DELETE FROM batches``) to
        the batches whose events ``event_ids`` hold all of, and ``change`` (on pending) to the
        other events of ``event_ids`` that ``consumer_id`` holds, after detaching the batches
        they are in; their own parameters are ``$5``, ``$6``... with ``args``. Returns the
        ids it did not hold."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return []
        key = (subscription, group, consumer_id)
        st = self._sub(subscription).stream
        gid = await self._group_id(subscription, group)
        known = self._claimed.get(key, {})
        sizes = self._batches.get(key, {})
        seqs: dict[int, str] = {}
        count: dict[int, int] = {}
        unknown: list[str] = []
        for event_id in ids:
            found = known.get(event_id)
            if found is None:
                unknown.append(event_id)
                continue
            seqs[found[0]] = event_id
            if found[1] is not None:
                count[found[1]] = count.get(found[1], 0) + 1
        whole = sorted(t for t, n in count.items() if sizes.get(t) == n)
        part = [i for i, (seq, t) in ((i, known[i]) for i in seqs.values())
                if t is not None and sizes.get(t) != count[t]]
        done: set[str] = set()
        async with self._conn() as conn:
            if part or unknown:
                await self._detach(conn, key, gid, st.id, part + unknown)
            if seqs:
                done.update(seqs[r[0]] for r in await conn.fetch(
                    _settle_sql(self.s, batch_change, change), gid, consumer_id, whole,
                    list(seqs), *args) if r[0] in seqs)
            if unknown:
                done.update(r[0] for r in await conn.fetch(
                    change + " WHERE group_id = $1 AND state = 1 AND "
                    f"consumer = $2 AND {_by_ids(self.s, '1', '4', '3')} RETURNING event_id",
                    gid, consumer_id, unknown, st.id, *args))
        if settles:
            for token in whole:
                sizes.pop(token, None)
            self._forget(subscription, group, consumer_id, ids)
        return [i for i in event_ids if i not in done]

    async def ack(self, subscription: str, group: str, consumer_id: str,
                  event_ids: Sequence[str]) -> list[str]:
        s = self.s
        return await self._held(subscription, group, consumer_id, event_ids,
                                f"DELETE FROM {s}.batches", f"DELETE FROM {s}.pending")

    async def extend(self, subscription: str, group: str, consumer_id: str,
                     event_ids: Sequence[str], *, visibility_timeout: float) -> list[str]:
        s = self.s
        return await self._held(subscription, group, consumer_id, event_ids,
                                f"UPDATE {s}.batches SET due = {NOW} + $5::float8",
                                f"UPDATE {s}.pending SET due = {NOW} + $5::float8",
                                float(visibility_timeout), settles=False)

    async def nack(self, subscription: str, group: str, consumer_id: str, event_id: str, *,
                   delay: float, reason: str | None = None) -> bool:
        sub = self._sub(subscription)
        gid = await self._group_id(subscription, group)
        async with self._tx() as conn:
            await self._detach(conn, (subscription, group, consumer_id), gid, sub.stream.id,
                               [event_id])
            done = await conn.fetchval(
                f"UPDATE {self.s}.pending SET state = 0, consumer = NULL, due = CASE WHEN "
                f"$5::float8 > 0 THEN {NOW} + $5::float8 ELSE 0 END, reason = COALESCE($6, "
                "reason) WHERE group_id = $1 AND state = 1 AND consumer = $2 AND "
                f"{_by_ids(self.s, '1', '4', '3')} RETURNING 1", gid, consumer_id, [event_id],
                sub.stream.id, float(delay), reason or None)
            if done:
                await self._notify(conn, sub.stream)
        self._forget(subscription, group, consumer_id, [event_id])
        return bool(done)

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
        sql = (f"UPDATE {self.s}.pending SET state = 0, consumer = NULL, due = 0, "
               # claimed but never handed to the consumer's code: not an attempt
               "attempts = CASE WHEN event_id = ANY($3::text[]) AND attempts > 0 THEN "
               "attempts - 1 ELSE attempts END WHERE group_id = $1 AND state = 1 AND "
               "consumer = $2")
        args: list[Any] = [gid, consumer_id, list(unseen)]
        if event_ids is not None:
            sql += f" AND {_by_ids(self.s, '1', '5', '4')}"
            args += [list(dict.fromkeys(event_ids)), sub.stream.id]
        async with self._tx() as conn:
            await self._detach(conn, (subscription, group, consumer_id), gid, sub.stream.id,
                               event_ids)
            count = int((await conn.execute(sql, *args)).rsplit(" ", 1)[1])
            if count:
                await self._notify(conn, sub.stream)
        self._forget(subscription, group, consumer_id, event_ids)
        return count

    async def wait_for_change(self, subscription: str, group: str, version: int,
                              timeout: float | None) -> int:
        bound = self.options.max_wait
        return await self._sub(subscription).stream.notifier.wait(
            version, bound if timeout is None else min(timeout, bound))

    def notify(self, subscription: str) -> None:
        # a mode's choice is local to this host: waking the local waiters is enough (state
        # changes in the database notify every host themselves)
        self._sub(subscription).stream.notifier.bump()

    # --- dead letters ----------------------------------------------------------------------------

    async def dead_letter(self, subscription: str, group: str, consumer_id: str, event_id: str, *,
                          reason: str, attempts: int, error: str | None = None) -> bool:
        sub = self._sub(subscription)
        gid = await self._group_id(subscription, group)
        st, s = sub.stream, self.s
        async with self._tx() as conn:
            await self._detach(conn, (subscription, group, consumer_id), gid, st.id,
                               [event_id], any_consumer=True)
            row = await conn.fetchrow(f"SELECT seq, state, consumer, event FROM {s}.pending "
                                      f"WHERE group_id = $1 AND {_by_ids(s, '1', '3', '2')} "
                                      "FOR UPDATE", gid, [event_id], st.id)
            if row is None or (row[1] == 1 and row[2] != consumer_id):
                return False
            seq, kept = row[0], row[3]
            await conn.execute(f"DELETE FROM {s}.pending WHERE group_id = $1 AND seq = $2",
                               gid, seq)
            found = await conn.fetchrow(f"SELECT {EVENT_COLUMNS} FROM {s}.events WHERE "
                                        "stream_id = $1 AND seq = $2", st.id, seq)
            self._forget(subscription, group, consumer_id, [event_id])
            if found is None and kept is None:  # removed by retention: nothing left to keep
                return False
            await conn.execute(
                f"INSERT INTO {s}.dead_letters (sub_id, group_name, event_id, seq, consumer, "
                "reason, attempts, error, at, event) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
                "$9, $10) ON CONFLICT (sub_id, group_name, event_id) DO UPDATE SET "
                "seq = excluded.seq, consumer = excluded.consumer, reason = excluded.reason, "
                "attempts = excluded.attempts, error = excluded.error, at = excluded.at, "
                "event = excluded.event",
                sub.id, group, event_id, seq, consumer_id, reason, attempts, error, now_us(),
                pack_event(event(found, st.name)) if found else kept)
        return True

    async def group_lags(self, subscription: str) -> dict[str, int]:
        sub = self._sub(subscription)
        s, stream_id = self.s, sub.stream.id
        out: dict[str, int] = {}
        async with self._conn() as conn:
            groups = await conn.fetch(
                f"SELECT g.id, g.name, g.cursor, g.filter, (SELECT count(*) FROM {s}.pending p "
                f"WHERE p.group_id = g.id) + (SELECT COALESCE(sum(cardinality(b.seqs)), 0) "
                f"FROM {s}.batches b WHERE b.group_id = g.id) FROM {s}.groups g "
                "WHERE g.sub_id = $1", sub.id)
            for gid, name, cursor, blob, held in groups:
                f = decode_filter(blob)
                if f is not None and f.partition is not None:  # the partition index
                    ahead = await conn.fetchval(
                        f"SELECT count(*) FROM {s}.events WHERE stream_id = $1 AND part = $2 "
                        f"AND seq >= $3", stream_id, f.partition, cursor)
                else:  # a range of the primary key
                    ahead = await conn.fetchval(
                        f"SELECT count(*) FROM {s}.events WHERE stream_id = $1 AND seq >= $2",
                        stream_id, cursor)
                out[name] = ahead + held
        return out

    async def list_dead_letters(self, subscription: str, *,
                                limit: int | None = None) -> list[DeadLetter]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT event, group_name, consumer, reason, attempts, at, error FROM "
                f"{self.s}.dead_letters WHERE sub_id = $1 ORDER BY id LIMIT $2",
                self._sub(subscription).id, limit)
        return [DeadLetter(event=unpack_event(r[0]), subscription=subscription,
                           group=r[1], consumer_id=r[2], reason=r[3], attempts=r[4],
                           dead_lettered_at=from_us(r[5]), error=r[6]) for r in rows]

    async def _pick_letters(self, conn: asyncpg.Connection, sub_id: int,
                            event_ids: Sequence[str] | None) -> list[Any]:
        sql = (f"SELECT id, group_name, event_id, seq FROM {self.s}.dead_letters WHERE "
               "sub_id = $1")
        if event_ids is None:
            return await conn.fetch(sql + " ORDER BY id FOR UPDATE", sub_id)
        return await conn.fetch(sql + " AND event_id = ANY($2::text[]) ORDER BY id FOR UPDATE",
                                sub_id, list(dict.fromkeys(event_ids)))

    async def replay_dead_letters(self, subscription: str,
                                  event_ids: Sequence[str] | None = None) -> int:
        sub = self._sub(subscription)
        st, s = sub.stream, self.s
        async with self._tx() as conn:
            letters = await self._pick_letters(conn, sub.id, event_ids)
            for letter_id, group, event_id, seq in letters:
                await conn.execute(f"DELETE FROM {s}.dead_letters WHERE id = $1", letter_id)
                if await conn.fetchval(f"SELECT 1 FROM {s}.events WHERE stream_id = $1 AND "
                                       "seq = $2 AND id = $3", st.id, seq, event_id) is None:
                    continue  # removed by retention: nothing to redeliver
                gid = await self._group_row(conn, sub, group, None, True)
                await conn.execute(f"INSERT INTO {s}.pending (group_id, seq, event_id, state, "
                                   "due, attempts) VALUES ($1, $2, $3, 0, 0, 0) ON CONFLICT "
                                   "DO NOTHING", gid, seq, event_id)
            if letters:
                await self._notify(conn, st)
        return len(letters)

    async def purge_dead_letters(self, subscription: str,
                                 event_ids: Sequence[str] | None = None) -> int:
        sub = self._sub(subscription)
        async with self._tx() as conn:
            letters = await self._pick_letters(conn, sub.id, event_ids)
            await conn.execute(f"DELETE FROM {self.s}.dead_letters WHERE id = ANY($1::bigint[])",
                               [r[0] for r in letters])
        return len(letters)

    # --- receipts and idempotent processing ------------------------------------------------------

    async def record_receipts(self, subscription: str, consumer_id: str,
                              event_ids: Sequence[str], *, read: bool) -> None:
        if not event_ids:
            return
        sub_id = self._sub(subscription).id
        now = now_us()
        async with self._conn() as conn:
            await conn.execute(
                f"INSERT INTO {self.s}.receipts (sub_id, consumer, event_id, delivered_at, "
                "read_at) SELECT $1, $2, id, $3::bigint, CASE WHEN $4::bool THEN $3::bigint END "
                "FROM unnest($5::text[]) AS t(id) ON CONFLICT (sub_id, consumer, event_id) DO "
                "UPDATE SET read_at = COALESCE(receipts.read_at, excluded.read_at)",
                sub_id, consumer_id, now, read, list(dict.fromkeys(event_ids)))

    async def list_receipts(self, subscription: str, *, event_id: str | None = None,
                            consumer_id: str | None = None) -> list[Receipt]:
        sql = (f"SELECT consumer, event_id, delivered_at, read_at FROM {self.s}.receipts "
               "WHERE sub_id = $1")
        args: list[Any] = [self._sub(subscription).id]
        if event_id is not None:
            args.append(event_id)
            sql += f" AND event_id = ${len(args)}"
        if consumer_id is not None:
            args.append(consumer_id)
            sql += f" AND consumer = ${len(args)}"
        async with self._conn() as conn:
            rows = await conn.fetch(sql + " ORDER BY id", *args)
        return [Receipt(subscription, r[0], r[1], from_us(r[2]),
                        None if r[3] is None else from_us(r[3])) for r in rows]

    async def _mark(self, conn: asyncpg.Connection, sub_id: int, key: str) -> bool:
        return await conn.fetchval(
            f"INSERT INTO {self.s}.processed (sub_id, key, at) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING true", sub_id, key, now_us()) is not None

    async def mark_processed(self, subscription: str, key: str) -> bool:
        sub_id = self._sub(subscription).id
        async with self._conn() as conn:
            return await self._mark(conn, sub_id, key)

    async def ack_processed(self, subscription: str, group: str, consumer_id: str,
                            event_id: str) -> bool:
        # the processed mark and the ack in one transaction: both happen, or neither
        sub = self._sub(subscription)
        gid = await self._group_id(subscription, group)
        async with self._tx() as conn:
            await self._detach(conn, (subscription, group, consumer_id), gid, sub.stream.id,
                               [event_id])
            await self._mark(conn, sub.id, processed_key(group, event_id))
            self._forget(subscription, group, consumer_id, [event_id])
            return await conn.fetchval(
                f"DELETE FROM {self.s}.pending WHERE group_id = $1 AND state = 1 AND "
                f"consumer = $2 AND {_by_ids(self.s, '1', '4', '3')} RETURNING true", gid,
                consumer_id, [event_id], sub.stream.id) is not None

    async def process_in_transaction(self, subscription: str, group: str, consumer_id: str,
                                     event_id: str, effect: Callable[[Any], Any]) -> bool | None:
        """See the contract. ``effect`` gets the ``asyncpg.Connection`` of the transaction
        (it may be a coroutine function); it must not commit or roll back."""
        sub = self._sub(subscription)
        gid = await self._group_id(subscription, group)
        key = processed_key(group, event_id)
        async with self._tx(own=False) as conn:  # the effect runs on it
            await self._detach(conn, (subscription, group, consumer_id), gid, sub.stream.id,
                               [event_id])
            seq = await conn.fetchval(
                f"SELECT seq FROM {self.s}.pending WHERE group_id = $1 AND state = 1 AND "
                f"consumer = $2 AND {_by_ids(self.s, '1', '4', '3')} FOR UPDATE", gid,
                consumer_id, [event_id], sub.stream.id)
            if seq is None:
                return None
            fresh = await self._mark(conn, sub.id, key)
            if fresh:
                result = effect(conn)
                if inspect.isawaitable(result):
                    await result
            await conn.execute(f"DELETE FROM {self.s}.pending WHERE group_id = $1 AND "
                               "seq = $2", gid, seq)
        self._forget(subscription, group, consumer_id, [event_id])
        return fresh

    async def is_processed(self, subscription: str, key: str) -> bool:
        async with self._conn() as conn:
            return await conn.fetchval(f"SELECT true FROM {self.s}.processed WHERE sub_id = $1 "
                                       "AND key = $2", self._sub(subscription).id,
                                       key) is not None

    # --- coordination -----------------------------------------------------------------------

    async def leases(self, subscription: str, group: str, *,
                     acquire: Mapping[str, tuple[str, float]] | None = None,
                     release: Mapping[str, str] | None = None) -> dict[str, str]:
        """Leases are rows, on the server's clock, so every host sees the same table."""
        sub_id = self._sub(subscription).id
        s = self.s
        take = sorted((acquire or {}).items())  # one key order: no deadlock between hosts
        drop = sorted((release or {}).items())
        async with self._tx() as conn:
            if drop:
                await conn.execute(
                    f"DELETE FROM {s}.leases l USING unnest($3::text[], $4::text[]) AS "
                    "t(key, holder) WHERE l.sub_id = $1 AND l.group_name = $2 AND "
                    "l.key = t.key AND l.holder = t.holder", sub_id, group,
                    [k for k, _ in drop], [h for _, h in drop])
            if take:
                await conn.execute(
                    f"INSERT INTO {s}.leases (sub_id, group_name, key, holder, until) "
                    f"SELECT $1, $2, key, holder, {NOW} + seconds FROM unnest($3::text[], "
                    "$4::text[], $5::float8[]) AS t(key, holder, seconds) "
                    "ON CONFLICT (sub_id, group_name, key) DO UPDATE SET holder = "
                    f"excluded.holder, until = excluded.until WHERE leases.until <= {NOW} OR "
                    "leases.holder = excluded.holder", sub_id, group, [k for k, _ in take],
                    [h for _, (h, _) in take], [float(t) for _, (_, t) in take])
            rows = await conn.fetch(f"SELECT key, holder FROM {s}.leases WHERE sub_id = $1 AND "
                                    f"group_name = $2 AND until > {NOW}", sub_id, group)
        return {r[0]: r[1] for r in rows}
