"""The store's connections to PostgreSQL: the options, the connection pool, the listening
connection whose notifications wake waiting consumers (re-listened in the background when it
drops), and the mapping of failures to the kernel's errors: ConfigError at start (wrong host,
credentials or database: retrying cannot help), StoreUnavailableError afterwards (retryable)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import asyncpg
import msgspec

from svrnty_events.errors import ConfigError, StoreUnavailableError

log = logging.getLogger("svrnty_events_postgres")

#: the server or the network went away: the operation had no effect (or, for a commit whose
#: reply was lost, may have had; every operation of the store is safe to retry)
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError, ConnectionError, TimeoutError, asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,   # class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, terminated, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.exceptions.InterfaceError,  # connection closed underneath, pool closing
    asyncpg.exceptions.InternalClientError,
)


#: ``application_name`` of the store's connections (``pg_stat_activity`` shows which is which)
APPLICATION = "svrnty-events"
LISTENER_APPLICATION = "svrnty-events-listener"


class PostgresStoreOptions(msgspec.Struct, forbid_unknown_fields=True):
    #: postgresql:// URL: postgresql://user:password@host:5432/database (a password is
    #: redacted from error messages); libpq query options such as ?sslmode=require work
    url: str
    #: the PostgreSQL schema that holds the store's tables (created if missing); hosts that
    #: share streams use the same schema, applications sharing a database each their own
    schema: Annotated[str, msgspec.Meta(pattern=r"^[a-z_][a-z0-9_]{0,46}$")] = "svrnty_events"
    #: connections the pool keeps open / opens at most (one more listens for notifications)
    min_pool_size: Annotated[int, msgspec.Meta(ge=0)] = 1
    max_pool_size: Annotated[int, msgspec.Meta(ge=1)] = 10
    #: seconds to establish a connection before the call fails
    connect_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    #: seconds one operation may take before it fails with StoreUnavailableError
    command_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    #: seconds between health checks of the listening connection: a connection lost without
    #: a word (a dropped network) is found and replaced within this bound
    listen_check_interval: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    #: a waiting consumer looks again at least this often, whatever it was told (the fallback
    #: should a notification be lost in a way no check sees)
    max_wait: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    #: events deleted per transaction by retention (age, count, ephemeral trim)
    retention_step: Annotated[int, msgspec.Meta(ge=1)] = 1000


def redact(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if user else '***'}@{host}"


def start_error(where: str, exc: BaseException) -> ConfigError:
    """Why the first connection failed, as the error of the option to fix."""
    reason = f"{type(exc).__name__}: {exc}".strip()
    if isinstance(exc, (asyncpg.exceptions.InvalidPasswordError,
                        asyncpg.exceptions.InvalidAuthorizationSpecificationError)):
        hint = "check the user and password in the URL (postgresql://user:password@host/db)"
    elif isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
        hint = "create the database (CREATE DATABASE ...) or name an existing one in the URL"
    elif isinstance(exc, socket.gaierror):
        hint = "the host name does not resolve; check the host in the URL"
    elif isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        reason = "no answer within connect_timeout"
        hint = "check the host and port in the URL, and that the server is running"
    else:
        hint = "check the host and port in the URL, and that the server is running"
    return ConfigError("store.options.url",
                       f"cannot connect to PostgreSQL at {where} ({reason}); {hint}")


class Notifier:
    """A change counter with waiters, bumped by the server's notifications, by this host's own
    changes and whenever the listening connection was (re)established."""

    __slots__ = ("version", "_waiters")

    def __init__(self) -> None:
        self.version = 0
        self._waiters: list[asyncio.Future[None]] = []

    def bump(self) -> None:
        self.version += 1
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait(self, version: int, timeout: float) -> int:
        if self.version != version:
            return self.version
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        timer = asyncio.get_running_loop().call_later(timeout, _resolve, fut)
        try:
            await fut
        finally:
            timer.cancel()
            if not fut.done():
                fut.cancel()
            if fut in self._waiters:
                self._waiters.remove(fut)
        return self.version


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Connection:
    """The PostgreSQL side of the store: the pool, the listener, the error mapping."""

    options: PostgresStoreOptions

    def __init__(self, options: PostgresStoreOptions) -> None:
        self.options = options
        self.where = redact(options.url)
        #: the schema as a quoted identifier, for the SQL text
        self.s = f'"{options.schema}"'
        #: the notification channel of the schema
        self.channel = f"{options.schema}.changes"
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._closed = False
        #: what a notification payload (a stream id) wakes
        self._notifiers: dict[int, Notifier] = {}
        self._background: set[asyncio.Future[Any]] = set()
        #: server pids of pooled connections only the store's own statements used
        self._clean: set[int] = set()

    # --- connections ---------------------------------------------------------------------

    async def _open(self, prepare: Callable[[asyncpg.Connection], Any]) -> None:
        o = self.options
        try:
            first = await asyncpg.connect(o.url, timeout=o.connect_timeout,
                                          server_settings={"application_name": APPLICATION})
        except _UNAVAILABLE + (asyncpg.exceptions.PostgresError, socket.gaierror) as exc:
            raise start_error(self.where, exc) from exc
        try:
            await prepare(first)
        finally:
            await first.close()
        try:
            self._pool = await asyncpg.create_pool(
                o.url, min_size=min(o.min_pool_size, o.max_pool_size), max_size=o.max_pool_size,
                timeout=o.connect_timeout, command_timeout=o.command_timeout,
                server_settings={"application_name": APPLICATION}, reset=self._reset)
        except _UNAVAILABLE + (asyncpg.exceptions.PostgresError,) as exc:
            raise start_error(self.where, exc) from exc
        self._listener = asyncio.ensure_future(self._listen())
        # the first wake-ups must not be missed: wait (bounded) for LISTEN to be in place
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(self._listening.wait(), o.connect_timeout)

    @contextlib.asynccontextmanager
    async def _io(self, bounded: bool = True) -> AsyncIterator[None]:
        """Bound one operation by ``command_timeout`` and turn "the server cannot be reached"
        into the kernel's retryable StoreUnavailableError."""
        if self._pool is None:
            raise StoreUnavailableError(f"the PostgreSQL store at {self.where} is not started "
                                        "(or closed)")
        try:
            async with asyncio.timeout(self.options.command_timeout if bounded else None):
                yield
        except asyncpg.exceptions.SerializationError as exc:  # 40001, 40P01 (deadlock)
            raise StoreUnavailableError(f"PostgreSQL at {self.where}: {exc}; retry") from exc
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(
                f"PostgreSQL at {self.where} is unavailable ({type(exc).__name__}: {exc}); "
                "the operation had no effect, retry later") from exc

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection (autocommit: each statement is a transaction of its own), for
        the application's own queries: reset (``RESET ALL``...) when released."""
        async with self._conn(own=False) as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _conn(self, own: bool = True) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for the store's own statements (see :meth:`_reset`)."""
        async with self._io():
            assert self._pool is not None
            async with self._pool.acquire() as conn:
                try:
                    yield conn
                finally:
                    if own and not conn.is_closed():
                        self._clean.add(conn.get_server_pid())

    async def _reset(self, conn: asyncpg.Connection) -> None:
        """The pool's reset of a released connection (an open transaction is rolled back
        before). The store's own statements leave no session state (no SET, LISTEN, cursor
        or session lock), so a connection only they used skips the reset query, a round trip
        per operation; one the application had (the outbox, ``connection()``, ``pool``) is
        reset."""
        if conn.get_server_pid() in self._clean:
            self._clean.discard(conn.get_server_pid())
        else:
            await conn.execute(conn.get_reset_query())

    @contextlib.asynccontextmanager
    async def _tx(self, own: bool = True) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection in a transaction, committed when the block returns.
        ``own=False``: the application's code runs on it too (reset when released)."""
        async with self._io():
            assert self._pool is not None
            async with self._pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        yield conn
                finally:
                    if own and not conn.is_closed():
                        self._clean.add(conn.get_server_pid())

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool (for the application's own queries and diagnostics)."""
        if self._pool is None:
            raise StoreUnavailableError(f"the PostgreSQL store at {self.where} is not started")
        return self._pool

    # --- notifications ---------------------------------------------------------------------

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            notifier = self._notifiers.get(int(payload))
        except ValueError:
            return
        if notifier is not None:
            notifier.bump()

    def _wake_all(self) -> None:
        for notifier in list(self._notifiers.values()):
            notifier.bump()

    async def _listen(self) -> None:
        """Keep one connection listening on the schema's channel. Whenever it is (re)opened,
        every waiter is woken (changes may have happened while nobody listened); it is probed
        every ``listen_check_interval`` seconds, and replaced with a backoff when it is lost
        (the server restarted, ``pg_terminate_backend``, a dropped network)."""
        o = self.options
        backoff = 0.05
        while not self._closed:
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(
                    o.url, timeout=o.connect_timeout,
                    server_settings={"application_name": LISTENER_APPLICATION})
                conn.add_termination_listener(lambda _c: lost.set())
                await conn.add_listener(self.channel, self._on_notification)
                self._listening.set()
                self._wake_all()
                backoff = 0.05
                while not lost.is_set():
                    with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                        await asyncio.wait_for(lost.wait(), o.listen_check_interval)
                    if not lost.is_set():
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), o.connect_timeout)
                raise ConnectionError("the listening connection was closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: listen again
                self._listening.clear()
                if self._closed:
                    return
                log.warning("lost the change notifications from PostgreSQL at %s (%s); "
                            "listening again in %.2fs", self.where, exc, backoff)
                self._wake_all()  # waiters look again rather than trust a dead channel
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()

    def _keep(self, aw: Any) -> None:
        """Run ``aw`` as a task that close() waits for (a release after a cancelled claim)."""
        task = asyncio.ensure_future(aw)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 5)
            except Exception:  # noqa: BLE001 - a server that is gone: drop the connections
                pool.terminate()
        self._wake_all()  # waiters return; their next call raises StoreUnavailableError
