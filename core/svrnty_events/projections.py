"""Projections: read models built from a stream's events, in stream order, each with its
position (checkpoint) kept by the store.

::

    @streaming.projection("users-by-id", stream="users", event_types=[UserAdded])
    def users_by_id(event: UserAdded, ctx: ProjectionContext) -> None:
        ctx.connection.execute("INSERT INTO users_view ...")   # SQLite: in the store's transaction

A projection runs in the host from its saved position: it reads a batch of events, brings each
to the current version of its class (upcasters), hands the ones its ``event_types`` match to the
handler and saves the position after the batch. On a store that is a database (SQLite,
PostgreSQL) a plain-function handler runs inside the store's transaction with the checkpoint
(``ctx.connection`` is the store's connection), so a crash at any point neither skips nor
repeats an event's effect on a view kept in that database. On other stores the handler runs
first and the checkpoint is saved after it: a crash in between repeats the batch on restart (at
least once: make the handler idempotent, or keep the view where the checkpoint is). On the memory
store both the checkpoint and a view kept in memory start empty with the process, so the view is
rebuilt at start.

A handler that raises (or an event that cannot be upcast) stops the projection at that event:
its status is ``faulted`` with the error, and it tries again after a backoff; ``reset`` past the
event or a fixed handler lets it go on. Operations (:class:`Projections`): ``status`` (position,
lag), ``rebuild`` (the reset handler clears the view, then the projection reads from the
beginning; progress reported), ``reset`` (to a position, the view untouched).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from .config import StreamType
from .errors import ConfigError, UnknownProjectionError
from .events import RecordedEvent
from .hookspecs import hookimpl
from .store import EventStore

if TYPE_CHECKING:
    from .host import EventStreamingHost

log = logging.getLogger("svrnty_events.projections")

#: longest wait between two retries of a faulted projection
MAX_RETRY_DELAY = 30.0


class ProjectionContext:
    """What a projection handler gets besides the event."""

    __slots__ = ("projection", "record", "connection")

    def __init__(self, projection: str, record: RecordedEvent, connection: Any) -> None:
        self.projection = projection
        #: the event's envelope (upcast to the current version)
        self.record = record
        #: the store's transaction handle when the handler runs in the store's transaction
        #: (SQLite: its ``sqlite3.Connection``), else None
        self.connection = connection

    @property
    def position(self) -> int:
        """The event's sequence in the stream."""
        return self.record.sequence


class Projection:
    """A registered projection: what ``@streaming.projection`` returns (call it like the
    handler). ``@projection.on_reset`` registers ``func(connection)``, which clears the view
    when the projection is rebuilt (in the store's transaction on a database store)."""

    def __init__(self, name: str, stream: str, handler: Callable[..., Any], *,
                 event_types: frozenset[str] | None, batch_size: int,
                 poll_interval: float) -> None:
        self.name, self.stream, self.handler = name, stream, handler
        self.event_types = event_types
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.reset_handler: Callable[[Any], Any] | None = None
        self.is_async = inspect.iscoroutinefunction(handler)

    def on_reset(self, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        self.reset_handler = func
        return func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.handler(*args, **kwargs)


def make_projection(name: str, stream: str, handler: Callable[..., Any], *,
                    event_types: Sequence[type | str] | None, batch_size: int,
                    poll_interval: float) -> Projection:
    from .events import event_type_name

    if not name or not isinstance(name, str):
        raise ConfigError("projection", f"a projection needs a name, got {name!r}")
    if batch_size < 1:
        raise ConfigError(f"projection {name}.batch_size", "must be >= 1")
    if poll_interval <= 0:
        raise ConfigError(f"projection {name}.poll_interval", "must be > 0")
    types = None if not event_types else frozenset(
        t if isinstance(t, str) else event_type_name(t) for t in event_types)
    return Projection(name, stream, handler, event_types=types, batch_size=batch_size,
                      poll_interval=poll_interval)


class ProjectionStatus(msgspec.Struct):
    name: str
    stream: str
    #: the sequence of the next event the projection reads
    position: int
    #: events of the stream it has not read yet
    lag: int
    #: "running", "caught_up", "faulted", "rebuilding" or "stopped"
    state: str
    #: whether the handler writes in the store's transaction with the checkpoint
    transactional: bool
    #: the error that stopped it at ``position`` (state "faulted")
    error: str | None = None


class _Runner:
    """Runs one projection: a task that catches up and then follows the stream."""

    def __init__(self, host: EventStreamingHost, projection: Projection) -> None:
        self.host, self.projection = host, projection
        self.store = host.store
        self.wake = asyncio.Event()
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        self.position = 0
        self.state = "stopped"
        self.error: str | None = None
        self.failures = 0
        # a plain-function handler runs in the store's transaction where the store has one
        store = self.store
        self.transactional = \
            type(store).project_in_transaction is not EventStore.project_in_transaction and \
            (not projection.is_async or store.transaction_effects_may_await)
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        self.position = await self.store.load_checkpoint(self.projection.name)
        self.state = "running"
        self.task = asyncio.create_task(self._run(), name=f"projection {self.projection.name}")

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self.state = "stopped"

    async def _run(self) -> None:
        p = self.projection
        while True:
            try:
                async with self.lock:
                    advanced = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self.state = "faulted"
                self.error = f"{type(exc).__name__}: {exc}"
                delay = min(MAX_RETRY_DELAY, 0.5 * 2 ** (self.failures - 1))
                log.error('projection "%s" stopped at position %d: %s; trying again in %.1fs',
                          p.name, self.position, self.error, delay)
                await self._wait(delay)
                continue
            if advanced:
                if self.state == "caught_up":
                    self.state = "running"
                continue
            if self.state != "faulted":
                self.state = "caught_up"
            self.caught_up.set()
            await self._wait(p.poll_interval)

    async def _wait(self, timeout: float) -> None:
        self.wake.clear()
        try:
            await asyncio.wait_for(self.wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def _step(self) -> bool:
        """Read and project one batch. True if the position moved."""
        p = self.projection
        # after a failure, one event at a time: the events before the failing one go through
        size = 1 if self.failures else p.batch_size
        events = await self.store.read(p.stream, from_sequence=self.position, limit=size)
        if not events:
            return False
        upcast = self.host.streaming.event_types
        decode = upcast.decode
        todo: list[tuple[Any, ProjectionContext]] = []
        for record in events:
            if p.event_types is not None and record.type not in p.event_types:
                continue
            record = upcast.upcast(record)
            todo.append((decode(record.type, record.data, record.content_type), record))
        new_position = events[-1].sequence + 1
        expected = self.position
        name = p.name

        def effect(connection: Any) -> None:
            for event, record in todo:
                p.handler(event, ProjectionContext(name, record, connection))

        async def effect_awaiting(connection: Any) -> None:
            for event, record in todo:
                result = p.handler(event, ProjectionContext(name, record, connection))
                if inspect.isawaitable(result):
                    await result

        saved = None
        if self.transactional and todo:
            try:
                saved = await self.store.project_in_transaction(
                    name, expected, new_position, effect_awaiting if p.is_async else effect)
            except NotImplementedError:
                self.transactional = False
        if saved is None:
            for event, record in todo:
                try:
                    result = p.handler(event, ProjectionContext(name, record, None))
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    # the events before this one took effect: keep them (else a retry repeats)
                    if record.sequence > expected and await self.store.save_checkpoint(
                            name, record.sequence, expected=expected):
                        self.position = record.sequence
                    raise
            saved = await self.store.save_checkpoint(name, new_position, expected=expected)
        if not saved:  # moved by someone else (another host, or an operation): follow it
            self.position = await self.store.load_checkpoint(name)
            return True
        self.position = new_position
        if self.failures:
            self.failures, self.error = 0, None
            self.state = "running"
        return True

    async def status(self) -> ProjectionStatus:
        info = await self.store.stream_info(self.projection.stream)
        return ProjectionStatus(
            name=self.projection.name, stream=self.projection.stream, position=self.position,
            lag=max(0, info.next_sequence - max(self.position, info.first_sequence)),
            state=self.state, transactional=self.transactional, error=self.error)


class Projections:
    """The projections of a host (``host.projections``): started with the host, with their
    operations."""

    def __init__(self, host: EventStreamingHost, projections: Sequence[Projection]) -> None:
        self.host = host
        self._defs = {p.name: p for p in projections}
        self._runners: dict[str, _Runner] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._defs

    def names(self) -> list[str]:
        return list(self._defs)

    @property
    def plugin(self) -> object:
        """The plugin that wakes the projections of a stream when the host appends to it."""
        return _AppendListener(self)

    async def start(self) -> None:
        for p in self._defs.values():
            if p.stream not in self.host.streams:
                raise ConfigError(f"projection {p.name}.stream",
                                  f'unknown stream "{p.stream}"; streams: '
                                  f'{", ".join(sorted(self.host.streams)) or "none"}')
            if self.host.streams[p.stream].type == StreamType.EPHEMERAL:
                raise ConfigError(f"projection {p.name}.stream",
                                  f'stream "{p.stream}" is ephemeral: it drops events once '
                                  "its subscriptions acked them, so a projection (which reads "
                                  "the log from its checkpoint) could miss some; make the "
                                  'stream type = "persistent"')
        for p in self._defs.values():
            runner = _Runner(self.host, p)
            self._runners[p.name] = runner
            await runner.start()

    async def stop(self) -> None:
        for runner in self._runners.values():
            await runner.stop()

    def appended(self, stream: str) -> None:
        for runner in self._runners.values():
            if runner.projection.stream == stream:
                runner.wake.set()

    def _runner(self, name: str) -> _Runner:
        try:
            return self._runners[name]
        except KeyError:
            raise UnknownProjectionError(name, self._defs) from None

    async def status(self, name: str | None = None) -> list[ProjectionStatus]:
        """Status of one projection (or all): position, lag (events of the stream not read
        yet), state. Raises UnknownProjectionError."""
        runners = [self._runner(name)] if name is not None else list(self._runners.values())
        return [await r.status() for r in runners]

    async def wait_caught_up(self, name: str, timeout: float | None = None) -> ProjectionStatus:
        """Wait until the projection has read every event appended before this call. Raises
        TimeoutError (asyncio) past ``timeout``."""
        runner = self._runner(name)
        target = (await self.host.store.stream_info(runner.projection.stream)).next_sequence

        async def reached() -> None:
            while runner.position < target:
                runner.caught_up.clear()
                runner.wake.set()
                await runner.caught_up.wait()
        await asyncio.wait_for(reached(), timeout)
        return await runner.status()

    async def reset(self, name: str, position: int) -> ProjectionStatus:
        """Move the projection to ``position`` (the next sequence it reads); its view is left
        as it is (to skip an event that cannot be projected, or to project events again with
        an idempotent handler). Raises UnknownProjectionError, ValueError for a negative
        position."""
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        runner = self._runner(name)
        async with runner.lock:
            await self.host.store.save_checkpoint(name, position)
            runner.position = position
            runner.failures, runner.error = 0, None
            runner.state = "running"
        runner.wake.set()
        return await runner.status()

    async def rebuild(self, name: str, *, progress: Callable[[int, int], Any] | None = None,
                      timeout: float | None = None) -> ProjectionStatus:
        """Clear the view (the projection's ``on_reset`` handler, in the store's transaction
        on a database store) and project the stream from the beginning; returns once the
        projection has read every event appended before the call. ``progress(position,
        target)`` is called as it goes. Raises UnknownProjectionError."""
        runner = self._runner(name)
        store = self.host.store
        p = runner.projection
        async with runner.lock:
            position = runner.position
            reset = p.reset_handler
            done = False
            if runner.transactional:
                try:
                    done = await store.project_in_transaction(
                        name, position, 0, reset if reset is not None else (lambda _: None))
                except NotImplementedError:
                    pass
            if not done:
                if reset is not None:
                    result = reset(None)
                    if inspect.isawaitable(result):
                        await result
                await store.save_checkpoint(name, 0)
            runner.position = 0
            runner.failures, runner.error = 0, None
            runner.state = "rebuilding"
        target = (await store.stream_info(p.stream)).next_sequence
        runner.wake.set()

        async def follow() -> None:
            last = -1
            while runner.position < target and runner.state != "faulted":
                if progress is not None and runner.position != last:
                    last = runner.position
                    progress(last, target)
                runner.caught_up.clear()
                runner.wake.set()
                try:
                    await asyncio.wait_for(runner.caught_up.wait(), 0.2)
                except asyncio.TimeoutError:
                    pass
        await asyncio.wait_for(follow(), timeout)
        if progress is not None:
            progress(runner.position, target)
        if runner.state == "rebuilding":
            runner.state = "caught_up"
        return await runner.status()


class _AppendListener:
    def __init__(self, projections: Projections) -> None:
        self._projections = projections

    @hookimpl
    def events_appended(self, stream: str, events: Sequence[RecordedEvent]) -> None:
        self._projections.appended(stream)
