"""The PostgreSQL event store.

Streams, events and every subscription's delivery state live in tables of one PostgreSQL
schema, so every host that points at the same database and schema sees the same streams and the
same delivery state, and a host that is killed loses no acked event (its un-acked ones come
back after their visibility timeout). :class:`PostgresStore` puts together the rooms of this
package: the pool and the listening connection (``connection``), the tables (``schema.sql``,
``schema``), the log of each stream (``log``), delivery state (``delivery``), snapshots
(``snapshots``) and scheduled events (``schedules``).

Waiting consumers are woken by ``LISTEN``/``NOTIFY`` on the schema's channel: every change that
can make something claimable (an append, a nack, a release, a replay) notifies in its
transaction, so the wake-up is sent when it commits, to every host.

The transactional outbox: :meth:`PostgresStore.transaction` opens a transaction whose
connection the application writes its own rows with; every append this store makes while the
block runs (``host.send(...)`` in it) joins that transaction. :meth:`PostgresStore.append_in`
appends on a connection the caller manages.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import msgspec

from svrnty_events.config import StreamType
from svrnty_events.events import RecordedEvent
from svrnty_events.replay import Snapshot
from svrnty_events.store import Capabilities, EventStore

from .checkpoints import Checkpoints
from .connection import Connection, PostgresStoreOptions
from .delivery import Delivery, Subscription
from .log import EPHEMERAL_TRIM_AT, Stream
from .schema import prepare
from .schedules import Schedules
from .snapshots import Snapshots

__all__ = ["PostgresStore", "PostgresStoreOptions", "Snapshot", "outbox_connection"]

#: (store, connection, streams appended to) of the outbox transaction the current task is in
_outbox: contextvars.ContextVar[
    tuple[Any, asyncpg.Connection, set[str], list[Callable[[], None]]] | None] = \
    contextvars.ContextVar("svrnty_events_postgres_outbox", default=None)


def outbox_connection() -> asyncpg.Connection | None:
    """The connection of the :meth:`PostgresStore.transaction` block the current task runs
    in (a command handler writes the application's rows with it), or None outside one."""
    outbox = _outbox.get()
    return None if outbox is None else outbox[1]


class PostgresStore(Checkpoints, Connection, Delivery, Snapshots, Schedules, EventStore):
    """Durable store on PostgreSQL (13 or later), shared by many hosts.

    :meth:`start` raises :class:`~svrnty_events.errors.ConfigError` (``store.options.url``)
    when the server cannot be reached or refuses the credentials or the database, and
    :class:`~svrnty_events.errors.StoreFormatError` when the schema was written by another
    version."""

    capabilities = Capabilities(durable=True, idempotent_append=True, shared=True,
                                schedules=True)

    def __init__(self, options: PostgresStoreOptions | dict[str, Any]) -> None:
        if isinstance(options, dict):
            options = msgspec.convert(options, PostgresStoreOptions)
        super().__init__(options)
        self._streams: dict[str, Stream] = {}
        self._subs: dict[str, Subscription] = {}
        self._groups: dict[tuple[str, str], int] = {}
        self._group_filters: dict[int, bytes | None] = {}
        self._claimed: dict[tuple[str, str, str], dict[str, tuple[int, int | None]]] = {}
        self._batches: dict[tuple[str, str, str], dict[int, int]] = {}
        self._lost: dict[tuple[str, str, str], set[int]] = {}
        self._resolving: set[tuple[str, str, str]] = set()
        self._started = False

    async def start(self) -> None:
        """Connect, create the schema and its tables on first start (or check their version),
        and start listening for changes."""
        if self._started:
            return
        self._started = True
        try:
            await self._open(lambda conn: prepare(conn, self.options.schema, self.where))
            await self._create_checkpoints()
        except BaseException:
            await self.close()
            raise

    async def __aenter__(self) -> PostgresStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the transactional outbox -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """``async with store.transaction() as conn:`` a pooled connection in a transaction,
        committed when the block returns and rolled back when it raises. The application
        writes its own rows with ``conn``; every append of this store from the current task
        (and the tasks it starts) while the block runs, such as the one ``host.send(...)``
        makes for a command's events, goes into the same transaction: the events are in the
        stream if and only if the application's rows are. Consumers are woken on commit."""
        if _outbox.get() is not None:
            raise RuntimeError("store.transaction() blocks do not nest")
        appended: set[str] = set()
        committed: list[Callable[[], None]] = []
        async with self._io(bounded=False):
            assert self._pool is not None
            async with self._pool.acquire() as conn:
                token = _outbox.set((self, conn, appended, committed))
                try:
                    async with conn.transaction():
                        yield conn
                finally:
                    _outbox.reset(token)
        for name in appended:  # committed
            st = self._streams[name]
            st.notifier.bump()
            cfg = st.config
            if cfg.retention_max_count is not None or cfg.retention_max_age is not None or (
                    cfg.type is StreamType.EPHEMERAL
                    and st.appended_since_trim >= EPHEMERAL_TRIM_AT // 2):
                await self._retain(st)
        for callback in committed:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        outbox = _outbox.get()
        if outbox is not None and outbox[0] is self:
            outbox[3].append(callback)
        else:
            callback()

    async def append(self, stream: str, events: Sequence[RecordedEvent], *,
                     expected_version: int | None = None) -> list[RecordedEvent]:
        outbox = _outbox.get()
        if outbox is not None and outbox[0] is self:
            out = await self.append_in(outbox[1], stream, events,
                                       expected_version=expected_version)
            outbox[2].add(stream)
            return out
        return await super().append(stream, events, expected_version=expected_version)
