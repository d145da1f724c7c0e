"""The SQLite event store.

Streams, events and every subscription's delivery state live in one SQLite database file
(WAL mode), so a host that is killed and restarted loses no acked event and redelivers every
unacked one. :class:`SqliteStore` puts together the rooms of this package: the connection on
its worker thread and the file lock (``database``), the tables (``schema.sql``, ``schema``),
the log of each stream (``log``), delivery state (``delivery``), snapshots (``snapshots``)
scheduled events (``schedules``) and projection checkpoints (``checkpoints``).

Threading: one connection, owned by one dedicated worker thread; every statement runs there,
so blocking SQLite calls never stall the event loop, and operations are applied in the order
they were submitted. Each operation is one transaction.

One process per database file: :meth:`SqliteStore.start` takes an exclusive lock on
``<path>.lock`` and a second process fails with :class:`DatabaseInUseError`. That is what lets
the store release every in-flight event at start (no consumer of a previous process can still
hold one) and keep its wake-ups in-process (pushed by appends, releases and notify; no polling).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from svrnty_events.store import Capabilities, EventStore

from .checkpoints import Checkpoints
from .checkpoints import create_table as create_checkpoints
from .database import Database, DatabaseInUseError, FileLock
from .delivery import Delivery, Subscription, recover
from .log import Log, Stream
from .schedules import Schedules
from .snapshots import Snapshot, Snapshots

__all__ = ["DatabaseInUseError", "Snapshot", "SqliteStore", "SqliteStoreOptions"]


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


class SqliteStore(Log, Delivery, Snapshots, Schedules, Checkpoints, EventStore):
    """Durable store on one SQLite file: streams, events and subscription delivery state.

    :meth:`start` raises :class:`DatabaseInUseError` when another process has the file, and
    :class:`~svrnty_events.errors.StoreFormatError` when a newer version wrote it."""

    capabilities = Capabilities(durable=True, idempotent_append=True, shared=False,
                                schedules=True)

    def __init__(self, options: SqliteStoreOptions | dict[str, Any]) -> None:
        if isinstance(options, dict):
            options = msgspec.convert(options, SqliteStoreOptions)
        self.options = options
        self.path = options.path
        self._db = Database(options.path, synchronous=options.synchronous,
                            busy_timeout=options.busy_timeout)
        self._lock = FileLock(options.path)
        self._streams: dict[str, Stream] = {}
        self._subs: dict[str, Subscription] = {}
        self._groups: dict[tuple[str, str], int] = {}
        self._group_filters: dict[int, bytes | None] = {}
        self._started = False
        self._closed = False

    async def start(self) -> None:
        """Lock the file, open it, create or upgrade the tables, and return every event left
        in flight by a previous process for redelivery."""
        if self._started:
            return
        if self.path != ":memory:":
            self._lock.acquire()
        try:
            await self._db.open()
            await self._db.transaction(recover)
            await self._db.call(create_checkpoints)
        except BaseException:
            await self._db.close()
            self._lock.release()
            raise
        self._started = True

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
