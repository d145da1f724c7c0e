"""The subscription engine: the one place delivery semantics live.

The in-process API (``host.subscribe``) and every delivery provider use it through
:class:`Consumer`: ``fetch`` waits (pushed by the store, never polling) for up to a window's worth
of events, ``ack`` / ``nack`` settle them, ``heartbeat`` keeps a remote consumer alive, ``close``
releases what it holds for redelivery at once. Filters, terminal events, redelivery with backoff,
dead-lettering and the backpressure window are all applied here, identically for every provider.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from .config import DeliverySemantics, StreamConfig, StreamType, SubscriptionConfig
from .errors import (
    ConsumerClosedError,
    StoreUnavailableError,
    SvrntyEventsError,
    UnknownDeliveryError,
    UnknownSubscriptionError,
)
from .events import EventTypes, RecordedEvent, event_type_name
from .modes import Leases, Mode
from .store import (
    SHARED_GROUP,
    Claimed,
    EventStore,
    Selection,
    Selector,
    wait_until_resolved,
)

log = logging.getLogger("svrnty_events.subscriptions")

T = TypeVar("T")

_DELIVER, _SKIP, _DROP = Selection.DELIVER, Selection.SKIP, Selection.DROP


class ConsumerLimitError(SvrntyEventsError):
    def __init__(self, subscription: str, limit: int) -> None:
        super().__init__(f'subscription "{subscription}" already has its maximum of {limit} '
                         "consumers")


def type_names(types: Iterable[type | str] | None) -> list[str]:
    return [t if isinstance(t, str) else event_type_name(t) for t in (types or ())]


class Delivery:
    """One hand-over of an event to a consumer."""

    __slots__ = ("record", "attempt", "consumer", "settled", "terminal", "_event")

    def __init__(self, record: RecordedEvent, attempt: int, consumer: Consumer) -> None:
        self.record = record
        self.attempt = attempt
        self.consumer = consumer
        self.settled = False
        self.terminal = False
        self._event: Any = None

    # envelope
    @property
    def id(self) -> str:
        return self.record.id

    @property
    def type(self) -> str:
        return self.record.type

    @property
    def correlation_id(self) -> str:
        return self.record.correlation_id

    @property
    def stream(self) -> str:
        return self.record.stream

    @property
    def sequence(self) -> int:
        return self.record.sequence

    @property
    def timestamp(self) -> datetime:
        return self.record.timestamp

    @property
    def headers(self) -> dict[str, str]:
        return self.record.headers

    @property
    def data(self) -> bytes:
        return self.record.data

    @property
    def content_type(self) -> str:
        return self.record.content_type

    @property
    def subscription(self) -> str:
        return self.consumer.subscription

    @property
    def event(self) -> Any:
        """The payload decoded into its registered Event class (plain JSON values if the type
        is not known in this process)."""
        if self._event is None:
            record = self.record
            self._event = self.consumer.engine.event_types.decode(record.type, record.data,
                                                                  record.content_type)
        return self._event

    async def ack(self) -> None:
        """Settle the event: it will not be delivered to this subscription's group again."""
        await self.consumer.ack((self.record.id,))

    async def nack(self, delay: float | None = None, reason: str | None = None,
                   error: str | None = None) -> None:
        """Give the event back for redelivery after ``delay`` seconds (default: the
        subscription's backoff). Past ``max_delivery_attempts`` it goes to the dead-letter
        queue with ``reason`` and ``error``."""
        await self.consumer.nack(self.record.id, delay=delay, reason=reason, error=error)

    async def dead_letter(self, reason: str, error: str | None = None) -> None:
        """Send the event to the dead-letter queue now (a permanent failure: retrying cannot
        help). It can be replayed from there."""
        await self.consumer.dead_letter(self.record.id, reason=reason, error=error)

    async def mark_read(self) -> None:
        """Record a read receipt (``read_receipt`` mode) without settling the event."""
        await self.consumer.mark_read((self.record.id,))

    async def process_once(self, effect: Callable[[Delivery], Awaitable[T] | T]) -> bool:
        """Apply ``effect`` once per event id across redeliveries, then ack.

        The processed id is recorded in the store right after the effect, with the ack (in one
        transaction where the store has transactions), so a consumer that crashes after the effect but before its ack does not apply it again
        when the event is redelivered. What this cannot cover: a crash between the end of the
        effect and that record (make the effect itself idempotent, or record the id in the same
        transaction as the effect's own writes). Returns False when the effect had already
        been applied (the event is then just acked).
        """
        store, sub = self.consumer.engine.store, self.consumer.subscription
        if await store.is_processed(sub, self.record.id):
            await self.ack()
            return False
        result = effect(self)
        if inspect.isawaitable(result):
            await result
        await self.consumer.ack_processed(self.record.id)
        return True

    def __repr__(self) -> str:
        return (f"<Delivery {self.record.type} id={self.record.id} seq={self.record.sequence} "
                f"attempt={self.attempt}>")


@dataclass
class SubscriptionRuntime:
    config: SubscriptionConfig
    stream: StreamConfig
    mode: Mode
    consumers: dict[str, Consumer] = field(default_factory=dict)
    #: competing consumers that may take any event wait in a relay: one waits on the store,
    #: the others on it, so an append wakes one consumer and not all of them
    store_waiter: Consumer | None = None
    followers: deque[asyncio.Future[None]] = field(default_factory=deque)
    #: on a shared store, the task that runs the mode's sync (see Mode.sync), and its wake-up
    sync_task: asyncio.Task[None] | None = None
    sync_poke: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return self.config.name

    def wake_one(self) -> None:
        followers = self.followers
        while followers:
            fut = followers.popleft()
            if not fut.done():
                fut.set_result(None)
                return


class Consumer:
    """A registered consumer of a subscription. Build with :meth:`SubscriptionEngine.open_consumer`."""

    def __init__(self, engine: SubscriptionEngine, runtime: SubscriptionRuntime, consumer_id: str,
                 *, group: str, private: bool, correlation_id: str | None,
                 event_types: Sequence[str], terminal_event_types: Sequence[str], window: int,
                 metadata: dict[str, str], heartbeat_timeout: float | None) -> None:
        self.engine = engine
        self.runtime = runtime
        self.subscription = runtime.name
        self.consumer_id = consumer_id
        self.group = group
        self.private = private
        self.correlation_id = correlation_id
        self.event_types = list(event_types)
        self.terminal_event_types = frozenset(terminal_event_types)
        self.window = window
        self.metadata = metadata
        self.heartbeat_timeout = heartbeat_timeout
        self.held: dict[str, Delivery] = {}
        self.delivered_count = 0
        self.closed = False
        self.close_reason: str | None = None
        self.completed = False
        self.connected_at = time.time()
        self._semantics = runtime.stream.delivery_semantics
        self._store = engine.store
        self._room = asyncio.Event()
        self._fetching = 0
        self._last_seen = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._refused: set[str] = set()
        self._selector = self._build_selector()
        self._deferred_acks: list[Delivery] = []
        #: deliveries fetched but not yet handed to the consumer's code (the iterator's buffer)
        self.prefetched: deque[Delivery] = deque()
        self.heartbeat()

    # --- selection ---------------------------------------------------------------------------

    def _build_selector(self) -> Selector | None:
        sub_types = frozenset(self.runtime.config.event_types) or None
        own_types = frozenset(self.event_types) or None
        correlation = self.correlation_id
        shared = not self.private
        mode = self.runtime.mode
        mode_filters = shared and type(mode).accepts is not Mode.accepts
        me = self.consumer_id
        own_miss = _SKIP if shared else _DROP
        # any consumer can take any event: wait in the relay (see SubscriptionRuntime)
        self._relay = shared and own_types is None and not mode_filters
        if sub_types is None and own_types is None and correlation is None and not mode_filters:
            return None
        # workflows the mode turned down in the current claim (cleared before each): a claim
        # looks at candidates across several store round trips, and the mode's choice may
        # change meanwhile; a later event of a workflow must not go out before an earlier one
        refused = self._refused

        def select(event: RecordedEvent) -> Selection:
            if sub_types is not None and event.type not in sub_types:
                return _DROP
            if correlation is not None and event.correlation_id != correlation:
                return _DROP
            if own_types is not None and event.type not in own_types:
                return own_miss
            if mode_filters:
                if event.correlation_id in refused:
                    return _SKIP
                if not mode.accepts(me, event):
                    refused.add(event.correlation_id)
                    return _SKIP
            return _DELIVER

        return select

    # --- liveness ------------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Note the consumer is alive. Any fetch, ack or nack counts as one too."""
        loop = asyncio.get_running_loop()
        self._last_seen = loop.time()
        if self.heartbeat_timeout is not None and self._timer is None and not self.closed:
            self._timer = loop.call_later(self.heartbeat_timeout, self._check_heartbeat)

    def _check_heartbeat(self) -> None:
        self._timer = None
        if self.closed or self.heartbeat_timeout is None:
            return
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last_seen
        if self._fetching:  # waiting for events is being alive
            idle = 0.0
        if idle >= self.heartbeat_timeout:
            log.warning("consumer %s of %s missed its heartbeat (%.1fs): releasing %d event(s)",
                        self.consumer_id, self.subscription, idle, len(self.held))
            self.engine.spawn(self.close("heartbeat expired"))
        else:
            self._timer = loop.call_later(self.heartbeat_timeout - idle, self._check_heartbeat)

    # --- fetch ---------------------------------------------------------------------------------

    async def fetch(self, max_events: int | None = None,
                    timeout: float | None = None) -> list[Delivery]:
        """Wait for events and hand them over: at least one, at most the free part of the
        window (and ``max_events``). Returns ``[]`` on ``timeout`` or once the consumer has
        completed (a terminal event was delivered). Raises ConsumerClosedError once closed."""
        if self.closed:
            raise ConsumerClosedError(self.close_reason or "consumer is closed")
        if self.completed:
            return []
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        config = self.runtime.config
        if self._deferred_acks:
            await self.flush_acks()
        outage = 0.0  # current retry delay while the store is unavailable
        self._fetching += 1
        try:
            while True:
                self._last_seen = loop.time()
                room = self.window - len(self.held)
                if max_events is not None:
                    room = min(room, max_events)
                if room <= 0:
                    self._room.clear()
                    if not await _wait(self._room.wait(), deadline, loop):
                        return []
                    self._raise_if_closed()
                    continue
                self._refused.clear()
                mode = self.runtime.mode
                mode.claim_started(self.consumer_id)
                deliveries = None
                try:
                    try:
                        result = await self._store.claim(
                            self.subscription, self.group, self.consumer_id, max_count=room,
                            visibility_timeout=config.visibility_timeout,
                            selector=self._selector)
                    except StoreUnavailableError as exc:
                        unavailable: StoreUnavailableError | None = exc
                    else:
                        unavailable = None
                        if result.claimed:
                            if self._relay:  # there may be more: let the next one look
                                self.runtime.wake_one()
                            # the mode hears of each event (delivered) before the claim ends
                            deliveries = await self._hand_over(result.claimed)
                finally:
                    mode.claim_ended(self.consumer_id)
                if unavailable is not None:
                    outage = outage * 2 if outage else 0.05
                    outage = min(outage, 2.0)
                    log.warning("store unavailable for %s/%s (%s): retrying in %.2fs",
                                self.subscription, self.consumer_id, unavailable, outage)
                    if deadline is not None and loop.time() + outage >= deadline:
                        return []
                    await asyncio.sleep(outage)
                    self._raise_if_closed()
                    continue
                outage = 0.0
                if deliveries is not None:
                    if deliveries or self.completed:
                        return deliveries
                    continue
                self._raise_if_closed()
                wait: float | None = None if deadline is None else deadline - loop.time()
                if result.next_due is not None:
                    due = max(result.next_due - time.time(), 0.0) + 0.001
                    wait = due if wait is None else min(wait, due)
                if wait is not None and wait <= 0:
                    return []
                try:
                    if self._relay:
                        await self._wait_in_relay(result.version, wait, loop)
                    else:
                        await self._store.wait_for_change(self.subscription, self.group,
                                                          result.version, wait)
                except StoreUnavailableError:
                    continue  # the claim will find out and back off
                self._raise_if_closed()
        finally:
            self._fetching -= 1
            self._last_seen = loop.time()

    async def _wait_in_relay(self, version: int, timeout: float | None,
                             loop: asyncio.AbstractEventLoop) -> None:
        runtime = self.runtime
        if runtime.store_waiter is None:
            runtime.store_waiter = self
            try:
                await self._store.wait_for_change(self.subscription, self.group, version,
                                                  timeout)
            finally:
                if runtime.store_waiter is self:
                    runtime.store_waiter = None
                runtime.wake_one()
            return
        fut: asyncio.Future[None] = loop.create_future()
        runtime.followers.append(fut)
        await wait_until_resolved(fut, timeout)

    def _raise_if_closed(self) -> None:
        if self.closed:
            raise ConsumerClosedError(self.close_reason or "consumer is closed")

    async def _hand_over(self, claimed: list[Claimed]) -> list[Delivery]:
        config = self.runtime.config
        max_attempts = config.max_delivery_attempts
        mode = self.runtime.mode
        deliveries: list[Delivery] = []
        expired: list[Claimed] = []
        leftover: list[Claimed] = []
        terminal = self.terminal_event_types
        for c in claimed:
            if self.completed:
                leftover.append(c)
                continue
            if max_attempts and c.attempt > max_attempts:
                expired.append(c)
                continue
            d = Delivery(c.event, c.attempt, self)
            if terminal and c.event.type in terminal:
                d.terminal = True
                self.completed = True
            deliveries.append(d)
        # track before any await, so a cancellation cannot lose what was claimed
        at_most_once = self._semantics == DeliverySemantics.AT_MOST_ONCE
        if not at_most_once:
            for d in deliveries:
                self.held[d.record.id] = d
                mode.delivered(self.consumer_id, d.record)
        self.delivered_count += len(deliveries)
        store, sub, group, me = self._store, self.subscription, self.group, self.consumer_id
        for c in expired:
            await store.dead_letter(sub, group, me, c.event.id, attempts=c.attempt - 1,
                                    reason=c.last_reason or "max delivery attempts exceeded")
        for c in leftover:  # claimed after the terminal event: give back untouched
            await store.nack(sub, group, me, c.event.id, delay=0.0, reason=None)
        if at_most_once and deliveries:
            for d in deliveries:
                d.settled = True
            await store.ack(sub, group, me, [d.record.id for d in deliveries])
        if mode.receipts and deliveries:
            await store.record_receipts(sub, me, [d.record.id for d in deliveries], read=False)
        return deliveries

    # --- settle --------------------------------------------------------------------------------

    async def ack(self, event_ids: Iterable[str]) -> None:
        """Ack held events. Ids the consumer does not hold raise UnknownDeliveryError (after the
        others are acked)."""
        self._last_seen = asyncio.get_running_loop().time()
        held = self.held
        known: list[Delivery] = []
        unknown: list[str] = []
        for event_id in event_ids:
            d = held.pop(event_id, None)
            if d is None:
                unknown.append(event_id)
            else:
                d.settled = True
                known.append(d)
        if known:
            try:
                await self._store.ack(self.subscription, self.group, self.consumer_id,
                                      [d.record.id for d in known])
            except BaseException:
                for d in known:  # not acked: still held, so a retry can ack them
                    d.settled = False
                    held[d.record.id] = d
                raise
            self._settled(known)
            if self.runtime.mode.receipts:
                await self._store.record_receipts(self.subscription, self.consumer_id,
                                                  [d.record.id for d in known], read=True)
        if unknown and self._semantics != DeliverySemantics.AT_MOST_ONCE:
            raise UnknownDeliveryError(unknown)

    async def ack_processed(self, event_id: str) -> None:
        """Record a held event as processed and ack it (see Delivery.process_once)."""
        self._last_seen = asyncio.get_running_loop().time()
        d = self.held.get(event_id)
        if d is None:  # the effect was applied all the same: remember it
            await self._store.mark_processed(self.subscription, event_id)
            if self._semantics != DeliverySemantics.AT_MOST_ONCE:
                raise UnknownDeliveryError([event_id])
            return
        await self._store.ack_processed(self.subscription, self.group, self.consumer_id,
                                        event_id)
        del self.held[event_id]
        d.settled = True
        self._settled([d])
        if self.runtime.mode.receipts:
            await self._store.record_receipts(self.subscription, self.consumer_id, [event_id],
                                              read=True)

    def ack_later(self, delivery: Delivery) -> None:
        """Ack ``delivery`` with the next fetch (or close), in one batch with others: how the
        in-process iterator auto-acks without a store round trip per event."""
        if not delivery.settled and delivery.record.id in self.held:
            delivery.settled = True
            self._deferred_acks.append(delivery)

    async def flush_acks(self) -> None:
        deferred, self._deferred_acks = self._deferred_acks, []
        ids = [d.record.id for d in deferred if self.held.get(d.record.id) is d]
        for d in deferred:
            d.settled = False
        if ids:
            await self.ack(ids)

    async def nack(self, event_id: str, *, delay: float | None = None, reason: str | None = None,
                   error: str | None = None) -> None:
        """Give a held event back for redelivery after ``delay`` (default: the backoff for its
        attempt), or dead-letter it when it has used its delivery attempts."""
        self._last_seen = asyncio.get_running_loop().time()
        d = self.held.get(event_id)
        if d is None:
            if self._semantics == DeliverySemantics.AT_MOST_ONCE:
                return  # settled when handed over: nothing to give back
            raise UnknownDeliveryError([event_id])
        config = self.runtime.config
        if config.max_delivery_attempts and d.attempt >= config.max_delivery_attempts:
            await self._store.dead_letter(self.subscription, self.group, self.consumer_id,
                                          event_id, attempts=d.attempt,
                                          reason=reason or "nacked", error=error)
        else:
            if delay is None:
                delay = config.redelivery_delay_for(d.attempt)
            await self._store.nack(self.subscription, self.group, self.consumer_id, event_id,
                                   delay=max(delay, 0.0), reason=reason or error)
        del self.held[event_id]  # only once the store has it: a failed call leaves it held
        d.settled = True
        self._settled([d])

    async def dead_letter(self, event_id: str, *, reason: str, error: str | None = None) -> None:
        """Dead-letter a held event now, whatever its attempts."""
        self._last_seen = asyncio.get_running_loop().time()
        d = self.held.get(event_id)
        if d is None:
            raise UnknownDeliveryError([event_id])
        await self._store.dead_letter(self.subscription, self.group, self.consumer_id, event_id,
                                      attempts=d.attempt, reason=reason, error=error)
        del self.held[event_id]
        d.settled = True
        self._settled([d])

    async def mark_read(self, event_ids: Iterable[str]) -> None:
        await self._store.record_receipts(self.subscription, self.consumer_id, list(event_ids),
                                          read=True)

    def _settled(self, deliveries: list[Delivery]) -> None:
        mode = self.runtime.mode
        wake = False
        for d in deliveries:
            wake |= mode.settled(self.consumer_id, d.record)
        if wake:
            self._store.notify(self.subscription)
            self.engine.request_sync(self.runtime)
        self._room.set()

    # --- close ---------------------------------------------------------------------------------

    async def close(self, reason: str = "closed") -> None:
        """Unregister: held events go back for redelivery now. May be called twice."""
        if self.closed:
            return
        if self._deferred_acks:
            with suppress(Exception):
                await self.flush_acks()
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._room.set()
        held = list(self.held.values())
        self.held.clear()
        runtime = self.runtime
        if runtime.consumers.get(self.consumer_id) is self:
            del runtime.consumers[self.consumer_id]
        store = self._store
        released = False
        try:
            for d in held:
                d.settled = True
            unseen = [d.record.id for d in self.prefetched]
            self.prefetched.clear()
            # always: a claim cancelled after the store committed it may hold events we never saw
            await store.release(self.subscription, self.group, self.consumer_id, unseen=unseen)
            released = True
            if self.private and (self.correlation_id is not None
                                 or runtime.stream.type == StreamType.EPHEMERAL):
                await store.delete_group(self.subscription, self.group)
        finally:
            # whatever failed above, the consumer is gone: the mode must know. Events a failed
            # release left in flight still count as held by it until their deadlines pass.
            if released:
                for d in held:
                    runtime.mode.settled(self.consumer_id, d.record)
            if self.consumer_id not in runtime.consumers:
                runtime.mode.leave(self.consumer_id)
                if not self.private:
                    self.engine.request_sync(runtime)
            store.notify(self.subscription)
            runtime.wake_one()
        log.debug("consumer %s left %s (%s), released %d", self.consumer_id, self.subscription,
                  reason, len(held))

    def info(self) -> dict[str, Any]:
        return {"consumer_id": self.consumer_id, "subscription": self.subscription,
                "group": self.group, "in_flight": len(self.held),
                "delivered": self.delivered_count, "correlation_id": self.correlation_id,
                "connected_at": self.connected_at, "metadata": dict(self.metadata)}


class SubscriptionEngine:
    """Consumers of every subscription of a host, over one store."""

    def __init__(self, store: EventStore, event_types: EventTypes | None = None) -> None:
        self.store = store
        #: the classes deliveries decode into (then the process-wide Event registry)
        self.event_types = event_types if event_types is not None else EventTypes()
        self.subscriptions: dict[str, SubscriptionRuntime] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    def add(self, runtime: SubscriptionRuntime) -> None:
        self.subscriptions[runtime.name] = runtime
        if runtime.mode.sync_interval is not None and self.store.capabilities.shared:
            runtime.mode.shared_store = True

    # --- modes that agree across hosts ------------------------------------------------------

    def request_sync(self, runtime: SubscriptionRuntime) -> None:
        """Have the mode sync with the store soon (a consumer joined or left, or a partition
        may change hands); starts the sync task when it is not running."""
        if not runtime.mode.shared_store:
            return
        runtime.sync_poke.set()
        if runtime.sync_task is None or runtime.sync_task.done():
            runtime.sync_task = asyncio.ensure_future(self._sync_loop(runtime))
            self._tasks.add(runtime.sync_task)
            runtime.sync_task.add_done_callback(self._tasks.discard)

    async def _sync_loop(self, runtime: SubscriptionRuntime) -> None:
        """Sync the mode every ``sync_interval`` (or when poked) while this host has consumers
        in the shared group or the mode is ``lingering``; a last time after that, then stop."""
        mode = runtime.mode
        interval = mode.sync_interval or 1.0
        leases = Leases(self.store, runtime.name, SHARED_GROUP)
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            runtime.sync_poke.clear()
            begun = loop.time()
            try:
                if await mode.sync(leases):
                    self.store.notify(runtime.name)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store is away, or a mode bug: retry
                failures += 1
                log.warning("could not sync the %s mode of %s with the store (%s: %s); "
                            "retrying", type(mode).__name__, runtime.name, type(exc).__name__,
                            exc)
            if failures == 0 and not mode.lingering and \
                    not any(not c.private for c in runtime.consumers.values()):
                return
            # at a fixed rate: leases are renewed every interval whatever a sync takes
            delay = max(interval - (loop.time() - begun), 0.0) if failures == 0 \
                else min(interval, 0.05 * 2 ** failures)
            with suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await runtime.sync_poke.wait()

    def runtime(self, subscription: str) -> SubscriptionRuntime:
        try:
            return self.subscriptions[subscription]
        except KeyError:
            raise UnknownSubscriptionError(subscription, self.subscriptions) from None

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run a background task owned by the engine (awaited on close)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def open_consumer(self, subscription: str, consumer_id: str, *,
                            correlation_id: str | None = None,
                            event_types: Iterable[type | str] | None = None,
                            terminal_event_types: Iterable[type | str] | None = None,
                            window: int | None = None, metadata: dict[str, str] | None = None,
                            heartbeat_timeout: float | None = None,
                            start: int | datetime | str | None = None) -> Consumer:
        """Register a consumer. A consumer with the same id already connected is replaced (its
        held events are released). ``correlation_id`` scopes the consumer to one workflow: it
        gets a cursor of its own over the subscription's stream and completes when a terminal
        event type (its own, or the subscription's) is delivered.

        ``start`` places a new cursor (a consumer with a group of its own, or a shared group not
        created yet): a sequence, a datetime (the first event at or after it), ``"beginning"``
        or ``"new"`` (only events appended from now on); None = the oldest retained event.
        An existing cursor resumes where it was."""
        if self._closing:
            raise ConsumerClosedError("host is stopping")
        if not consumer_id:
            raise ValueError("consumer_id is required")
        runtime = self.runtime(subscription)
        config = runtime.config
        previous = runtime.consumers.get(consumer_id)
        if previous is not None:
            await previous.close("replaced by a new connection with the same consumer id")
        if config.max_consumers is not None and len(runtime.consumers) >= config.max_consumers:
            raise ConsumerLimitError(subscription, config.max_consumers)
        terminal = type_names(terminal_event_types)
        if correlation_id is not None:
            group, private = f"{consumer_id}@{correlation_id}", True
            terminal = terminal or list(config.terminal_event_types)
        elif runtime.mode.shared:
            group, private = SHARED_GROUP, False
        else:
            group, private = consumer_id, True
        await self.store.ensure_group(subscription, group,
                                      start=await self._start_sequence(runtime, start))
        consumer = Consumer(
            self, runtime, consumer_id, group=group, private=private,
            correlation_id=correlation_id, event_types=type_names(event_types),
            terminal_event_types=terminal,
            window=max(1, window if window is not None else config.window),
            metadata=dict(metadata or {}), heartbeat_timeout=heartbeat_timeout)
        runtime.consumers[consumer_id] = consumer
        if not private:
            runtime.mode.join(consumer_id)
            self.request_sync(runtime)
        return consumer

    async def _start_sequence(self, runtime: SubscriptionRuntime,
                              start: int | datetime | str | None) -> int | None:
        if start is None or isinstance(start, int):
            return start
        stream = runtime.stream.name
        if start == "beginning":
            return 0
        if start == "new":
            return (await self.store.stream_info(stream)).next_sequence
        if isinstance(start, datetime):
            first = await self.store.read(stream, since=start, limit=1)
            return first[0].sequence if first else \
                (await self.store.stream_info(stream)).next_sequence
        raise ValueError(f"start: expected a sequence, a datetime, 'beginning' or 'new', "
                         f"got {start!r}")

    async def close(self) -> None:
        """Close every consumer (their held events are released) and finish background tasks."""
        self._closing = True
        for runtime in self.subscriptions.values():
            for consumer in list(runtime.consumers.values()):
                await consumer.close("host stopping")
        # a last sync gives up this host's memberships and leases, so other hosts take over now
        # rather than when the leases expire
        syncs = [r.sync_task for r in self.subscriptions.values()
                 if r.sync_task is not None and not r.sync_task.done()]
        if syncs:
            await asyncio.wait(syncs, timeout=2.0)
        while self._tasks:
            tasks = list(self._tasks)
            for t in tasks:
                t.cancel()
            with suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)


async def _wait(aw: Awaitable[Any], deadline: float | None,
                loop: asyncio.AbstractEventLoop) -> bool:
    """Await ``aw`` until ``deadline`` (loop time). True if it finished in time."""
    if deadline is None:
        await aw
        return True
    try:
        async with asyncio.timeout_at(deadline):
            await aw
        return True
    except TimeoutError:
        return False


def _abandon(engine: SubscriptionEngine, consumer: Consumer,
             loop: asyncio.AbstractEventLoop) -> None:
    # finalizer of an abandoned Subscriber: release its events at once
    if consumer.closed or loop.is_closed():
        return
    with suppress(RuntimeError):
        loop.call_soon_threadsafe(engine.spawn, consumer.close("abandoned"))


class Subscriber:
    """The in-process consumer API: an async context manager and async iterator of Deliveries.

    With ``auto_ack=True`` (the default) each delivery is acked when the loop asks for the next
    one, and nacked (with the exception as reason) if the loop body raised inside
    ``async with``. With ``auto_ack=False`` call ``delivery.ack()`` / ``delivery.nack()``.
    """

    def __init__(self, engine: SubscriptionEngine, subscription: str, consumer_id: str, *,
                 auto_ack: bool = True, **options: Any) -> None:
        self._engine = engine
        self._subscription = subscription
        self._consumer_id = consumer_id
        self._options = options
        self.auto_ack = auto_ack
        self.consumer: Consumer | None = None
        self._buffer: deque[Delivery] = deque()
        self._last: Delivery | None = None

    async def open(self) -> Consumer:
        if self.consumer is None:
            self.consumer = await self._engine.open_consumer(
                self._subscription, self._consumer_id, **self._options)
            self._buffer = self.consumer.prefetched  # so a close knows what was never seen
            weakref.finalize(self, _abandon, self._engine, self.consumer,
                             asyncio.get_running_loop())
        return self.consumer

    async def __aenter__(self) -> Subscriber:
        await self.open()
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        last = self._last
        if self.auto_ack and last is not None and not last.settled and self.consumer \
                and not self.consumer.closed:
            if exc is None or isinstance(exc, GeneratorExit):
                await last.ack()
            elif isinstance(exc, Exception):
                await last.nack(reason=f"{type(exc).__name__}: {exc}", error=repr(exc))
        await self.aclose()

    async def aclose(self) -> None:
        if self.consumer is not None:
            await self.consumer.close("unsubscribed")

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> Delivery:
        consumer = await self.open()
        if consumer.closed:  # what was prefetched was released with the consumer
            self._buffer.clear()
            raise StopAsyncIteration
        last = self._last
        if last is not None and self.auto_ack and not last.settled:
            consumer.ack_later(last)
        if not self._buffer:
            try:
                batch = await consumer.fetch()
            except ConsumerClosedError:
                raise StopAsyncIteration from None
            if not batch:  # completed at a terminal event
                await consumer.close("completed")
                raise StopAsyncIteration
            self._buffer.extend(batch)
        self._last = self._buffer.popleft()
        return self._last

    async def next(self, timeout: float | None = None) -> Delivery | None:
        """The next delivery, or None after ``timeout`` seconds without one."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except TimeoutError:
            return None
