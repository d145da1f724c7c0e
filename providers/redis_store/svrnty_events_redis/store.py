"""The Redis Streams event store.

Streams, delivery groups, dead letters, receipts and processed marks live in Redis, so every
host sharing the Redis server (and key prefix) sees the same streams and the same delivery state.
Each multi-key step is one Lua script (atomic, EVALSHA); the subscription engine's selector runs
in Python between the read of candidates and the claim. Waiting consumers are woken by Redis
pub/sub on a per-stream channel that every state change publishes to (no polling). The README
documents the mapping to Redis structures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, NoPermissionError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from svrnty_events.config import StreamConfig, StreamType, SubscriptionConfig
from svrnty_events.errors import (
    ConcurrencyError,
    ConfigError,
    StoreUnavailableError,
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

from . import scripts

log = logging.getLogger("svrnty_events_redis")

_DELIVER, _SKIP, _DROP = Selection.DELIVER, Selection.SKIP, Selection.DROP

#: consumer names the store uses inside Redis consumer groups
RESERVED_CONSUMERS = ("svrnty:parked", "svrnty:dead")

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError)
_headers_decoder = msgspec.json.Decoder(dict[str, str])


class RedisStoreOptions(msgspec.Struct, forbid_unknown_fields=True):
    #: redis:// or rediss:// (TLS) URL; a password goes in it (redis://:secret@host:6379/0),
    #: TLS settings in its query (?ssl_ca_certs=/path/ca.pem&ssl_cert_reqs=required)
    url: str = "redis://127.0.0.1:6379/0"
    #: prefix of every key and channel, so several applications can share one Redis
    key_prefix: str = "svrnty:"
    #: connections in the pool (one more is kept for the change notifications)
    max_connections: int = 32
    #: seconds to establish a connection before the call fails with StoreUnavailableError
    connect_timeout: float = 2.0
    #: seconds to wait for a reply before the call fails with StoreUnavailableError
    socket_timeout: float = 5.0
    #: reconnect attempts within one call (exponential backoff) before it fails
    retries: int = 2
    #: seconds an event id is remembered for idempotent append (its dedup key's TTL)
    dedup_window: float = 7 * 24 * 3600.0
    #: available (skipped) events a claim with a selector looks at, at most
    max_scan: int = 2000


class _Notifier(ChangeNotifier):
    """The kernel's change notifier, bumped by pub/sub messages and by ``notify``; it also
    tells when the store's pub/sub listener is subscribed."""

    __slots__ = ("subscribed",)

    def __init__(self) -> None:
        super().__init__()
        self.subscribed = asyncio.Event()


class _StreamKeys:
    __slots__ = ("name", "config", "tag", "log", "meta", "versions", "eid", "subs", "channel",
                 "sub_base", "notifier", "untrimmed")

    def __init__(self, prefix: str, config: StreamConfig) -> None:
        self.name = config.name
        self.config = config
        self.tag = tag = f"{prefix}{{{config.name}}}"
        self.log = f"{tag}:log"
        self.meta = f"{tag}:meta"
        self.versions = f"{tag}:versions"
        self.eid = f"{tag}:eid:"
        self.subs = f"{tag}:subs"
        self.channel = f"{tag}:changes"
        self.sub_base = f"{tag}:sub:"
        self.notifier = _Notifier()
        #: events this host appended since it last trimmed the (ephemeral) stream
        self.untrimmed = 0


class _SubKeys:
    __slots__ = ("name", "config", "stream", "base", "groups", "dead", "dead_index", "receipts",
                 "processed")

    def __init__(self, stream: _StreamKeys, config: SubscriptionConfig) -> None:
        self.name = config.name
        self.config = config
        self.stream = stream
        self.base = base = f"{stream.sub_base}{config.name}"
        self.groups = f"{base}:groups"
        self.dead = f"{base}:dead"
        self.dead_index = f"{base}:dead:index"
        self.receipts = f"{base}:receipts"
        self.processed = f"{base}:processed"

    def gname(self, group: str) -> str:
        return f"{self.name}:{group}"

    def leases(self, group: str) -> str:
        return f"{self.base}:g:{group}:leases"

    def deleted(self, group: str) -> str:
        """When the group was last deleted (for acks of entries claimed before)."""
        return f"{self.base}:g:{group}:deleted"

    def read_lock(self, group: str) -> tuple[str, str]:
        g = f"{self.base}:g:{group}"
        return f"{g}:reading", f"{g}:wanted"

    def group_keys(self, group: str) -> tuple[str, str, str, str]:
        g = f"{self.base}:g:{group}"
        return f"{g}:avail", f"{g}:timers", f"{g}:reasons", f"{g}:expired"


def _fields(flat: list[Any]) -> dict[bytes, bytes]:
    it = iter(flat)
    return dict(zip(it, it))


class _Envelope(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    """An entry's field ``e``: the envelope, a JSON array (readable with redis-cli)."""

    id: str
    type: str
    corr: str
    ts: datetime
    ct: str
    h: dict[str, str] = {}


_envelope_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(_Envelope)


def _entry(e: RecordedEvent) -> bytes:
    return _envelope_encoder.encode(
        _Envelope(e.id, e.type, e.correlation_id, e.timestamp, e.content_type, e.headers))


def _from_envelope(stream: str, seq: int, envelope: bytes, data: bytes) -> RecordedEvent:
    v = _envelope_decoder.decode(envelope)
    return RecordedEvent(id=v.id, stream=stream, type=v.type, correlation_id=v.corr,
                         timestamp=v.ts, data=data, sequence=seq, content_type=v.ct,
                         headers=v.h)


def _event(stream: str, seq: int, flat: list[Any]) -> RecordedEvent:
    """An entry's event from its flat field list (name, value, name, value...)."""
    if flat[0] == b"e" and flat[2] == b"d":  # as the append script writes it
        return _from_envelope(stream, seq, flat[1], flat[3])
    return _event_from(stream, seq, _fields(flat))


def _event_from(stream: str, seq: int, f: dict[bytes, bytes]) -> RecordedEvent:
    envelope = f.get(b"e")
    if envelope is not None:
        return _from_envelope(stream, seq, envelope, f[b"d"])
    # entries written with one field per envelope attribute
    headers = f.get(b"h")
    return RecordedEvent(
        id=f[b"id"].decode(), stream=stream, type=f[b"type"].decode(),
        correlation_id=f[b"corr"].decode(), timestamp=datetime.fromisoformat(f[b"ts"].decode()),
        data=f[b"data"], sequence=seq, content_type=f[b"ct"].decode(),
        headers=_headers_decoder.decode(headers) if headers else {})


#: what the store remembers of an event a consumer claimed: (entry id, Redis time in ms of the
#: claim, whether the event has a nack reason to clear when settled)
_Claim = tuple[bytes, int, bool]


def _raw_reply(response: Any, **options: Any) -> Any:
    return response


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore(EventStore):
    """Event store on Redis Streams (Redis >= 7.0): durable, shared by many hosts."""

    capabilities = Capabilities(durable=True, idempotent_append=True, shared=True)

    def __init__(self, options: RedisStoreOptions | None = None) -> None:
        self.options = options or RedisStoreOptions()
        self._client: aioredis.Redis | None = None
        self._pubsub_client: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._streams: dict[str, _StreamKeys] = {}
        self._by_channel: dict[bytes, _StreamKeys] = {}
        self._subs: dict[str, _SubKeys] = {}
        # (subscription, group, consumer) -> what the consumer claimed through this store:
        # event id -> (entry id, Redis time in ms of the claim, has a nack reason), so that
        # ack / nack need no lookup (the dedup key serves as a fallback)
        self._held: dict[tuple[str, str, str], dict[str, _Claim]] = {}
        self._scripts: dict[str, Any] = {}
        self._closed = False
        self._where = _redact(self.options.url)

    # --- connection ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _io(self) -> AsyncIterator[None]:
        """Bound a Redis round trip by ``socket_timeout`` and turn "Redis cannot be reached"
        into the kernel's retryable StoreUnavailableError.

        The bound is an ``asyncio.timeout`` rather than redis-py's socket timeout: with the
        latter, redis-py writes through ``asyncio.wait_for``, which on Python 3.11 can swallow
        a task's cancellation (a cancelled consumer would then keep waiting)."""
        try:
            async with asyncio.timeout(self.options.socket_timeout):
                yield
        except (AuthenticationError, AuthorizationError, NoPermissionError) as exc:
            # wrong or missing credentials: retrying cannot help
            raise ConfigError("store.options.url", f"Redis at {self._where} refused the "
                              f"credentials ({exc}); put the password (and the user, with "
                              "ACLs) in the URL: redis://user:password@host:6379/0") from exc
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(
                f"Redis at {self._where} is unavailable ({type(exc).__name__}: {exc}); "
                "the operation had no effect, retry later") from exc
        except ResponseError as exc:
            text = str(exc)
            if text.startswith(("LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "BUSY ")):
                raise StoreUnavailableError(
                    f"Redis at {self._where} cannot serve requests now ({text}); retry later"
                ) from exc
            raise

    def _connect_kwargs(self) -> dict[str, Any]:
        o = self.options
        return {
            "socket_connect_timeout": o.connect_timeout,
            "socket_keepalive": True,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.02), o.retries),
            "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionError,
                               TimeoutError, OSError],
            "decode_responses": False,
        }

    async def start(self) -> None:
        o = self.options
        self._client = aioredis.Redis.from_url(
            o.url, max_connections=o.max_connections, socket_timeout=None,
            **self._connect_kwargs())
        # XREADGROUP replies are read as Redis sends them (entries as flat field lists), which
        # saves building a dict per entry
        self._client.set_response_callback("XREADGROUP", _raw_reply)
        # the notification connection blocks on reads, so it has no socket timeout
        self._pubsub_client = aioredis.Redis.from_url(
            o.url, max_connections=2, socket_timeout=None, **self._connect_kwargs())
        for name in ("APPEND", "TRIM_EPHEMERAL", "CREATE_SUBSCRIPTION", "ENSURE_GROUP",
                     "DELETE_GROUP", "CLAIM", "PEEK", "TAKE", "ACK", "NACK", "RELEASE",
                     "DEAD_LETTER", "SETTLE_DEAD", "RECEIPTS", "LEASES", "UNLOCK",
                     "ACK_PROCESSED"):
            self._scripts[name] = self._client.register_script(getattr(scripts, name))
        try:
            async with self._io():
                await self._client.ping()
                self._pubsub = await self._open_pubsub()
        except BaseException:
            await self.close()
            raise
        self._listener = asyncio.ensure_future(self._listen())

    async def _open_pubsub(self) -> Any:
        assert self._pubsub_client is not None
        pubsub = self._pubsub_client.pubsub()
        await pubsub.subscribe(f"{self.options.key_prefix}control",
                               *(s.channel for s in self._streams.values()))
        return pubsub

    async def _listen(self) -> None:
        """Wake waiters on change messages; reconnect with backoff when Redis goes away."""
        backoff = 0.05
        while not self._closed:
            try:
                if self._pubsub is None:
                    self._pubsub = await self._open_pubsub()
                while True:
                    message = await self._pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    backoff = 0.05
                    stream = self._by_channel.get(message["channel"])
                    if stream is None:
                        continue
                    if message["type"] == "subscribe":
                        # (re)subscribed: changes may have happened while we were away
                        stream.notifier.subscribed.set()
                    stream.notifier.bump()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect
                if self._closed:
                    return
                log.warning("lost the change notifications from Redis at %s (%s); reconnecting "
                            "in %.2fs", self._where, exc, backoff)
                pubsub, self._pubsub = self._pubsub, None
                for s in self._streams.values():
                    s.notifier.subscribed.clear()
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            self._pubsub = None
        for client in (self._client, self._pubsub_client):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._client = self._pubsub_client = None

    @property
    def redis(self) -> aioredis.Redis:
        """The redis-py client (for diagnostics)."""
        if self._client is None:
            raise StoreUnavailableError("the Redis store is not started")
        return self._client

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._client is None:
            raise StoreUnavailableError("the Redis store is not started (or closed)")
        async with self._io():
            return await self._scripts[name](keys=keys, args=args)

    # --- streams -----------------------------------------------------------------------------

    def _stream(self, name: str) -> _StreamKeys:
        try:
            return self._streams[name]
        except KeyError:
            raise UnknownStreamError(name, self._streams) from None

    def _sub(self, name: str) -> _SubKeys:
        try:
            return self._subs[name]
        except KeyError:
            raise UnknownSubscriptionError(name, self._subs) from None

    async def create_stream(self, config: StreamConfig) -> None:
        existing = self._streams.get(config.name)
        if existing is not None:
            existing.config = config
            return
        s = _StreamKeys(self.options.key_prefix, config)
        self._streams[config.name] = s
        self._by_channel[s.channel.encode()] = s
        async with self._io():
            await self.redis.hset(s.meta, mapping={"type": str(config.type)})
            await self.redis.hsetnx(s.meta, "next", 0)
            if self._pubsub is not None:
                await self._pubsub.subscribe(s.channel)
        # make sure no change published from now on is missed
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(s.notifier.subscribed.wait(), self.options.connect_timeout)

    async def append(self, stream: str, events: Sequence[RecordedEvent], *,
                     expected_version: int | None = None) -> list[RecordedEvent]:
        s = self._stream(stream)
        if not events:
            return []
        correlation = events[0].correlation_id
        if expected_version is not None and any(e.correlation_id != correlation for e in events):
            raise ValueError("expected_version needs a batch with one correlation id")
        cfg = s.config
        args: list[Any] = [
            s.eid, "" if expected_version is None else expected_version, correlation,
            int(self.options.dedup_window * 1000), cfg.retention_max_count or 0,
            int(cfg.retention_max_age * 1000) if cfg.retention_max_age else 0, s.channel]
        for e in events:
            args += (e.id, e.correlation_id, _entry(e), e.data)
        result = await self._run("APPEND", [s.log, s.meta, s.versions], args)
        if result[0] == b"conflict":
            raise ConcurrencyError(stream, correlation, expected_version or 0, int(result[1]))
        length, seqs = int(result[1]), result[2]
        replace = msgspec.structs.replace
        out = [replace(e, sequence=int(seq), stream=stream) for e, seq in zip(events, seqs)]
        if cfg.type is StreamType.EPHEMERAL:
            # trimming looks at every group's consumers: at most once per 1024 events appended
            s.untrimmed += len(events)
            if length >= 1024 and s.untrimmed >= 1024:
                s.untrimmed = 0
                await self._run("TRIM_EPHEMERAL", [s.log, s.meta, s.subs], [s.sub_base])
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
                entries = await self.redis.xrange(s.log, min=start, max="+", count=page)
            for entry_id, fields in entries:
                seq = int(entry_id.split(b"-", 1)[0])
                e = _event_from(stream, seq, fields)
                if correlation_id is not None and e.correlation_id != correlation_id:
                    continue
                if types is not None and e.type not in types:
                    continue
                if since is not None and e.timestamp < since:
                    continue
                out.append(e)
                if limit is not None and len(out) >= limit:
                    return out
            if len(entries) < page:
                return out
            start = f"{int(entries[-1][0].split(b'-', 1)[0]) + 1}-0"

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
        first_sequence = int(first[0][0].split(b"-", 1)[0]) if first else next_sequence
        return StreamInfo(name=stream, type=str(s.config.type), length=int(length),
                          first_sequence=first_sequence, next_sequence=next_sequence,
                          metadata={"store": "redis", "key": s.log})

    # --- subscriptions -------------------------------------------------------------------------

    async def create_subscription(self, config: SubscriptionConfig) -> None:
        existing = self._subs.get(config.name)
        if existing is not None:
            existing.config = config
            return
        s = self._stream(config.stream)
        sub = _SubKeys(s, config)
        await self._run("CREATE_SUBSCRIPTION", [s.log, s.meta, s.subs], [config.name])
        self._subs[config.name] = sub

    def _group_keys(self, sub: _SubKeys, group: str) -> list[str]:
        s = sub.stream
        return [s.log, s.meta, sub.groups, s.subs, *sub.group_keys(group),
                *sub.read_lock(group)]

    async def ensure_group(self, subscription: str, group: str, *,
                           start: int | None = None) -> None:
        sub = self._sub(subscription)
        s = sub.stream
        await self._run("ENSURE_GROUP", [s.log, s.meta, sub.groups, s.subs],
                        [subscription, group, sub.gname(group), "" if start is None else start])

    async def delete_group(self, subscription: str, group: str) -> None:
        sub = self._sub(subscription)
        s = sub.stream
        await self._run("DELETE_GROUP", [s.log, sub.groups, *sub.group_keys(group), s.subs,
                                         sub.deleted(group)],
                        [subscription, group, sub.gname(group)])
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

    @staticmethod
    def _claimed(held: dict[str, _Claim], seq: bytes, attempt: int, reason: Any,
                 event: RecordedEvent, now: Any) -> Claimed:
        held[event.id] = (seq + b"-1", int(now), reason is not None)
        return Claimed(event, int(attempt), _str(reason))

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
                    visibility_timeout: float, selector: Selector | None = None) -> ClaimResult:
        if consumer_id in RESERVED_CONSUMERS:
            raise ValueError(f'consumer id "{consumer_id}" is reserved by the Redis store')
        sub = self._sub(subscription)
        s = sub.stream
        version = s.notifier.version  # before the read: a change after it wakes the waiter
        keys = self._group_keys(sub, group)
        vt_ms = max(int(visibility_timeout * 1000), 1)
        head = [subscription, group, sub.gname(group)]
        held = self._holding(subscription, group, consumer_id)
        if selector is None:
            now, due, entries = await self._run(
                "CLAIM", keys, [*head, consumer_id, max_count, vt_ms])
            claimed = [self._claimed(held, m, attempt, reason, _event(s.name, int(m), flat), now)
                       for m, attempt, reason, flat in entries]
            room = max_count - len(claimed)
            if room > 0:
                # new entries: read straight from Redis, with the consumer's timer set in the
                # same transaction (whatever removed it since the script ran)
                rn = f"{consumer_id}@{vt_ms}"
                try:
                    async with self._io():
                        async with self.redis.pipeline(transaction=True) as pipe:
                            pipe.execute_command("XREADGROUP", "GROUP", head[2], rn, "COUNT",
                                                 room, "STREAMS", s.log, ">")
                            pipe.zadd(keys[5], {f"c:{rn}": int(now) + vt_ms},  # timers
                                      lt=True)
                            reply, _ = await pipe.execute()
                except (StoreUnavailableError, ResponseError) as exc:
                    if not claimed:
                        raise
                    # what the script took is this consumer's now: hand it over, come back soon
                    log.warning("reading new events of %s for %s failed (%s); handing over the "
                                "%d taken", subscription, consumer_id, exc, len(claimed))
                    return ClaimResult(claimed, version, time.time())
                name = s.name
                at = int(now)
                if isinstance(reply, dict):  # RESP3: a map of stream -> entries
                    reply = list(reply.items())
                decode = _envelope_decoder.decode
                append = claimed.append
                for _, new in reply or ():
                    for entry_id, flat in new:
                        seq = int(entry_id.split(b"-", 1)[0])
                        if flat[0] == b"e" and flat[2] == b"d":  # the hot path, inlined
                            v = decode(flat[1])
                            e = RecordedEvent(v.id, name, v.type, v.corr, v.ts, flat[3], seq,
                                              v.ct, v.h)
                        else:
                            e = _event(name, seq, flat)
                        held[e.id] = (entry_id, at, False)
                        append(Claimed(e, 1))
            return ClaimResult(claimed, version, self._next_due(now, due))

        # 1. events waiting for redelivery: look, let the selector choose, then take
        deliver: list[str] = []
        drop: list[str] = []
        candidates: dict[str, RecordedEvent] = {}
        after, scanned, page = "-1", 0, max(64, min(4 * max_count, 512))
        first = True
        # the read lock's value: this claim's own, so letting go never frees another's lock
        token = f"{consumer_id}@{vt_ms}#{os.urandom(6).hex()}"
        locked = False
        handed_back = False  # entries this claim read were handed back (others may want them)
        more_unread = False  # its last read got all it asked for: new entries may be left
        asked = False  # a PEEK asked for the lock and its answer is not known
        lock_due: int | None = None  # Redis ms at which a lock another claimer holds expires
        try:
            while len(deliver) < max_count and scanned < self.options.max_scan:
                asked = asked or first
                now, count, entries, got_lock, lock_ms = await self._run(
                    "PEEK", keys, [*head, after, page, "1" if first else "0", vt_ms,
                                   "1" if first else "0", token])
                if first and not got_lock and int(lock_ms) >= 0:
                    lock_due = int(now) + int(lock_ms)
                locked = locked or bool(got_lock)
                asked = False
                first = False
                scanned += int(count)
                for m, flat in entries:
                    m = m.decode()
                    e = _event(s.name, int(m), flat)
                    verdict = selector(e)
                    if verdict is _DELIVER:
                        if len(deliver) < max_count:
                            deliver.append(m)
                            candidates[m] = e
                    elif verdict is _DROP:
                        drop.append(m)
                    after = m
                if int(count) < page:
                    break
            # 2. take them, then (holding the read lock) read new events and apply the
            # selector to those
            claimed: list[Claimed] = []
            skip_new: list[str] = []
            drop_new: list[str] = []
            n_new = max_count - len(deliver) if locked else 0
            now, due, taken, new = await self._run(
                "TAKE", keys, [*head, consumer_id, vt_ms, s.channel, n_new, ",".join(deliver),
                               ",".join(drop), "", "", "1" if locked else "0"])
            for m, attempt, reason in taken:
                claimed.append(self._claimed(held, m, attempt, reason, candidates[m.decode()],
                                             now))
            rounds = 64  # bounded: each round reads at most max_count new events
            for round_ in range(rounds):
                requested = n_new
                more_unread = 0 < requested == len(new)
                for m, attempt, reason, flat in new:
                    e = _event(s.name, int(m), flat)
                    verdict = selector(e)
                    if verdict is _DELIVER:
                        claimed.append(self._claimed(held, m, attempt, reason, e, now))
                    elif verdict is _SKIP:
                        skip_new.append(m.decode())
                    else:
                        drop_new.append(m.decode())
                more = locked and 0 < requested == len(new) and len(claimed) < max_count
                if not skip_new and not drop_new and not more:
                    break
                # the last round hands back what the one before read and reads nothing more
                n_new = max_count - len(claimed) if more and round_ < rounds - 1 else 0
                handed_back = handed_back or bool(skip_new)
                now, due, _, new = await self._run(
                    "TAKE", keys, [*head, consumer_id, vt_ms, s.channel, n_new, "", "",
                                   ",".join(skip_new), ",".join(drop_new),
                                   "1" if locked else "0"])
                more_unread = 0 < n_new == len(new)
                skip_new, drop_new = [], []
                if not new:
                    break
        finally:
            # also after a PEEK that failed: Redis may have given the lock before the reply
            # was lost. Compare-and-delete, so this never frees another claimer's lock.
            try:
                if locked or asked:
                    await self._run("UNLOCK", sub.read_lock(group),
                                    [token, s.channel, "1" if handed_back else "0",
                                     "1" if more_unread else "0"])
            except (StoreUnavailableError, ResponseError) as exc:
                log.warning("could not let go of the read lock of %s (%s); it expires by "
                            "itself", subscription, exc)
        if lock_due is not None and (due is None or lock_due < float(due)):
            due = lock_due
        return ClaimResult(claimed, version, self._next_due(now, due))

    async def ack(self, subscription: str, group: str, consumer_id: str,
                  event_ids: Sequence[str]) -> list[str]:
        if not event_ids:
            return []
        sub = self._sub(subscription)
        s = sub.stream
        _, _, reasons, expired = sub.group_keys(group)
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
            missing = await self._run(
                "ACK", [s.log, sub.groups, reasons, expired, sub.deleted(group)],
                [sub.gname(group), group, consumer_id, s.eid, since,
                 b",".join([c[0] for c in claims]), with_reason, *unknown])
        except BaseException:
            for event_id, claim in zip(known, claims):  # not settled: keep what is known
                held[event_id] = claim
            raise
        ordered = known + unknown
        return [ordered[int(i) - 1] for i in missing]

    async def nack(self, subscription: str, group: str, consumer_id: str, event_id: str, *,
                   delay: float, reason: str | None = None) -> bool:
        sub = self._sub(subscription)
        s = sub.stream
        done = await self._run(
            "NACK", [s.log, sub.groups, *sub.group_keys(group)],
            [sub.gname(group), group, consumer_id, s.eid, event_id,
             self._known(subscription, group, consumer_id, event_id),
             int(max(delay, 0.0) * 1000), reason or "", s.channel])
        self._forget(subscription, group, consumer_id, event_id)
        return bool(done)

    async def release(self, subscription: str, group: str, consumer_id: str, *,
                      unseen: Sequence[str] = ()) -> int:
        sub = self._sub(subscription)
        s = sub.stream
        avail, timers, _, expired = sub.group_keys(group)
        held = self._held.get((subscription, group, consumer_id), {})
        # an unseen event's delivery count is set back by one (XCLAIM ... RETRYCOUNT)
        hidden = b",".join([held[i][0] for i in unseen if i in held])
        n = int(await self._run("RELEASE", [s.log, sub.groups, avail, timers, expired],
                                [sub.gname(group), group, consumer_id, s.channel, hidden]))
        self._held.pop((subscription, group, consumer_id), None)
        return n

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
        s = sub.stream
        done = await self._run(
            "DEAD_LETTER", [s.log, sub.groups, *sub.group_keys(group), sub.dead, sub.dead_index],
            [sub.gname(group), group, consumer_id, s.eid, event_id,
             self._known(subscription, group, consumer_id, event_id),
             reason, attempts, error or "", "0" if error is None else "1"])
        self._forget(subscription, group, consumer_id, event_id)
        return bool(done)

    async def list_dead_letters(self, subscription: str, *,
                                limit: int | None = None) -> list[DeadLetter]:
        sub = self._sub(subscription)
        async with self._io():
            entries = await self.redis.xrange(sub.dead, count=limit)
        out: list[DeadLetter] = []
        for entry_id, f in entries:
            seq = int(f[b"seq"])
            error = f.get(b"error")
            out.append(DeadLetter(
                event=_event_from(sub.stream.name, seq, f), subscription=subscription,
                group=f[b"group"].decode(), consumer_id=f[b"consumer"].decode(),
                reason=f[b"reason"].decode(), attempts=int(f[b"attempts"]),
                dead_lettered_at=datetime.fromtimestamp(int(f[b"at"]) / 1000, timezone.utc),
                error=None if error is None else error.decode()))
        return out

    async def _settle_dead(self, subscription: str, event_ids: Sequence[str] | None,
                           replay: bool) -> int:
        sub = self._sub(subscription)
        s = sub.stream
        if event_ids is not None and not event_ids:
            return 0
        return int(await self._run(
            "SETTLE_DEAD", [s.log, sub.dead, sub.dead_index, sub.groups],
            [subscription, sub.base, s.channel, "1" if replay else "0", *(event_ids or ())]))

    async def replay_dead_letters(self, subscription: str,
                                  event_ids: Sequence[str] | None = None) -> int:
        return await self._settle_dead(subscription, event_ids, replay=True)

    async def purge_dead_letters(self, subscription: str,
                                 event_ids: Sequence[str] | None = None) -> int:
        return await self._settle_dead(subscription, event_ids, replay=False)

    # --- receipts, idempotency ------------------------------------------------------------

    async def record_receipts(self, subscription: str, consumer_id: str,
                              event_ids: Sequence[str], *, read: bool) -> None:
        if not event_ids:
            return
        sub = self._sub(subscription)
        await self._run("RECEIPTS", [sub.receipts],
                        [consumer_id, "1" if read else "0", *event_ids])

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
        sub = self._sub(subscription)
        s = sub.stream
        settled = await self._run(
            "ACK_PROCESSED", [s.log, sub.groups, sub.group_keys(group)[2], sub.processed],
            [sub.gname(group), group, consumer_id, s.eid, event_id,
             self._known(subscription, group, consumer_id, event_id)])
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
        flat = await self._run("LEASES", [sub.leases(group)], args)
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


def _from_ms(ms: str) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, timezone.utc)


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if user else '***'}@{host}"
