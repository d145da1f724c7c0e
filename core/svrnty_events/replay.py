"""Catch-up and event-sourced state, written on the store API (``EventStore.read``), so they work
on any store; snapshots need a store that keeps them (:class:`SnapshotStore`, which the SQLite
store is).

* :func:`rebuild` folds a workflow's events (by correlation id) into its state, starting from
  the latest snapshot and saving a new one every ``snapshot_every`` events.
* :func:`iter_events` replays a stream from a sequence or a time, with an event-type filter and
  a rate limit.
* :func:`sequence_at` turns a time into a start position for ``host.subscribe(start=...)`` /
  ``store.ensure_group(start=...)``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import msgspec

from .events import EventTypes, RecordedEvent
from .store import EventStore

S = TypeVar("S")


class Snapshot(msgspec.Struct, frozen=True):
    """A workflow's state after its first ``version`` events (the last at ``sequence``)."""

    stream: str
    correlation_id: str
    key: str
    version: int
    sequence: int
    state: bytes
    taken_at: datetime


@runtime_checkable
class SnapshotStore(Protocol):
    """Where :func:`rebuild` keeps snapshots (the SQLite store implements it)."""

    async def load_snapshot(self, stream: str, correlation_id: str,
                            key: str = "default") -> Snapshot | None: ...

    async def save_snapshot(self, snapshot: Snapshot) -> None: ...


class Rebuilt(msgspec.Struct, Generic[S]):
    """A workflow's rebuilt state."""

    state: S
    #: events of the workflow folded into ``state`` (snapshot included); pass it as
    #: ``expected_version`` when appending the workflow's next events
    version: int
    #: sequence of the last event folded in, -1 if none
    sequence: int
    #: events read and applied by this call (the rest came from the snapshot)
    replayed: int
    #: version of the snapshot this call started from, 0 if none
    from_snapshot: int = 0


async def rebuild(store: EventStore, stream: str, correlation_id: str,
                  apply: Callable[[S, RecordedEvent], S | Awaitable[S]], initial: S, *,
                  snapshot_every: int | None = 100, state_type: Any = None,
                  key: str = "default", snapshots: SnapshotStore | None = None,
                  page: int = 500, upcast: EventTypes | None = None) -> Rebuilt[S]:
    """Fold the events of workflow ``correlation_id`` into a state: ``apply(state, event)``
    returns the next state, from ``initial``.

    When the store keeps snapshots (or ``snapshots`` is given) the fold starts from the latest
    snapshot and only later events are read; once ``snapshot_every`` events were folded since
    that snapshot, the new state is saved as the next one (``None`` or 0 disables saving).
    The state is stored as JSON (msgspec): ``state_type`` (default: the type of ``initial``)
    decodes it. Change ``key`` when ``apply`` changes meaning, so old snapshots are ignored.
    ``upcast`` (a host's ``streaming.event_types``) brings each event to the current
    version of its class first (upcasters; raises EventVersionError when it cannot).
    """
    if snapshots is None and isinstance(store, SnapshotStore):
        snapshots = store
    decode_as = state_type if state_type is not None else (
        type(initial) if initial is not None else Any)
    state: Any = initial
    version, sequence, base = 0, -1, 0
    if snapshots is not None:
        snap = await snapshots.load_snapshot(stream, correlation_id, key)
        if snap is not None:
            state = msgspec.json.decode(snap.state, type=decode_as)
            version, sequence, base = snap.version, snap.sequence, snap.version
    replayed = 0
    while True:
        events = await store.read(stream, from_sequence=sequence + 1, limit=page,
                                  correlation_id=correlation_id)
        for e in events:
            if upcast is not None:
                e = upcast.upcast(e)
            result = apply(state, e)
            state = await result if inspect.isawaitable(result) else result
            sequence = e.sequence
        version += len(events)
        replayed += len(events)
        if len(events) < page:
            break
    if snapshots is not None and snapshot_every and version - base >= snapshot_every:
        await snapshots.save_snapshot(Snapshot(
            stream=stream, correlation_id=correlation_id, key=key, version=version,
            sequence=sequence, state=msgspec.json.encode(state),
            taken_at=datetime.now(timezone.utc)))
    return Rebuilt(state, version, sequence, replayed, base)


async def iter_events(store: EventStore, stream: str, *, from_sequence: int = 0,
                      since: datetime | None = None, event_types: Sequence[str] | None = None,
                      correlation_id: str | None = None, rate: float | None = None,
                      page: int = 500, upcast: EventTypes | None = None
                      ) -> AsyncIterator[RecordedEvent]:
    """Replay retained events oldest first, from ``from_sequence`` and/or ``since`` (a time),
    optionally only ``event_types`` or one workflow, at most ``rate`` events per second.
    Reads ``page`` events at a time, so memory stays bounded on a long stream. ``upcast`` (a
    host's ``streaming.event_types``) brings each event to the current version of its class
    (raises EventVersionError when it cannot)."""
    if rate is not None and rate <= 0:
        raise ValueError("rate must be > 0 events per second")
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    position = from_sequence
    while True:
        events = await store.read(stream, from_sequence=position, limit=page,
                                  correlation_id=correlation_id, event_types=event_types,
                                  since=since)
        for e in events:
            if rate is not None:
                ahead = started + sent / rate - loop.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            sent += 1
            yield e if upcast is None else upcast.upcast(e)
        if len(events) < page:
            return
        position = events[-1].sequence + 1


async def sequence_at(store: EventStore, stream: str, when: datetime) -> int:
    """The sequence of the first retained event at or after ``when`` (the next sequence if
    none): a start position to catch up from a time."""
    first = await store.read(stream, since=when, limit=1)
    if first:
        return first[0].sequence
    return (await store.stream_info(stream)).next_sequence
