"""The Redis Streams event store.

Streams, delivery groups, dead letters, receipts and processed marks live in Redis, so every
host sharing the Redis server (and key prefix) sees the same streams and the same delivery state.
Each multi-key step is one Lua script (``lua/``, atomic, EVALSHA). Waiting consumers are woken
by Redis pub/sub on a per-stream channel that every state change publishes to (no polling;
see ``connection.py``). The README documents the mapping to Redis structures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import msgspec
from redis.exceptions import ResponseError

from svrnty_events.config import StreamConfig, StreamType, SubscriptionConfig
from svrnty_events.errors import (
    ConcurrencyError,
    StoreFormatError,
    StoreUnavailableError,
    UnknownStreamError,
    UnknownSubscriptionError,
)
from svrnty_events.events import RecordedEvent, partition_of
from svrnty_events.store import (
    Capabilities,
    Claimed,
    ClaimFilter,
    ClaimResult,
    DeadLetter,
    EventStore,
    Receipt,
    StreamInfo,
    batch_correlation,
    check_partitions,
    processed_key,
)

from . import entries
from .connection import Connection, RedisStoreOptions
from .keys import LAYOUT, StreamKeys, SubKeys
from .schedules import Schedules

__all__ = ["RedisStore", "RedisStoreOptions"]

log = logging.getLogger("svrnty_events_redis")
_retention_log = logging.getLogger("svrnty_events.retention")

#: consumer names the store uses inside Redis consumer groups
RESERVED_CONSUMERS = ("svrnty:parked", "svrnty:dead")
_DEAD = RESERVED_CONSUMERS[1]  # owns the PEL entries of dead letters


#: what the store remembers of an event a consumer claimed: (entry id, Redis time in ms of the
#: claim, whether the event has a nack reason to clear when settled)
_Claim = tuple[bytes, int, bool]


class RedisStore(Schedules, Connection, EventStore):
    """Event store on Redis Streams (Redis >= 7.0): durable, shared by many hosts."""

    capabilities = Capabilities(durable=True, idempotent_append=True, shared=True,
                                schedules=True)

    def __init__(self, options: RedisStoreOptions | None = None) -> None:
        super().__init__(options)
        self._subs: dict[str, SubKeys] = {}
        # (subscription, group, consumer) -> what the consumer claimed through this store:
        # event id -> (entry id, Redis time in ms of the claim, has a nack reason), so that
        # ack / nack need no lookup (the dedup key serves as a fallback)
        self._held: dict[tuple[str, str, str], dict[str, _Claim]] = {}

    async def _run_group(self, name: str, subscription: str, group: str, consumer_id: str,
                         args: Sequence[Any], extra_keys: Sequence[str] = ()) -> Any:
        """Run a script of one delivery group (lua/group.lua: its keys and first arguments)."""
        sub = self._sub(subscription)
        s = sub.stream
        return await self._run(name, [*sub.group_keys(group), *extra_keys],
                               [subscription, group, sub.gname(group), consumer_id, s.eid,
                                s.channel, *args])

    # --- streams -----------------------------------------------------------------------------

    def _stream(self, name: str) -> StreamKeys:
        try:
            return self._streams[name]
        except KeyError:
            raise UnknownStreamError(name, self._streams) from None

    def _sub(self, name: str) -> SubKeys:
        try:
            return self._subs[name]
        except KeyError:
            raise UnknownSubscriptionError(name, self._subs) from None

    async def create_stream(self, config: StreamConfig) -> None:
        s = self._streams.get(config.name) or StreamKeys(self.options.key_prefix, config)
        async with self._io():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hmget(s.meta, ["layout", "partitions"])
                pipe.xlen(s.log)
                (layout, partitions), length = await pipe.execute()
            # a stream without a layout mark was written before partitions: its keys are
            # those of this layout with one partition
            if layout is not None and int(layout) > LAYOUT:
                raise StoreFormatError(
                    "redis", f'stream "{config.name}" (keys {s.tag}:*) was written with key '
                    f"layout {int(layout)}, newer than the layout {LAYOUT} this version of "
                    "svrnty-events-redis reads",
                    "upgrade svrnty-events-redis on this host to the version that wrote it, or "
                    "use another key_prefix")
            check_partitions(config.name, int(partitions or 1), config.partitions,
                             has_events=length > 0)
            await self.redis.hset(s.meta, mapping={
                "type": str(config.type), "partitions": config.partitions, "layout": LAYOUT})
            await self.redis.hsetnx(s.meta, "next", 0)
        s.config = config
        if config.name in self._streams:
            return
        self._streams[config.name] = s
        self._by_channel[s.channel.encode()] = s
        if self._pubsub is not None:
            async with self._io():
                await self._pubsub.subscribe(s.channel)
        # make sure no change published from now on is missed
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(s.notifier.subscribed.wait(), self.options.connect_timeout)

    async def append(self, stream: str, events: Sequence[RecordedEvent], *,
                     expected_version: int | None = None) -> list[RecordedEvent]:
        s = self._stream(stream)
        if not events:
            return []
        correlation = batch_correlation(events, expected_version)
        cfg = s.config
        args: list[Any] = [
            s.eid, "" if expected_version is None else expected_version, correlation,
            int(self.options.dedup_window * 1000), cfg.retention_max_count or 0,
            int(cfg.retention_max_age * 1000) if cfg.retention_max_age else 0, s.channel,
            cfg.partitions, str(cfg.retention_policy), s.sub_base]
        parts = [partition_of(e.correlation_id, cfg.partitions) for e in events]
        for e, p in zip(events, parts):
            args += (e.id, e.correlation_id, entries.envelope(e, p), e.data, p,
                     int(e.timestamp.timestamp() * 1000))
        result = await self._run("append", [s.log, s.meta, s.versions, s.subs], args)
        if result[0] == b"conflict":
            raise ConcurrencyError(stream, correlation, expected_version or 0, int(result[1]))
        length, seqs, lost = int(result[1]), result[2], result[3]
        for i in range(0, len(lost), 2):
            _retention_log.warning(
                "stream %s: retention removed %d event(s) that subscription %s had not settled; "
                "they are in its dead-letter queue (reason: retention)", stream, int(lost[i + 1]),
                lost[i].decode())
        replace = msgspec.structs.replace
        out = [replace(e, sequence=int(seq), stream=stream, partition=p)
               for e, seq, p in zip(events, seqs, parts)]
        if cfg.type is StreamType.EPHEMERAL:
            # trimming looks at every group's consumers: at most once per 1024 events appended
            s.untrimmed += len(events)
            if length >= 1024 and s.untrimmed >= 1024:
                s.untrimmed = 0
                await self._run("trim_ephemeral", [s.log, s.meta, s.subs], [s.sub_base])
        return out

    async def read(self, stream: str, *, from_sequence: int = 0, limit: int | None = None,
                   correlation_id: str | None = None, event_types: Sequence[str] | None = None,
                   since: datetime | None = None) -> list[RecordedEvent]:
        s = self._stream(stream)
        types = set(event_types) if event_types else None
        out: list[RecordedEvent] = []
        start = f"{max(from_sequence, 0)}-0"
        page = 1000 if limit is None else min(max(limit, 1), 1000)
        while True:
            async with self._io():
                found = await self.redis.xrange(s.log, min=start, max="+", count=page)
            for entry_id, fields in found:
                e = entries.event_from(stream, entries.seq_of(entry_id), fields)
                if correlation_id is not None and e.correlation_id != correlation_id:
                    continue
                if types is not None and e.type not in types:
                    continue
                if since is not None and e.timestamp < since:
                    continue
                out.append(e)
                if limit is not None and len(out) >= limit:
                    return out
            if len(found) < page:
                return out
            start = f"{entries.seq_of(found[-1][0]) + 1}-0"

    async def correlation_version(self, stream: str, correlation_id: str) -> int:
        s = self._stream(stream)
        async with self._io():
            value = await self.redis.hget(s.versions, correlation_id)
        return int(value or 0)

    async def stream_info(self, stream: str) -> StreamInfo:
        s = self._stream(stream)
        async with self._io():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xlen(s.log)
                pipe.hget(s.meta, "next")
                pipe.xrange(s.log, count=1)
                length, nxt, first = await pipe.execute()
        next_sequence = int(nxt or 0)
        first_sequence = entries.seq_of(first[0][0]) if first else next_sequence
        return StreamInfo(name=stream, type=str(s.config.type), length=int(length),
                          first_sequence=first_sequence, next_sequence=next_sequence,
                          metadata={"store": "redis", "key": s.log,
                                    "partitions": str(s.config.partitions)})

    # --- subscriptions -------------------------------------------------------------------------

    async def create_subscription(self, config: SubscriptionConfig) -> None:
        existing = self._subs.get(config.name)
        if existing is not None:
            existing.config = config
            return
        s = self._stream(config.stream)
        await self._run("create_subscription", [s.log, s.meta, s.subs], [config.name])
        self._subs[config.name] = SubKeys(s, config)

    async def ensure_group(self, subscription: str, group: str, *,
                           start: int | None = None, filter: ClaimFilter | None = None) -> None:
        # the group is made on the key its claims will read (a partition's, or the main log);
        # what its claims pass is kept for retention
        key, held = "-", "-"
        if filter is not None:
            key = self._sub(subscription).stream.read_key(filter.partition)
            held = "" if filter.event_types is None and filter.correlation_id is None else \
                msgspec.json.encode({"t": None if filter.event_types is None
                                     else sorted(filter.event_types),
                                     "c": filter.correlation_id})
        await self._run_group("ensure_group", subscription, group, "",
                              ["" if start is None else start, key, held])

    async def delete_group(self, subscription: str, group: str) -> None:
        await self._run_group("delete_group", subscription, group, "", [])
        for key in [k for k in self._held if k[0] == subscription and k[1] == group]:
            del self._held[key]

    def _holding(self, subscription: str, group: str, consumer_id: str) -> dict[str, _Claim]:
        key = (subscription, group, consumer_id)
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = {}
        elif len(held) > 100_000:
            held.clear()  # bounded: the dedup keys still resolve ids
        return held

    def _known(self, subscription: str, group: str, consumer_id: str, event_id: str) -> str:
        """The sequence of an event the consumer claimed here ('' if unknown)."""
        held = self._held.get((subscription, group, consumer_id))
        known = None if held is None else held.get(event_id)
        return "" if known is None else known[0].split(b"-", 1)[0].decode()

    def _forget(self, subscription: str, group: str, consumer_id: str, event_id: str) -> None:
        held = self._held.get((subscription, group, consumer_id))
        if held is not None:
            held.pop(event_id, None)

    @staticmethod
    def _next_due(now_ms: Any, due_ms: Any) -> float | None:
        if due_ms is None:
            return None
        # Redis time -> this host's clock
        return time.time() + (float(due_ms) - int(now_ms)) / 1000.0

    async def claim(self, subscription: str, group: str, consumer_id: str, *, max_count: int,
                    visibility_timeout: float, filter: ClaimFilter | None = None) -> ClaimResult:
        if consumer_id in RESERVED_CONSUMERS:
            raise ValueError(f'consumer id "{consumer_id}" is reserved by the Redis store')
        sub = self._sub(subscription)
        s = sub.stream
        version = s.notifier.version  # before the read: a change after it wakes the waiter
        f = filter or ClaimFilter()
        if s.config.partitions <= 1 and f.partition not in (None, 0):
            return ClaimResult([], version)  # a partition the stream does not have
        key = s.read_key(f.partition)
        # a filter on types or a correlation id is applied in the script (rejected entries are
        # settled there); a partition's events are exactly its key's entries
        here = f.event_types is not None or f.correlation_id is not None
        vt_ms = max(int(visibility_timeout * 1000), 1)
        held = self._holding(subscription, group, consumer_id)
        now, due, found, more = await self._run_group(
            "claim", subscription, group, consumer_id,
            [max_count, vt_ms, key, int(here), "\n".join(sorted(f.event_types or ())),
             int(f.event_types is not None), f.correlation_id or "",
             int(f.correlation_id is not None), self.options.max_scan])
        name, at = s.name, int(now)
        claimed: list[Claimed] = []
        for m, attempt, reason, flat in found:
            e = entries.event(name, int(m), flat)
            held[e.id] = (m + b"-1", at, reason is not None)
            claimed.append(Claimed(e, int(attempt), None if reason is None else reason.decode()))
        room = max_count - len(claimed)
        if room > 0 and not here:
            try:
                claimed += await self._read_new(sub, group, consumer_id, key, room, vt_ms, at,
                                                held)
            except (StoreUnavailableError, ResponseError) as exc:
                if not claimed:
                    raise
                # what the script took is this consumer's now: hand it over, come back soon
                log.warning("reading new events of %s for %s failed (%s); handing over the "
                            "%d taken", subscription, consumer_id, exc, len(claimed))
                return ClaimResult(claimed, version, time.time())
        return ClaimResult(claimed, version, time.time() if more else self._next_due(now, due))

    async def _read_new(self, sub: SubKeys, group: str, consumer_id: str, key: str, room: int,
                        vt_ms: int, now: int, held: dict[str, _Claim]) -> list[Claimed]:
        """New entries straight from Redis into the consumer's PEL, with the consumer's timer
        set in the same transaction (whatever removed it since the claim script ran)."""
        s = sub.stream
        rn = f"{consumer_id}@{vt_ms}"
        async with self._io():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.execute_command("XREADGROUP", "GROUP", sub.gname(group), rn, "COUNT", room,
                                     "STREAMS", s.partition(int(key)) if key else s.log, ">")
                pipe.zadd(sub.group_keys(group)[6], {f"c:{rn}": now + vt_ms}, lt=True)
                reply, _ = await pipe.execute()
        if isinstance(reply, dict):  # RESP3: a map of stream -> entries
            reply = list(reply.items())
        name = s.name
        decode = entries.decode_envelope
        out: list[Claimed] = []
        for _, new in reply or ():
            for entry_id, flat in new:
                seq = int(entry_id.split(b"-", 1)[0])
                if flat[0] == b"e" and flat[2] == b"d":  # the hot path, inlined
                    v = decode(flat[1])
                    e = RecordedEvent(v.id, name, v.type, v.corr, v.ts, flat[3], seq, v.ct, v.h,
                                      v.p)
                else:
                    e = entries.event(name, seq, flat)
                held[e.id] = (entry_id, now, False)
                out.append(Claimed(e, 1))
        return out

    async def ack(self, subscription: str, group: str, consumer_id: str,
                  event_ids: Sequence[str]) -> list[str]:
        if not event_ids:
            return []
        held = self._held.get((subscription, group, consumer_id), {})
        known: list[str] = []
        claims: list[_Claim] = []
        unknown: list[str] = []
        for event_id in event_ids:
            claim = held.pop(event_id, None)
            if claim is None:
                unknown.append(event_id)
            else:
                known.append(event_id)
                claims.append(claim)
        since = min([c[1] for c in claims]) if claims else 0
        # ids joined in one argument: far cheaper for redis-py to send than one each
        with_reason = b",".join([c[0].split(b"-", 1)[0] for c in claims if c[2]])
        try:
            missing = await self._run_group(
                "ack", subscription, group, consumer_id,
                [since, b",".join([c[0] for c in claims]), with_reason, *unknown])
        except BaseException:
            for event_id, claim in zip(known, claims):  # not settled: keep what is known
                held[event_id] = claim
            raise
        ordered = known + unknown
        return [ordered[int(i) - 1] for i in missing]

    async def nack(self, subscription: str, group: str, consumer_id: str, event_id: str, *,
                   delay: float, reason: str | None = None) -> bool:
        done = await self._run_group(
            "nack", subscription, group, consumer_id,
            [event_id, self._known(subscription, group, consumer_id, event_id),
             int(max(delay, 0.0) * 1000), reason or ""])
        self._forget(subscription, group, consumer_id, event_id)
        return bool(done)

    async def release(self, subscription: str, group: str, consumer_id: str, *,
                      event_ids: Sequence[str] | None = None,
                      unseen: Sequence[str] = ()) -> int:
        def pairs(ids: Sequence[str]) -> list[str]:
            return [x for i in ids for x in (i, self._known(subscription, group, consumer_id, i))]

        targets = () if event_ids is None else event_ids
        n = int(await self._run_group(
            "release", subscription, group, consumer_id,
            [int(event_ids is None), len(targets), *pairs(targets), *pairs(unseen)]))
        if event_ids is None:
            self._held.pop((subscription, group, consumer_id), None)
        else:
            for event_id in event_ids:
                self._forget(subscription, group, consumer_id, event_id)
        return n

    async def extend(self, subscription: str, group: str, consumer_id: str,
                     event_ids: Sequence[str], *, visibility_timeout: float) -> list[str]:
        if not event_ids:
            return []
        missing = await self._run_group(
            "extend", subscription, group, consumer_id,
            [max(int(visibility_timeout * 1000), 1),
             *[x for i in event_ids for x in (i, self._known(subscription, group, consumer_id,
                                                              i))]])
        return [event_ids[int(i) - 1] for i in missing]

    async def wait_for_change(self, subscription: str, group: str, version: int,
                              timeout: float | None) -> int:
        return await self._sub(subscription).stream.notifier.wait(version, timeout)

    def notify(self, subscription: str) -> None:
        # a mode's choice is local to this host: waking the local waiters is enough (state
        # changes in Redis are published by the scripts themselves)
        self._sub(subscription).stream.notifier.bump()

    # --- dead letters ------------------------------------------------------------------------

    async def dead_letter(self, subscription: str, group: str, consumer_id: str, event_id: str, *,
                          reason: str, attempts: int, error: str | None = None) -> bool:
        sub = self._sub(subscription)
        done = await self._run_group(
            "dead_letter", subscription, group, consumer_id,
            [event_id, self._known(subscription, group, consumer_id, event_id), reason,
             attempts, error or "", int(error is not None)], [sub.dead, sub.dead_index])
        self._forget(subscription, group, consumer_id, event_id)
        return bool(done)

    async def group_lags(self, subscription: str) -> dict[str, int]:
        """From each group's Redis consumer group: ``lag`` (entries not read yet) plus the
        pending entries (in flight, parked for redelivery), less those parked as dead
        letters (``svrnty:dead``)."""
        sub = self._sub(subscription)
        st = sub.stream
        out: dict[str, int] = {}
        async with self._io():
            groups = [g.decode() for g in await self.redis.smembers(sub.groups)]
            parts = {k.decode(): v.decode() for k, v in (await self.redis.hgetall(sub.parts)).items()}
            for group in groups:
                key = st.partition(int(parts[group])) if parts.get(group) not in (None, "") \
                    else st.log
                name = sub.gname(group)
                info = next((i for i in await self.redis.xinfo_groups(key)
                             if _text(i.get("name")) == name), None)
                if info is None:
                    continue
                lag = info.get("lag")
                if lag is None:  # Redis cannot tell (entries deleted past the cursor): count
                    last = _text(info.get("last-delivered-id"))
                    lag = len(await self.redis.xrange(key, min=f"({last}", max="+"))
                summary = await self.redis.xpending(key, name)
                dead = sum(int(c["pending"]) for c in summary.get("consumers") or ()
                           if _text(c["name"]) == _DEAD)
                out[group] = int(lag) + int(summary.get("pending") or 0) - dead
        return out

    async def list_dead_letters(self, subscription: str, *,
                                limit: int | None = None) -> list[DeadLetter]:
        sub = self._sub(subscription)
        async with self._io():
            found = await self.redis.xrange(sub.dead, count=limit)
        out: list[DeadLetter] = []
        for _, f in found:
            error = f.get(b"error")
            out.append(DeadLetter(
                event=entries.event_from(sub.stream.name, int(f[b"seq"]), f),
                subscription=subscription, group=f[b"group"].decode(),
                consumer_id=f[b"consumer"].decode(), reason=f[b"reason"].decode(),
                attempts=int(f[b"attempts"]), dead_lettered_at=_from_ms(f[b"at"]),
                error=None if error is None else error.decode()))
        return out

    async def _settle_dead(self, subscription: str, event_ids: Sequence[str] | None,
                           replay: bool) -> int:
        sub = self._sub(subscription)
        s = sub.stream
        if event_ids is not None and not event_ids:
            return 0
        return int(await self._run(
            "settle_dead", [s.log, sub.dead, sub.dead_index, sub.groups, sub.parts],
            [subscription, sub.base, s.channel, int(replay), *(event_ids or ())]))

    async def replay_dead_letters(self, subscription: str,
                                  event_ids: Sequence[str] | None = None) -> int:
        return await self._settle_dead(subscription, event_ids, replay=True)

    async def purge_dead_letters(self, subscription: str,
                                 event_ids: Sequence[str] | None = None) -> int:
        return await self._settle_dead(subscription, event_ids, replay=False)

    # --- receipts, idempotency ------------------------------------------------------------

    async def record_receipts(self, subscription: str, consumer_id: str,
                              event_ids: Sequence[str], *, read: bool) -> None:
        if event_ids:
            await self._run("receipts", [self._sub(subscription).receipts],
                            [consumer_id, int(read), *event_ids])

    async def list_receipts(self, subscription: str, *, event_id: str | None = None,
                            consumer_id: str | None = None) -> list[Receipt]:
        sub = self._sub(subscription)
        async with self._io():
            if event_id is not None and consumer_id is not None:
                value = await self.redis.hget(sub.receipts, f"{consumer_id}\n{event_id}")
                items = {} if value is None else {f"{consumer_id}\n{event_id}".encode(): value}
            else:
                items = await self.redis.hgetall(sub.receipts)
        out: list[Receipt] = []
        for field, value in items.items():
            consumer, _, event = field.decode().partition("\n")
            if (event_id is not None and event != event_id) or (
                    consumer_id is not None and consumer != consumer_id):
                continue
            delivered, _, read = value.decode().partition(":")
            out.append(Receipt(subscription, consumer, event,
                               delivered_at=_from_ms(delivered),
                               read_at=_from_ms(read) if read else None))
        out.sort(key=lambda r: (r.delivered_at, r.consumer_id, r.event_id))
        return out

    async def mark_processed(self, subscription: str, key: str) -> bool:
        sub = self._sub(subscription)
        async with self._io():
            return bool(await self.redis.sadd(sub.processed, key))

    async def ack_processed(self, subscription: str, group: str, consumer_id: str,
                            event_id: str) -> bool:
        # the processed mark and the ack in one script: no crash can land between them
        settled = await self._run_group(
            "ack_processed", subscription, group, consumer_id,
            [event_id, self._known(subscription, group, consumer_id, event_id),
             processed_key(group, event_id)],
            [self._sub(subscription).processed])
        self._forget(subscription, group, consumer_id, event_id)
        return bool(settled)

    async def is_processed(self, subscription: str, key: str) -> bool:
        sub = self._sub(subscription)
        async with self._io():
            return bool(await self.redis.sismember(sub.processed, key))

    # --- coordination -----------------------------------------------------------------------

    async def leases(self, subscription: str, group: str, *,
                     acquire: Mapping[str, tuple[str, float]] | None = None,
                     release: Mapping[str, str] | None = None) -> dict[str, str]:
        sub = self._sub(subscription)
        acquire, release = acquire or {}, release or {}
        args: list[Any] = [len(acquire)]
        for key, (holder, seconds) in acquire.items():
            args += (key, holder, max(int(seconds * 1000), 1))
        for key, holder in release.items():
            args += (key, holder)
        flat = await self._run("leases", [sub.leases(group)], args)
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    # --- projection checkpoints (a hash of the key prefix: name -> position) ------------------

    @property
    def _checkpoints_key(self) -> str:
        return f"{self.options.key_prefix}checkpoints"

    async def load_checkpoint(self, projection: str) -> int:
        async with self._io():
            value = await self.redis.hget(self._checkpoints_key, projection)
        return int(value) if value is not None else 0

    async def save_checkpoint(self, projection: str, position: int, *,
                              expected: int | None = None) -> bool:
        return bool(await self._run("checkpoint", [self._checkpoints_key],
                                    [projection, position,
                                     "" if expected is None else expected]))


def _from_ms(ms: bytes | str) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, timezone.utc)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
