"""The store's connections to Redis: the command pool, the scripts, and the pub/sub
connection whose change messages wake waiting consumers (reconnected in the background).
Failures become the kernel's errors: StoreUnavailableError (retryable) or, for refused
credentials, ConfigError."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, NoPermissionError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from svrnty_events.errors import ConfigError, StoreUnavailableError

from . import scripts
from .keys import StreamKeys

log = logging.getLogger("svrnty_events_redis")

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError)


class RedisStoreOptions(msgspec.Struct, forbid_unknown_fields=True):
    #: redis:// or rediss:// (TLS) URL; a password goes in it (redis://:secret@host:6379/0),
    #: TLS settings in its query (?ssl_ca_certs=/path/ca.pem&ssl_cert_reqs=required)
    url: str = "redis://127.0.0.1:6379/0"
    #: prefix of every key and channel, so several applications can share one Redis
    key_prefix: str = "svrnty:"
    #: connections in the pool (one more is kept for the change notifications)
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 32
    #: seconds to establish a connection before the call fails with StoreUnavailableError
    connect_timeout: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    #: seconds to wait for a reply before the call fails with StoreUnavailableError
    socket_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    #: reconnect attempts within one call (exponential backoff) before it fails
    retries: Annotated[int, msgspec.Meta(ge=0)] = 2
    #: seconds an event id is remembered for idempotent append (its dedup key's TTL)
    dedup_window: Annotated[float, msgspec.Meta(gt=0)] = 7 * 24 * 3600.0
    #: new entries one claim with a filter on event types or a correlation id looks at, at most
    max_scan: Annotated[int, msgspec.Meta(ge=1)] = 2000


def _raw_reply(response: Any, **options: Any) -> Any:
    return response


class Connection:
    """The Redis side of the store: clients, scripts, change notifications per stream."""

    def __init__(self, options: RedisStoreOptions | None = None) -> None:
        self.options = options or RedisStoreOptions()
        self._client: aioredis.Redis | None = None
        self._pubsub_client: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        #: streams whose change channel is listened to
        self._streams: dict[str, StreamKeys] = {}
        self._by_channel: dict[bytes, StreamKeys] = {}
        self._scripts: dict[str, Any] = {}
        self._closed = False
        self._where = _redact(self.options.url)

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
        for name in scripts.GROUP_SCRIPTS + scripts.OTHER_SCRIPTS:
            self._scripts[name] = self._client.register_script(scripts.source(name))
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


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if user else '***'}@{host}"
