"""The event store contract: what every store plugin (memory, SQLite, Redis, a third party's)
implements, and what the subscription engine builds delivery semantics on.

A store owns the log of each stream and the delivery state of each subscription, so that a
persistent or distributed store keeps pending and in-flight state across restarts and hosts.

Delivery state is kept per *delivery group* of a subscription. A group is a cursor over the
stream plus the set of events that are in flight, waiting for redelivery or dead-lettered.
Modes decide the groups: ``exclusive`` shares one group (named ``""``) among all consumers;
``consumer_group`` has one group per partition of the stream (:func:`partition_group`), each
claimed by one consumer at a time; ``broadcast`` and ``read_receipt`` give each consumer its
own group (named after the consumer). The store never needs to know which mode is in use.

What a group holds is fixed by the :class:`ClaimFilter` its claims pass (event types, one
correlation id, one partition): plain data, which a store may push into its query. The store
implements primitives; attempt limits, dead-lettering, hand-over and the modes' bookkeeping
live once, in the engine (``svrnty_events.subscriptions``).

Partitions belong to the stream (``StreamConfig.partitions``, default 1): an event's partition
is fixed when it is appended, by :func:`~svrnty_events.events.partition_of` over its
correlation id, and recorded in ``RecordedEvent.partition``. A claim for a partition reads only
that partition's events (an index or a key per partition, never a scan past other partitions).

Times are wall-clock seconds (``time.time()``) so that deadlines survive restarts and are
comparable across hosts. Every method may raise :class:`~svrnty_events.errors.StoreUnavailableError`
when the backing service cannot be reached; the operation then had no effect.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import msgspec

from .config import StreamConfig, SubscriptionConfig
from .errors import ConfigError
from .events import RecordedEvent
from .scheduling import Schedule

SHARED_GROUP = ""


def partition_group(partition: int) -> str:
    """The delivery group of one partition in a partitioned mode (``consumer_group``):
    partition 0 is the shared group ``""`` (so a stream of one partition behaves, and is
    stored, as an unpartitioned shared group), partition ``p`` is ``"#p"``."""
    return SHARED_GROUP if partition == 0 else f"#{partition}"


def processed_key(group: str, event_id: str) -> str:
    """The key of an event's processed mark (``Delivery.process_once``, ``ack_processed``):
    marks are kept per delivery group, so each broadcast consumer (a group of its own) applies
    its own effect once. The shared group ``""`` keeps the plain event id."""
    return event_id if not group else f"{event_id}@{group}"


class ClaimFilter(msgspec.Struct, frozen=True, gc=False):
    """Which events of the stream belong to a delivery group. Every claim of a group passes
    the same filter; events that do not match are settled for the group without delivery
    (the cursor passes them). Every field is optional; all given ones must match."""

    #: only events of these types
    event_types: frozenset[str] | None = None
    #: only events of this correlation id (a consumer scoped to one workflow)
    correlation_id: str | None = None
    #: only events of this partition of the stream (read through a per-partition index)
    partition: int | None = None

    def matches(self, event: RecordedEvent) -> bool:
        return ((self.event_types is None or event.type in self.event_types)
                and (self.correlation_id is None or event.correlation_id == self.correlation_id)
                and (self.partition is None or event.partition == self.partition))

    @property
    def empty(self) -> bool:
        return self.event_types is None and self.correlation_id is None and \
            self.partition is None


class Capabilities(msgspec.Struct, frozen=True):
    #: the log and delivery state survive a restart of the process
    durable: bool = False
    #: append is idempotent by event id (required for exactly-once)
    idempotent_append: bool = True
    #: several hosts can share the store
    shared: bool = False
    #: the store keeps scheduled events (save_schedules, claim_schedules, ...)
    schedules: bool = False


class Claimed(msgspec.Struct, gc=False):
    event: RecordedEvent
    #: delivery number of this hand-over, from 1
    attempt: int
    #: reason given by the last nack of this event, if any
    last_reason: str | None = None


class ClaimResult(msgspec.Struct):
    claimed: list[Claimed]
    #: change counter to pass to wait_for_change, so no wake-up is missed
    version: int
    #: earliest time (time.time()) at which an event of this group that is in flight or delayed
    #: now becomes claimable; None if there is none
    next_due: float | None = None


class DeadLetter(msgspec.Struct):
    event: RecordedEvent
    subscription: str
    group: str
    consumer_id: str
    reason: str
    attempts: int
    dead_lettered_at: datetime
    error: str | None = None


class Receipt(msgspec.Struct):
    subscription: str
    consumer_id: str
    event_id: str
    delivered_at: datetime
    read_at: datetime | None = None


class StreamInfo(msgspec.Struct):
    name: str
    type: str
    #: events retained now
    length: int
    #: sequence of the oldest retained event (== next_sequence when empty)
    first_sequence: int
    #: sequence the next appended event will get
    next_sequence: int
    metadata: dict[str, str] = {}


class ChangeNotifier:
    """A change counter with waiters: what a store's ``wait_for_change`` and ``notify`` can be
    built on within one process (no polling). ``bump()`` after every change that may make
    something claimable; ``await wait(version, timeout)`` returns the current version."""

    __slots__ = ("version", "_waiters")

    def __init__(self) -> None:
        self.version = 0
        self._waiters: list[asyncio.Future[None]] = []

    def bump(self) -> None:
        self.version += 1
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def wait(self, version: int, timeout: float | None) -> int:
        if self.version != version:
            return self.version
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await wait_until_resolved(fut, timeout)
        finally:
            if self._waiters and fut in self._waiters:  # timed out or cancelled: not bumped
                self._waiters.remove(fut)
        return self.version


async def wait_until_resolved(fut: asyncio.Future[None], timeout: float | None) -> None:
    """Await ``fut`` until something resolves it or ``timeout`` seconds pass. A timer handle
    instead of ``asyncio.wait_for``: no task per wait, and cancellation is never swallowed."""
    timer = None if timeout is None else \
        asyncio.get_running_loop().call_later(timeout, _resolve, fut)
    try:
        await fut
    finally:
        if timer is not None:
            timer.cancel()
        if not fut.done():
            fut.cancel()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ScheduleStore:
    """The schedule primitives of a store (``Capabilities.schedules``), used by the host's
    scheduler (:mod:`svrnty_events.scheduling`). A durable store keeps schedules across
    restarts; a shared store where every host sees them. Times are wall-clock seconds."""

    async def save_schedules(self, schedules: Sequence[Schedule]) -> None:
        """Keep ``schedules``; one with the id of a kept schedule replaces it (and its
        claim)."""
        raise NotImplementedError(f"{type(self).__name__} does not keep scheduled events")

    async def cancel_schedule(self, schedule_id: str) -> bool:
        """Drop a schedule that has not fired. False if there is none of this id."""
        raise NotImplementedError(f"{type(self).__name__} does not keep scheduled events")

    async def claim_schedules(self, holder: str, *, now: float, max_count: int,
                              lease: float) -> list[Schedule]:
        """Up to ``max_count`` schedules due at ``now`` (earliest first) that no other holder
        has claimed within its lease, each claimed by ``holder`` until ``now + lease``, in one
        atomic step: two hosts never get one schedule while its lease runs."""
        raise NotImplementedError(f"{type(self).__name__} does not keep scheduled events")

    async def complete_schedules(self, done: Sequence[tuple[str, str]]) -> None:
        """Drop the fired schedules ``(schedule id, event id)``; a schedule replaced since
        it was claimed (another event id) is kept."""
        raise NotImplementedError(f"{type(self).__name__} does not keep scheduled events")

    async def next_schedule_due(self) -> float | None:
        """The earliest due time of a kept schedule (claimed or not), None if none."""
        raise NotImplementedError(f"{type(self).__name__} does not keep scheduled events")


class EventStore(ScheduleStore, abc.ABC):
    """Base class of event stores. See the module docstring for the model."""

    capabilities: ClassVar[Capabilities] = Capabilities()

    async def start(self) -> None:
        """Open connections / files. Called once by the host before anything else."""

    async def close(self) -> None:
        """Release resources. May be called twice."""

    # --- streams ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def create_stream(self, config: StreamConfig) -> None:
        """Create the stream, or update its configuration if it exists."""

    @abc.abstractmethod
    async def append(self, stream: str, events: Sequence[RecordedEvent], *,
                     expected_version: int | None = None) -> list[RecordedEvent]:
        """Append ``events`` atomically (all or nothing) and wake waiting consumers.

        Returns the events as recorded, with their sequences. An event whose id is already in the
        stream is not appended again; the recorded original is returned in its place.
        ``expected_version``: the number of events the (single) correlation id of the batch must
        have in the stream, else :class:`~svrnty_events.errors.ConcurrencyError`.
        """

    @abc.abstractmethod
    async def read(self, stream: str, *, from_sequence: int = 0, limit: int | None = None,
                   correlation_id: str | None = None, event_types: Sequence[str] | None = None,
                   since: datetime | None = None) -> list[RecordedEvent]:
        """Retained events from ``from_sequence`` on, oldest first, optionally filtered."""

    @abc.abstractmethod
    async def correlation_version(self, stream: str, correlation_id: str) -> int:
        """How many events with this correlation id were ever appended to the stream."""

    @abc.abstractmethod
    async def stream_info(self, stream: str) -> StreamInfo:
        """Length, first and next sequence, metadata."""

    # --- subscriptions and their delivery groups ---------------------------------------------

    @abc.abstractmethod
    async def create_subscription(self, config: SubscriptionConfig) -> None:
        """Create the subscription (or update its configuration; existing state is kept)."""

    @abc.abstractmethod
    async def ensure_group(self, subscription: str, group: str, *,
                           start: int | None = None, filter: ClaimFilter | None = None) -> None:
        """Create the delivery group if missing. A new group's cursor starts at ``start``
        (a sequence) or, when None, at the oldest retained event. Existing groups are kept.
        ``filter`` is the filter its claims pass (what the group holds): retention uses it to
        know which removed events the group had not settled."""

    @abc.abstractmethod
    async def delete_group(self, subscription: str, group: str) -> None:
        """Forget a group and its state (in-flight and waiting events of it are dropped)."""

    @abc.abstractmethod
    async def claim(self, subscription: str, group: str, consumer_id: str, *, max_count: int,
                    visibility_timeout: float, filter: ClaimFilter | None = None) -> ClaimResult:
        """Hand up to ``max_count`` events to ``consumer_id``, each in flight until
        ``now + visibility_timeout``, in one atomic step.

        Candidates in sequence order: events waiting for redelivery (released, nacked and due,
        in flight past their deadline) and then new events past the group's cursor, only those
        ``filter`` matches (the others are settled for the group). Each claimed event's attempt
        is one more than its previous hand-overs (releases with ``unseen`` do not count).
        """

    @abc.abstractmethod
    async def ack(self, subscription: str, group: str, consumer_id: str,
                  event_ids: Sequence[str]) -> list[str]:
        """Settle events held by ``consumer_id``. Returns the ids it did not hold (ignored)."""

    @abc.abstractmethod
    async def nack(self, subscription: str, group: str, consumer_id: str, event_id: str, *,
                   delay: float, reason: str | None = None) -> bool:
        """Return a held event for redelivery after ``delay`` seconds. False if not held."""

    @abc.abstractmethod
    async def release(self, subscription: str, group: str, consumer_id: str, *,
                      event_ids: Sequence[str] | None = None,
                      unseen: Sequence[str] = ()) -> int:
        """Return events held by ``consumer_id`` (all of them, or only ``event_ids``) for
        redelivery now. Returns how many.

        ``unseen``: ids among them that were claimed but never handed to the consumer's code
        (a cancelled claim, a prefetch): their claim does not count as a delivery attempt, so
        releasing them again and again cannot dead-letter an event no code has seen."""

    async def extend(self, subscription: str, group: str, consumer_id: str,
                     event_ids: Sequence[str], *, visibility_timeout: float) -> list[str]:
        """Move the visibility deadline of events held by ``consumer_id`` to
        ``now + visibility_timeout`` (a consumer still working on them, or holding them in its
        buffer). Returns the ids it does not hold (any more): those may be with another
        consumer now. A store that cannot extend raises NotImplementedError (the engine then
        lets deadlines run as claimed)."""
        raise NotImplementedError

    @abc.abstractmethod
    async def wait_for_change(self, subscription: str, group: str, version: int,
                              timeout: float | None) -> int:
        """Wait until the group may have something new to claim (an append, a release, a
        replay, a notify) after ``version`` or until ``timeout``. Returns the current version."""

    @abc.abstractmethod
    def notify(self, subscription: str) -> None:
        """Wake every waiter of the subscription (e.g. when a mode's choice changed)."""

    async def group_lags(self, subscription: str) -> dict[str, int]:
        """The lag of each delivery group of ``subscription`` (the shared group is ``""``):
        the events of its stream not yet settled by the group, that is the events at or past
        the group's cursor (of its partition, for a partition's group) and the events it holds
        (waiting for redelivery, delayed, in flight). Event-type and correlation filters are not
        applied to events past the cursor: those an exclusive filter will skip count until a
        claim passes them. A store that cannot tell raises NotImplementedError (the figure is
        then left out); the stores of this project implement it from index ranges and counters."""
        raise NotImplementedError(f"{type(self).__name__} does not report group lags")

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once what the current task appended is committed: at once, unless
        the store has an application transaction open for it (an outbox), then after that
        transaction commits, and never if it rolls back. The host reports appends to
        observers this way, so a rolled-back append is never counted."""
        callback()

    # --- dead letters -------------------------------------------------------------------------

    @abc.abstractmethod
    async def dead_letter(self, subscription: str, group: str, consumer_id: str, event_id: str, *,
                          reason: str, attempts: int, error: str | None = None) -> bool:
        """Move an event held by ``consumer_id`` (or waiting for redelivery in the group) to the
        dead-letter queue. False if the group does not have it."""

    @abc.abstractmethod
    async def list_dead_letters(self, subscription: str, *,
                                limit: int | None = None) -> list[DeadLetter]:
        """Dead letters of the subscription, oldest first."""

    @abc.abstractmethod
    async def replay_dead_letters(self, subscription: str,
                                  event_ids: Sequence[str] | None = None) -> int:
        """Requeue dead letters (all, or those ids) into their group, attempts reset."""

    @abc.abstractmethod
    async def purge_dead_letters(self, subscription: str,
                                 event_ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (all, or those ids). Returns how many."""

    # --- receipts and idempotent processing ----------------------------------------------------

    @abc.abstractmethod
    async def record_receipts(self, subscription: str, consumer_id: str,
                              event_ids: Sequence[str], *, read: bool) -> None:
        """Record that events were delivered to (``read=False``) or read by a consumer."""

    @abc.abstractmethod
    async def list_receipts(self, subscription: str, *, event_id: str | None = None,
                            consumer_id: str | None = None) -> list[Receipt]:
        """Receipts of the subscription, optionally for one event or one consumer."""

    @abc.abstractmethod
    async def mark_processed(self, subscription: str, key: str) -> bool:
        """Record that the effect of ``key`` (an event id) was applied. False if already."""

    async def ack_processed(self, subscription: str, group: str, consumer_id: str,
                            event_id: str) -> bool:
        """Record ``event_id`` as processed in ``group`` (the mark's key is
        :func:`processed_key`) and ack it (the last step of ``Delivery.process_once``). The
        mark is recorded even when the consumer no longer holds the event: the effect was
        applied. Returns whether the ack settled a held event. A transactional store
        overrides this to do both in one transaction."""
        await self.mark_processed(subscription, processed_key(group, event_id))
        return not await self.ack(subscription, group, consumer_id, [event_id])

    async def process_in_transaction(self, subscription: str, group: str, consumer_id: str,
                                     event_id: str, effect: Callable[[Any], Any]) -> bool | None:
        """For a store that is a database: in one transaction, check ``consumer_id`` still
        holds the event, run ``effect(tx)`` with the store's transaction handle unless the
        event's processed mark (``processed_key(group, event_id)``) exists, write the mark and
        ack the event. Returns True if the effect ran, False if the mark existed (the event is
        acked all the same), None if the consumer does not hold the event (nothing was done).
        An exception from ``effect`` rolls everything back. A store without transactions
        raises NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} cannot run an effect in its "
                                  "transaction; use Delivery.process_once")

    @abc.abstractmethod
    async def is_processed(self, subscription: str, key: str) -> bool:
        """Whether ``mark_processed`` was called for ``key``."""

    # --- coordination ---------------------------------------------------------------------------

    async def leases(self, subscription: str, group: str, *,
                     acquire: Mapping[str, tuple[str, float]] | None = None,
                     release: Mapping[str, str] | None = None) -> dict[str, str]:
        """Named leases of a delivery group, for modes that coordinate consumers
        (``consumer_group``'s partition owners and members), as one atomic step:

        1. each lease of ``release`` (key -> holder) that this holder holds is dropped;
        2. each lease of ``acquire`` (key -> (holder, seconds)) that is free, expired or
           already this holder's is taken or renewed until now + seconds (others are left);
        3. every unexpired lease of the group is returned, key -> holder.

        A shared store keeps them where every host sees them, on its own clock. This default
        keeps them in the process, which is right for a store that one process uses."""
        tables = getattr(self, "_lease_tables", None)
        if tables is None:
            tables = {}
            self._lease_tables = tables
        table = tables.setdefault((subscription, group), {})
        now = time.monotonic()
        for key, holder in (release or {}).items():
            if table.get(key, ("", 0.0))[0] == holder:
                del table[key]
        for key, (holder, seconds) in (acquire or {}).items():
            current = table.get(key)
            if current is None or current[1] <= now or current[0] == holder:
                table[key] = (holder, now + seconds)
        for key in [k for k, (_, until) in table.items() if until <= now]:
            del table[key]
        return {key: holder for key, (holder, _) in table.items()}

    # --- projection checkpoints -------------------------------------------------------------
    #
    # A projection (svrnty_events.projections) reads a stream in order and keeps its position:
    # the sequence of the next event it reads. Positions are saved by compare-and-set on the
    # position the projection last read, so two runners of one projection never both advance
    # it, and a stale runner learns it lost.

    async def load_checkpoint(self, projection: str) -> int:
        """The saved position of ``projection`` (the next sequence it reads), 0 if none."""
        raise NotImplementedError(f"{type(self).__name__} keeps no projection checkpoints")

    async def save_checkpoint(self, projection: str, position: int, *,
                              expected: int | None = None) -> bool:
        """Save ``position`` for ``projection``; with ``expected``, only if the saved position
        is ``expected`` (0 when none is saved). Returns whether it was saved."""
        raise NotImplementedError(f"{type(self).__name__} keeps no projection checkpoints")

    #: True when ``project_in_transaction`` awaits what ``effect`` returns (a store whose
    #: transaction handle is async, such as asyncpg's); then an async projection handler runs
    #: in the transaction too
    transaction_effects_may_await: ClassVar[bool] = False

    async def project_in_transaction(self, projection: str, expected: int, position: int,
                                     effect: Callable[[Any], Any]) -> bool:
        """For a store that is a database: in one transaction, if the saved position of
        ``projection`` is ``expected``, run ``effect(tx)`` with the store's transaction handle
        and save ``position``. Returns False (nothing done) when the saved position is another.
        An exception from ``effect`` rolls everything back and propagates. A store without
        transactions raises NotImplementedError (projections then save the checkpoint after
        the handler, so a crash in between repeats the handler's effect on restart)."""
        raise NotImplementedError(f"{type(self).__name__} cannot run a projection in its "
                                  "transaction")


def batch_correlation(events: Sequence[RecordedEvent], expected_version: int | None) -> str:
    """The correlation id an ``append`` checks ``expected_version`` against: the batch's first
    event's. With an ``expected_version``, a batch of several correlation ids is refused
    (ValueError): the version is one workflow's."""
    correlation = events[0].correlation_id
    if expected_version is not None and any(e.correlation_id != correlation for e in events):
        raise ValueError("expected_version needs a batch with one correlation id")
    return correlation


def check_partitions(stream: str, stored: int, wanted: int, *, has_events: bool) -> None:
    """What a store calls in ``create_stream`` when a stream it already has is configured with
    another number of partitions: refused once the stream holds events (their partitions were
    fixed on append; changing the count would move workflows between partitions and break
    their order), allowed while it is empty."""
    if stored != wanted and has_events:
        raise ConfigError(
            f"streams.{stream}.partitions",
            f"the store keeps stream \"{stream}\" with {stored} partition(s) and it holds "
            f"events, whose partitions were fixed when they were appended; set partitions = "
            f"{stored} again, or start a new stream (or a new store) for {wanted}")
