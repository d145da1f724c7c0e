"""A consumer of a subscription: claims events from the store into its window, hands them to its
code, settles them. Everything a delivery promise depends on happens here, once, for every store
and every delivery provider.

A claim is all or nothing for the consumer's code: it runs as a task of its own, shielded from
whatever cancels the fetch that started it (a task cancel, ``next(timeout=)``, a closed gRPC
stream, a heartbeat expiry, a host stop). Its events land in the consumer's ``prefetched``
buffer, which the next fetch returns first; a consumer that closes releases what is in the
buffer with ``unseen``, so no attempt is counted for an event no code saw.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from ..config import DeliverySemantics, StreamType, SubscriptionConfig
from ..errors import ConsumerClosedError, StoreUnavailableError, UnknownDeliveryError
from ..events import partition_of
from ..modes import Mode
from ..store import ClaimFilter, Claimed, partition_group
from . import eager
from ..upcasting import upcast_claimed
from .delivery import Delivery, check_delay

if TYPE_CHECKING:
    from .engine import SubscriptionEngine, SubscriptionRuntime

log = logging.getLogger("svrnty_events.subscriptions")
_attempt = attrgetter("attempt")


def _failed(job: asyncio.Future[Any]) -> bool:
    """True when ``job`` did not succeed (retrieving its exception, so none goes unseen)."""
    return job.cancelled() or job.exception() is not None

#: automatic acks wait at most this long for others to go in one store call
ACK_FLUSH_INTERVAL = 0.05
#: a background flush or refresh the store refused is tried again this much later (at most)
_RETRY_INTERVAL = 0.5


class _Claim:
    """What one claim round brought: the wait it tells the fetch loop to do when empty."""

    __slots__ = ("count", "version", "next_due", "retry_at", "unavailable")

    def __init__(self) -> None:
        self.count = 0
        self.version: int | None = None
        self.next_due: float | None = None
        self.retry_at: float | None = None
        self.unavailable: StoreUnavailableError | None = None


class Consumer:
    """A registered consumer of a subscription. Build with :meth:`SubscriptionEngine.open_consumer`."""

    def __init__(self, engine: SubscriptionEngine, runtime: SubscriptionRuntime, consumer_id: str,
                 *, group: str, private: bool, correlation_id: str | None,
                 event_types: Sequence[str], terminal_event_types: Sequence[str], window: int,
                 metadata: dict[str, str], heartbeat_timeout: float | None,
                 transient: bool = False) -> None:
        self.engine = engine
        self.runtime = runtime
        self.subscription = runtime.name
        self.consumer_id = consumer_id
        #: the consumer's delivery group (partitioned modes: the group of partition 0; each
        #: delivery names the group it came from)
        self.group = group
        self.private = private
        self.correlation_id = correlation_id
        self.event_types = list(event_types)
        self.terminal_event_types = frozenset(terminal_event_types)
        self.window = window
        self.metadata = metadata
        self.heartbeat_timeout = heartbeat_timeout
        #: a private group that is this consumer's alone: deleted when it closes
        self.transient = transient and private
        #: deliveries handed over and not settled (at-least-once), by event id
        self.held: dict[str, Delivery] = {}
        #: deliveries claimed but not yet handed to the consumer's code, oldest first
        self.prefetched: deque[Delivery] = deque()
        self.delivered_count = 0
        self.closed = False
        self.close_reason: str | None = None
        self.completed = False
        self.connected_at = time.time()
        self._semantics = runtime.stream.delivery_semantics
        #: at-most-once: deliveries are settled in the store as they leave ``prefetched``
        self.at_most_once = self._semantics == DeliverySemantics.AT_MOST_ONCE
        self._store = engine.store
        self._room = asyncio.Event()
        self._waiting = 0  # fetches waiting for events (not for room in the window)
        self._last_seen = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._deferred_acks: list[Delivery] = []
        #: observed hosts: deliveries the in-process iterator handed over one by one, reported
        #: together (see report_delivered)
        self._unreported: list[Delivery] = []
        # deferred acks are flushed, and prefetched deliveries extended, by engine-owned tasks
        # these timers start: a slow loop body neither holds acks nor lets its buffer expire
        self._flush_timer: asyncio.TimerHandle | None = None
        self._refresh_timer: asyncio.TimerHandle | None = None
        self._refreshing = False
        self._close_task: asyncio.Future[None] | None = None
        self._released_all: asyncio.Future[None] | None = None
        self._claims: set[asyncio.Future[Any]] = set()
        #: settlements (acks, nacks, dead letters, processed marks) sent to the store and not
        #: answered yet: a close waits for them before it releases (see _settle)
        self._settling: set[asyncio.Future[Any]] = set()
        self._can_extend = True
        self._groups: set[str] = {group}  # every group this consumer claimed from
        self._rotation = 0
        mode = runtime.mode
        # the mode hears of each delivery and settlement (base Mode methods do nothing)
        self._tracking = any(getattr(type(mode), name) is not getattr(Mode, name)
                             for name in ("delivered", "settled", "extended"))
        self._partitioned = not private and mode.partitioned
        # any consumer may take any event of the group: wait in the relay (see the runtime)
        self._relay = not private and not mode.partitioned
        self._filters = self._build_filters()
        self.heartbeat()

    @property
    def config(self) -> SubscriptionConfig:
        """The subscription's configuration."""
        return self.runtime.config

    @property
    def stream(self) -> str:
        """The name of the subscription's stream."""
        return self.runtime.stream.name

    # --- what the consumer's groups hold ------------------------------------------------------

    def _build_filters(self) -> dict[int, ClaimFilter | None]:
        """Claim filters: for the consumer's group (key -1), or per partition (partitioned)."""
        partitions = self.runtime.stream.partitions
        sub_types = frozenset(self.runtime.config.event_types) or None
        if self._partitioned:
            return {p: ClaimFilter(event_types=sub_types,
                                   partition=p if partitions > 1 else None)
                    for p in range(partitions)}
        types = sub_types
        if self.private and self.event_types:
            own = frozenset(self.event_types)
            types = own if types is None else types & own
        correlation = self.correlation_id
        if types is None and correlation is None:
            return {-1: None}
        return {-1: ClaimFilter(
            event_types=types, correlation_id=correlation,
            partition=partition_of(correlation, partitions)
            if correlation is not None and partitions > 1 else None)}

    def groups(self) -> list[tuple[str, ClaimFilter | None]]:
        """Every delivery group this consumer may claim from, with the filter it passes."""
        if self._partitioned:
            return [(partition_group(p), f) for p, f in self._filters.items()]
        return [(self.group, self._filters[-1])]

    # --- liveness ------------------------------------------------------------------------------

    def stop_heartbeat(self) -> None:
        for name in ("_timer", "_flush_timer", "_refresh_timer"):
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)

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
        if self._waiting or self._settling:
            # waiting for events, or for the store to answer a settlement, is being alive
            # (waiting for room is not)
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
        if max_events is not None and max_events <= 0:
            return []
        while True:
            if not await self.wait_ready(timeout, max_events):
                return []
            taken = await self.take(max_events)
            if taken or self._semantics != DeliverySemantics.AT_MOST_ONCE:
                return taken  # (at-most-once, empty: released meanwhile; wait for more)

    async def take(self, max_events: int | None = None) -> list[Delivery]:
        """Hand over what ``prefetched`` holds (at most ``max_events``). At-most-once: the
        events are settled in the store first, so none is handed to code twice, and none
        that only waited in the buffer is lost when the consumer closes (it is released)."""
        prefetched = self.prefetched
        count = len(prefetched) if max_events is None else min(max_events, len(prefetched))
        taken = [prefetched.popleft() for _ in range(count)]
        if self._semantics == DeliverySemantics.AT_MOST_ONCE and taken:
            missing = await self._settle_before_hand_over(taken)
            if missing:  # released meanwhile (a close): not this consumer's to hand over
                taken = [d for d in taken if d.record.id not in missing]
        if taken and self.engine.observers is not None:
            now = time.time()
            for d in taken:
                d.handed_at = now
            self.observe_delivered(taken)
        return taken

    def observe_delivered(self, deliveries: list[Delivery]) -> None:
        """Report deliveries handed to the consumer's code (see hookspecs.events_delivered);
        callers check ``engine.observers`` first."""
        self.report_delivered()
        observers = self.engine.observers
        if observers is not None:
            observers.events_delivered(subscription=self.subscription,
                                       consumer_id=self.consumer_id, deliveries=deliveries)

    def handed_over(self, delivery: Delivery) -> None:
        """The in-process iterator handed ``delivery`` to code: reported with the others of
        its batch once the buffer runs dry, or before a settlement or the close is (one hook
        call per batch, not per event)."""
        delivery.handed_at = time.time()
        self._unreported.append(delivery)

    def report_delivered(self) -> None:
        unreported = self._unreported
        if unreported and (observers := self.engine.observers) is not None:
            self._unreported = []
            observers.events_delivered(subscription=self.subscription,
                                       consumer_id=self.consumer_id, deliveries=unreported)

    async def _settle_before_hand_over(self, taken: list[Delivery]) -> set[str]:
        """At-most-once: settle ``taken`` in the store before it goes to code. Returns the ids
        the store no longer had for this consumer: those must not be handed over."""
        pending = [d for d in taken if not d.settled]
        if not pending:
            return set()
        held = self.held
        for d in pending:
            d.settled = True
            if held.get(d.record.id) is d:
                del held[d.record.id]
        outage = 0.0
        retried = False
        while True:
            try:
                # acked, the deliveries come first with the next fetch even if this caller is
                # cancelled (settled: nothing is handed over twice); not acked, held again
                missing = await self._settle(self._ack_groups(pending),
                                             lambda j: self._hand_over_later(j, pending))
                if retried:
                    # an attempt before may have been applied with its reply lost: what this
                    # one finds settled already may be ours, so hand everything over
                    missing = set()
                break
            except asyncio.CancelledError:
                raise
            except StoreUnavailableError as exc:
                if self.closed:
                    self._hold_again(pending)
                    raise ConsumerClosedError(self.close_reason or "consumer is closed") \
                        from exc
                outage = min(outage * 2 if outage else 0.05, 2.0)
                retried = True
                log.warning("store unavailable for %s/%s (%s): retrying in %.2fs",
                            self.subscription, self.consumer_id, exc, outage)
                try:
                    await asyncio.sleep(outage)
                except BaseException:
                    self._hold_again(pending)
                    raise
            except BaseException:
                self._hold_again(pending)
                raise
        self._settled(pending)
        return missing

    async def _ack_groups(self, deliveries: list[Delivery]) -> set[str]:
        """Ack ``deliveries`` per group; the ids the store says this consumer did not hold
        (released or expired meanwhile: another consumer may have them now)."""
        by_group: dict[str, list[str]] = {}
        for d in deliveries:
            by_group.setdefault(d.group, []).append(d.record.id)
        missing: set[str] = set()
        for group, ids in by_group.items():  # acking twice is harmless: a retry sends all
            missing.update(await self._store.ack(self.subscription, group, self.consumer_id,
                                                 ids))
        return missing

    def _hold_again(self, deliveries: list[Delivery]) -> None:
        """Deliveries that were to be handed over and were not: back to the buffer's front."""
        held = self.held
        for d in reversed(deliveries):
            # unsettled only if no newer delivery of the event took its place (a delivery
            # that is not settled is always the one ``held`` has)
            d.settled = held.setdefault(d.record.id, d) is not d
            if not d.settled:
                self.prefetched.appendleft(d)

    def _hand_over_later(self, job: asyncio.Future[Any], rest: list[Delivery]) -> None:
        if job.cancelled() or job.exception() is not None:
            if not self.closed:
                self._hold_again(rest)
            return
        # acked in the store (at-most-once: done): the next fetch hands them over as they are,
        # but for those the store no longer had for this consumer (released meanwhile)
        missing = job.result()
        for d in reversed(rest):
            if d.record.id not in missing:
                self.prefetched.appendleft(d)
        self._settled(rest)

    async def wait_ready(self, timeout: float | None = None,
                         max_events: int | None = None) -> bool:
        """Wait until ``prefetched`` holds a delivery (claiming up to the free window, or
        ``max_events``). False on ``timeout`` or once completed with nothing left to hand
        over. Raises ConsumerClosedError once closed."""
        self._raise_if_closed()
        loop = asyncio.get_running_loop()
        if self.prefetched:
            return True
        if self._unreported:
            self.report_delivered()
        if self.completed:
            return False
        deadline = None if timeout is None else loop.time() + timeout
        if self._deferred_acks:
            try:
                await self.flush_acks()
            except StoreUnavailableError as exc:  # kept: the flush timer tries them again
                log.warning("store unavailable for %s/%s (%s): %d ack(s) wait for it",
                            self.subscription, self.consumer_id, exc, len(self._deferred_acks))
                self._arm_flush(_RETRY_INTERVAL)
        outage = 0.0  # current retry delay while the store is unavailable
        runtime = self.runtime
        while True:
            self._last_seen = loop.time()
            self._raise_if_closed()
            if self.prefetched:
                return True
            if self.completed:
                return False
            room = self.window - len(self.held)
            if max_events is not None:
                room = min(room, max_events)
            if room <= 0:
                self._room.clear()
                if not await _wait(self._room.wait(), deadline, loop):
                    return False
                continue
            if self._claims:
                # a claim of a fetch that was cancelled is still running: its events come
                # first (one claim at a time keeps them in order)
                pending = next(iter(self._claims))
                if pending.done():
                    # finished, its done callback not run yet: awaiting it would not yield
                    # to the loop, so this loop would spin forever; do the bookkeeping now
                    self._claim_done(pending)
                    continue
                await asyncio.shield(pending)
                continue
            changes = runtime.changes.version
            job = eager.start(self._claim(room))
            if not job.done():
                self._claims.add(job)
                job.add_done_callback(self._claim_done)
            # shielded: a cancelled fetch leaves the claim to finish into ``prefetched``
            claim: _Claim = await asyncio.shield(job)
            if claim.unavailable is not None:
                outage = min(outage * 2 if outage else 0.05, 2.0)
                log.warning("store unavailable for %s/%s (%s): retrying in %.2fs",
                            self.subscription, self.consumer_id, claim.unavailable, outage)
                if deadline is not None and loop.time() + outage >= deadline:
                    return False
                await asyncio.sleep(outage)
                continue
            outage = 0.0
            if claim.count or self.prefetched or self.completed:
                continue
            wait: float | None = None if deadline is None else deadline - loop.time()
            if claim.next_due is not None:
                due = max(claim.next_due - time.time(), 0.0) + 0.001
                wait = due if wait is None else min(wait, due)
            if claim.retry_at is not None:
                due = max(claim.retry_at - time.monotonic(), 0.0) + 0.001
                wait = due if wait is None else min(wait, due)
            if wait is not None and wait <= 0:
                return False
            self._waiting += 1
            try:
                if claim.version is None:  # nothing to claim from: wait for the mode
                    await runtime.changes.wait(changes, wait)
                elif self._relay:
                    await runtime.wait_in_relay(self, claim.version, wait)
                else:
                    await self._store.wait_for_change(self.subscription, self.group,
                                                      claim.version, wait)
            except StoreUnavailableError:
                continue  # the claim will find out and back off
            finally:
                self._waiting -= 1
                self._last_seen = loop.time()

    def _claim_done(self, job: asyncio.Future[Any]) -> None:
        self._claims.discard(job)
        if not job.cancelled() and job.exception() is not None and not self.closed:
            # seen by the fetch that awaits it, unless that fetch was cancelled meanwhile
            log.debug("claim of %s/%s failed: %r", self.subscription, self.consumer_id,
                      job.exception())

    def _targets(self, claim: _Claim) -> list[tuple[int, str]]:
        """(partition or -1, group) pairs to claim from this round."""
        if not self._partitioned:
            return [(-1, self.group)]
        assignment = self.runtime.mode.assignment(self.consumer_id)
        claim.retry_at = assignment.retry_at
        partitions = list(assignment.partitions)
        if len(partitions) > 1:  # start at another partition each round, for fairness
            self._rotation = (self._rotation + 1) % len(partitions)
            partitions = partitions[self._rotation:] + partitions[:self._rotation]
        return [(p, partition_group(p)) for p in partitions]

    async def _claim(self, room: int) -> _Claim:
        """One claim round (a task of its own, see the module docstring)."""
        if self.runtime.releasing:
            # what a closing consumer gives back is claimable before anything new
            releasing = [f for f in self.runtime.releasing if f is not self._released_all]
            if releasing:
                await asyncio.wait(releasing, timeout=self.runtime.config.visibility_timeout)
        claim = _Claim()
        if self.closed:
            return claim
        targets = self._targets(claim)
        mode = self.runtime.mode
        partitions = [p for p, _ in targets if p >= 0]
        if partitions:
            mode.claim_started(self.consumer_id, partitions)
        config = self.runtime.config
        store, sub, me = self._store, self.subscription, self.consumer_id
        taken: list[tuple[str, list[Claimed]]] = []
        try:
            for partition, group in targets:
                if room <= 0:
                    break
                self._groups.add(group)
                try:
                    result = await store.claim(
                        sub, group, me, max_count=room,
                        visibility_timeout=config.visibility_timeout,
                        filter=self._filters[partition])
                except StoreUnavailableError as exc:
                    claim.unavailable = exc
                    break
                if claim.version is None:
                    claim.version = result.version  # the first look: no change after it is lost
                if result.next_due is not None:
                    claim.next_due = result.next_due if claim.next_due is None \
                        else min(claim.next_due, result.next_due)
                if result.claimed:
                    taken.append((group, result.claimed))
                    room -= len(result.claimed)
                    claim.count += len(result.claimed)
            if claim.count and self._relay:  # there may be more: let the next one look
                self.runtime.wake_one()
            await self._hand_over(taken)
        finally:
            if partitions and mode.claim_ended(self.consumer_id, partitions):
                self.engine.changed(self.runtime)
        return claim

    async def _hand_over(self, taken: list[tuple[str, list[Claimed]]]) -> None:
        """Put what a claim brought into ``prefetched`` (tracked as held), dead-letter what used
        up its attempts, give back what came after a terminal event."""
        if not taken:
            return
        config = self.runtime.config
        max_attempts = config.max_delivery_attempts
        mode = self.runtime.mode
        store, sub, me = self._store, self.subscription, self.consumer_id
        # by event id, in claim order: what goes to ``held`` and ``prefetched``
        new: dict[str, Delivery] = {}
        expired: list[tuple[str, Claimed]] = []
        leftover: dict[str, list[str]] = {}
        terminal = self.terminal_event_types
        closed = self.closed
        plain = not (terminal or closed or self.completed)
        now = asyncio.get_running_loop().time()
        unreadable = upcast_claimed(self.engine.event_types, taken)
        for group, claimed in taken:
            if not claimed:
                continue
            if plain and (not max_attempts or max(map(_attempt, claimed)) <= max_attempts):
                new.update({c.event.id: Delivery(c.event, c.attempt, self, group, now)
                            for c in claimed})
                continue
            for c in claimed:
                if self.completed or closed:
                    leftover.setdefault(group, []).append(c.event.id)
                elif max_attempts and c.attempt > max_attempts:
                    expired.append((group, c))
                else:
                    d = Delivery(c.event, c.attempt, self, group, now)
                    if terminal and c.event.type in terminal:
                        d.terminal = True
                        self.completed = True
                    new[c.event.id] = d
        # tracked before any await: nothing claimed can be lost (at-most-once deliveries are
        # settled when they leave the buffer, see take)
        held = self.held
        superseded: list[Delivery] = []
        if held and not held.keys().isdisjoint(new):
            for event_id in held.keys() & new.keys():
                # handed to this consumer again (its deadline passed): the old delivery is
                # over, its ack or nack must not settle the new one
                old = held[event_id]
                old.settled = True
                superseded.append(old)
        held.update(new)
        deliveries = new.values()
        if superseded:
            gone = {id(d) for d in superseded}
            if any(id(d) in gone for d in self.prefetched):
                self.prefetched = deque(d for d in self.prefetched if id(d) not in gone)
        if self._tracking and new:
            mode.delivered(me, [d.record for d in deliveries])
        if superseded:
            self._settled(superseded)
        self.prefetched.extend(deliveries)
        if new:
            self._arm_refresh()
        for group, ids in leftover.items():  # never seen by code: no attempt counted
            await self._quietly(store.release(sub, group, me, event_ids=ids, unseen=ids),
                                "release")
        for group, c in expired:
            reason = c.last_reason or "max delivery attempts exceeded"
            if await self._quietly(store.dead_letter(
                    sub, group, me, c.event.id, attempts=c.attempt - 1, reason=reason),
                    "dead-letter") and (observers := self.engine.observers) is not None:
                observers.events_dead_lettered(subscription=sub, consumer_id=me,
                                               events=[c.event], reason=reason)
        for group, c, error in unreadable:  # retrying cannot help: dead-lettered at once
            reason = str(error)
            if await self._quietly(store.dead_letter(
                    sub, group, me, c.event.id, attempts=c.attempt, reason=reason,
                    error=type(error).__name__),
                    "dead-letter") and (observers := self.engine.observers) is not None:
                observers.events_dead_lettered(subscription=sub, consumer_id=me,
                                               events=[c.event], reason=reason)
        self.delivered_count += len(new)
        if mode.receipts and new:
            await self._quietly(store.record_receipts(sub, me, [d.record.id for d in deliveries],
                                                      read=False), "record receipts")

    async def _quietly(self, aw: Any, what: str) -> bool:
        """Bookkeeping of a claim that may fail without losing anything (the events stay in
        flight in the store and come back at their deadline). True if it was done."""
        try:
            await aw
        except StoreUnavailableError as exc:
            log.warning("%s/%s: could not %s (%s); the store hands the events out again at "
                        "their deadline", self.subscription, self.consumer_id, what, exc)
            return False
        return True

    def _raise_if_closed(self) -> None:
        if self.closed:
            raise ConsumerClosedError(self.close_reason or "consumer is closed")

    def _arm_refresh(self, delay: float | None = None) -> None:
        if self._refresh_timer is None and self._can_extend and not self.closed:
            self._refresh_timer = asyncio.get_running_loop().call_later(
                self.runtime.config.visibility_timeout / 2 if delay is None else delay,
                self._refresh_timer_fired)

    def _refresh_timer_fired(self) -> None:
        self._refresh_timer = None
        if self.prefetched and not self.closed and not self._refreshing:
            self.engine.spawn(self._refresh_prefetched())

    async def _refresh_prefetched(self) -> None:
        """Deliveries waited half their visibility timeout in the buffer (the loop body is
        slow): extend them all, so none is redelivered elsewhere before this consumer's code
        sees it. Those the store says are not ours any more are dropped unseen. Runs as an
        engine task, whatever the consumer's code is doing; a refresh that fails or is
        cancelled is tried again soon."""
        if self._refreshing or self.closed:
            return
        self._refreshing = True
        buffered = list(self.prefetched)
        retry = min(self.runtime.config.visibility_timeout / 4, _RETRY_INTERVAL)
        try:
            lost = await self._extend(buffered)
        except NotImplementedError:
            self._can_extend = False
            return
        except StoreUnavailableError as exc:
            log.warning("store unavailable for %s/%s (%s): %d prefetched event(s) not "
                        "extended, trying again in %.2fs", self.subscription,
                        self.consumer_id, exc, len(buffered), retry)
            self._arm_refresh(retry)
            return
        except BaseException:
            self._arm_refresh(retry)
            raise
        finally:
            self._refreshing = False
        if self.prefetched:
            self._arm_refresh()
        if lost:
            gone = [d for d in self.prefetched if d.record.id in lost]
            if gone:
                keep = {id(d) for d in gone}
                self.prefetched = deque(d for d in self.prefetched if id(d) not in keep)
            for d in gone:
                if self.held.get(d.record.id) is d:
                    del self.held[d.record.id]
                d.settled = True
            if gone:
                log.warning("%s/%s: %d prefetched event(s) passed their visibility deadline "
                            "before the consumer's code got to them; they are redelivered",
                            self.subscription, self.consumer_id, len(gone))
                self._settled(gone)

    async def _extend(self, deliveries: list[Delivery]) -> set[str]:
        """Extend the deadlines of ``deliveries``; returns the ids no longer held."""
        by_group: dict[str, list[Delivery]] = {}
        for d in deliveries:
            by_group.setdefault(d.group, []).append(d)
        now = asyncio.get_running_loop().time()
        timeout = self.runtime.config.visibility_timeout
        lost: set[str] = set()
        for group, ds in by_group.items():
            gone = await self._store.extend(self.subscription, group, self.consumer_id,
                                            [d.record.id for d in ds],
                                            visibility_timeout=timeout)
            lost.update(gone)
            kept = [d for d in ds if d.record.id not in gone]
            for d in kept:
                d.claimed_at = now
            if self._tracking and kept:  # the mode's holds last as long as the deadlines
                self.runtime.mode.extended(self.consumer_id, [d.record for d in kept])
        return lost

    async def extend(self, event_ids: Iterable[str]) -> None:
        """Extend the visibility deadline of held events (``Delivery.in_progress``). Ids the
        consumer does not hold, or the store no longer gives it, raise UnknownDeliveryError."""
        self._last_seen = asyncio.get_running_loop().time()
        by_group, unknown = self._held_by_group(event_ids)
        ds = [d for group in by_group.values() for d in group]
        if ds:
            unknown += sorted(await self._extend(ds))
        if unknown and self._semantics != DeliverySemantics.AT_MOST_ONCE:
            raise UnknownDeliveryError(unknown)

    # --- settle --------------------------------------------------------------------------------

    def _held_by_group(self, event_ids: Iterable[str]
                       ) -> tuple[dict[str, list[Delivery]], list[str]]:
        by_group: dict[str, list[Delivery]] = {}
        unknown: list[str] = []
        held = self.held
        seen: set[str] = set()
        for event_id in event_ids:
            d = held.get(event_id)
            if d is None or d.settled:
                unknown.append(event_id)
            elif event_id not in seen:  # the same id twice in one call: once
                seen.add(event_id)
                by_group.setdefault(d.group, []).append(d)
        return by_group, unknown

    async def ack(self, event_ids: Iterable[str]) -> None:
        """Ack held events. Ids the consumer does not hold raise UnknownDeliveryError (after the
        others are acked)."""
        self._last_seen = asyncio.get_running_loop().time()
        by_group, unknown = self._held_by_group(event_ids)
        await self._ack_held(by_group)
        if unknown and self._semantics != DeliverySemantics.AT_MOST_ONCE:
            raise UnknownDeliveryError(unknown)

    async def _ack_held(self, by_group: dict[str, list[Delivery]]) -> None:
        held = self.held
        taken: list[tuple[str, list[Delivery], list[str]]] = []
        for group, known in by_group.items():
            ids = []
            for d in known:
                d.settled = True
                event_id = d.record.id
                del held[event_id]
                ids.append(event_id)
            taken.append((group, known, ids))
        await self._send_acks(taken)

    async def _send_acks(self, taken: list[tuple[str, list[Delivery], list[str]]]) -> None:
        """Ack, per group, deliveries already marked settled and taken out of ``held``. Once
        sent, the acks of every group run to their end in one job, whatever happens to the
        caller: the store may apply them, so the consumer must not think it still holds them,
        and a close waits for them. Those of a group the store refused (and of the groups after
        it) are held again, unsettled."""
        await self._settle(self._ack_all(taken), lambda j: self._ack_done(j, taken))

    async def _ack_all(self, taken: list[tuple[str, list[Delivery], list[str]]]) -> None:
        for i, (group, known, ids) in enumerate(taken):
            try:
                await self._store.ack(self.subscription, group, self.consumer_id, ids)
            except BaseException:
                for _, rest, _ in taken[i:]:
                    self._unsettle(rest)
                raise
            self._settled(known)
            self._observe_acked(known)
            if self.runtime.mode.receipts:
                await self._store.record_receipts(self.subscription, self.consumer_id, ids,
                                                  read=True)

    async def _settle(self, call: Any,
                      landed_later: Callable[[asyncio.Future[Any]], Any] | None = None) -> Any:
        """Run a settlement (a store call, or several) to its end whatever happens to the
        caller, registered in flight until it finishes (a close waits for it). A caller
        cancelled meanwhile leaves ``landed_later(job)`` to run once it has finished."""
        job = eager.start(call)
        if not job.done():
            self._settling.add(job)
            job.add_done_callback(self._settling.discard)
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(landed_later or _failed)
            raise

    def _unsettle(self, known: list[Delivery]) -> None:
        held = self.held
        for d in known:  # not acked: still held, so a retry can ack them (unless a newer
            # delivery of the event took its place: a delivery not settled is the one held)
            d.settled = held.setdefault(d.record.id, d) is not d

    def _ack_done(self, job: asyncio.Future[Any],
                  taken: list[tuple[str, list[Delivery], list[str]]]) -> None:
        # the acks of a cancelled caller finished: those the store refused are held again (by
        # _ack_all) and go to the deferred acks, to be sent again
        if job.cancelled() or job.exception() is None or self.closed:
            return
        held = self.held
        again = [d for _, known, _ in taken for d in known if held.get(d.record.id) is d]
        if again:
            self._deferred_acks.extend(again)
            self._arm_flush(_RETRY_INTERVAL)

    def _observe_acked(self, known: list[Delivery]) -> None:
        if (observers := self.engine.observers) is not None:
            self.report_delivered()
            observers.events_acked(subscription=self.subscription,
                                   consumer_id=self.consumer_id, deliveries=known)

    async def ack_processed(self, event_id: str, delivery: Delivery | None = None) -> None:
        """Record a held event as processed and ack it (see Delivery.process_once); with
        ``delivery``, only if that delivery is the one held."""
        self._last_seen = asyncio.get_running_loop().time()
        d = self.held.get(event_id)
        if d is not None and delivery is not None and d is not delivery:
            d = None  # handed over again since: the mark is kept, the new delivery stays
        if d is None:  # the effect was applied all the same: remember it
            found = delivery or next((p for p in self.prefetched if p.record.id == event_id),
                                     None)
            group = found.group if found is not None else self.group
            await self._settle(self._store.ack_processed(self.subscription, group,
                                                         self.consumer_id, event_id))
            if self._semantics != DeliverySemantics.AT_MOST_ONCE:
                raise UnknownDeliveryError([event_id])
            return
        await self._settle_in_store(d, self._store.ack_processed(
            self.subscription, d.group, self.consumer_id, event_id))
        self._observe_acked([d])
        if self.runtime.mode.receipts:
            await self._store.record_receipts(self.subscription, self.consumer_id, [event_id],
                                              read=True)

    async def process_in_store(self, event_id: str, effect: Any) -> bool:
        """See Delivery.process_once_in_store."""
        self._last_seen = asyncio.get_running_loop().time()
        d = self.held.get(event_id)
        if d is None or d.settled:
            raise UnknownDeliveryError([event_id])
        done = await self._store.process_in_transaction(self.subscription, d.group,
                                                        self.consumer_id, event_id, effect)
        if self.held.get(event_id) is d:
            del self.held[event_id]
        d.settled = True
        self._settled([d])
        if done is None:
            raise UnknownDeliveryError([event_id])
        self._observe_acked([d])
        if self.runtime.mode.receipts:
            await self._store.record_receipts(self.subscription, self.consumer_id, [event_id],
                                              read=True)
        return done

    def ack_later(self, *deliveries: Delivery) -> None:
        """Ack ``deliveries`` soon, in one batch with others: with the next claim, or by an
        engine task ``ACK_FLUSH_INTERVAL`` after the first deferred one, whatever the loop body
        is doing: how the in-process iterator auto-acks without a store round trip per event,
        and without holding the acks of a slow loop body. Each delivery at most once (the
        flush relies on it); one settled meanwhile is skipped by the flush."""
        if deliveries and not self.closed:
            if not self._deferred_acks:
                self._arm_flush(ACK_FLUSH_INTERVAL)
            self._deferred_acks.extend(deliveries)

    def ack_before_wait(self, *deliveries: Delivery) -> None:
        """Like :meth:`ack_later`, for a caller that calls :meth:`wait_ready` next with
        nothing prefetched: that flushes the deferred acks before it waits, so no timer is
        armed (at one event at a time, a timer per event only to cancel it)."""
        if not self.closed:
            self._deferred_acks.extend(deliveries)

    def _arm_flush(self, delay: float) -> None:
        if self._flush_timer is None and not self.closed:
            self._flush_timer = asyncio.get_running_loop().call_later(
                delay, self._flush_timer_fired)

    def _flush_timer_fired(self) -> None:
        self._flush_timer = None
        if self._deferred_acks and not self.closed:
            # an engine task: the loop body may be slow, its acks must not wait for it
            self.engine.spawn(self._flush_in_background())

    async def _flush_in_background(self) -> None:
        try:
            await self.flush_acks()
        except StoreUnavailableError as exc:  # kept: tried again with the next claim or soon
            log.warning("store unavailable for %s/%s (%s): %d ack(s) wait for it",
                        self.subscription, self.consumer_id, exc, len(self._deferred_acks))
            self._arm_flush(_RETRY_INTERVAL)
        except (ConsumerClosedError, UnknownDeliveryError):
            pass  # settled otherwise meanwhile (closed, redelivered): nothing left to ack
        except Exception:  # noqa: BLE001 - logged; the acks stay deferred for the close
            log.exception("%s/%s: could not flush acks", self.subscription, self.consumer_id)

    async def flush_acks(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        deferred, self._deferred_acks = self._deferred_acks, []
        held = self.held
        taken: list[tuple[str, list[Delivery], list[str]]] = []
        # a delivery that is not settled is the one ``held`` has (see _unsettle): the check
        # per event is its flag
        pending = [d for d in deferred if not d.settled]  # each deferred once (ack_later)
        if pending and (not self._partitioned or len({d.group for d in pending}) == 1):
            # one group (a partitioned consumer's acks are usually those of one claim)
            for d in pending:
                d.settled = True
            ids = [d.record.id for d in pending]
            if len(ids) == len(held):
                held.clear()
            else:
                for event_id in ids:
                    del held[event_id]
            taken.append((pending[0].group, pending, ids))
        else:
            by_group: dict[str, tuple[str, list[Delivery], list[str]]] = {}
            for d in pending:
                d.settled = True
                event_id = d.record.id
                del held[event_id]
                entry = by_group.get(d.group)
                if entry is None:
                    entry = by_group[d.group] = (d.group, [], [])
                    taken.append(entry)
                entry[1].append(d)
                entry[2].append(event_id)
        if taken:
            self._last_seen = asyncio.get_running_loop().time()
            try:
                await self._send_acks(taken)
            except BaseException:
                # refused (held again): kept for the next flush or the close. A cancelled
                # flush holds nothing again: its acks run to their end (see _send_acks)
                self._deferred_acks[:0] = [d for d in deferred
                                           if self.held.get(d.record.id) is d]
                raise

    async def _settle_in_store(self, d: Delivery, call: Any) -> Any:
        """Run a store call that settles ``d`` (a nack, a dead letter, a processed mark with
        its ack) to its end whatever happens to the caller, tracked so that a close waits for
        it; ``d`` leaves ``held`` once the store has it (a failed call leaves it held)."""
        result = await self._settle(call, lambda j: _failed(j) or self._forget_settled(d))
        self._forget_settled(d)
        return result

    def _forget_settled(self, d: Delivery) -> None:
        if self.held.get(d.record.id) is d:
            del self.held[d.record.id]
        if not d.settled:
            d.settled = True
            self._settled([d])

    async def nack(self, event_id: str, *, delay: float | None = None, reason: str | None = None,
                   error: str | None = None) -> None:
        """Give a held event back for redelivery after ``delay`` (default: the backoff for its
        attempt), or dead-letter it when it has used its delivery attempts."""
        check_delay(delay)
        self._last_seen = asyncio.get_running_loop().time()
        d = self.held.get(event_id)
        if d is None or d.settled:
            if self._semantics == DeliverySemantics.AT_MOST_ONCE:
                return  # settled when handed over: nothing to give back
            raise UnknownDeliveryError([event_id])
        config = self.runtime.config
        dead = bool(config.max_delivery_attempts and d.attempt >= config.max_delivery_attempts)
        if dead:
            await self._settle_in_store(d, self._store.dead_letter(
                self.subscription, d.group, self.consumer_id, event_id, attempts=d.attempt,
                reason=reason or "nacked", error=error))
        else:
            if delay is None:
                delay = config.redelivery_delay_for(d.attempt)
            await self._settle_in_store(d, self._store.nack(
                self.subscription, d.group, self.consumer_id, event_id,
                delay=max(delay, 0.0), reason=reason or error))
        if (observers := self.engine.observers) is not None:
            self.report_delivered()
            if dead:
                observers.events_dead_lettered(subscription=self.subscription,
                                               consumer_id=self.consumer_id,
                                               events=[d.record], reason=reason or "nacked")
            else:
                observers.events_nacked(subscription=self.subscription,
                                        consumer_id=self.consumer_id, deliveries=[d],
                                        delay=max(delay or 0.0, 0.0))

    async def dead_letter(self, event_id: str, *, reason: str, error: str | None = None) -> None:
        """Dead-letter a held event now, whatever its attempts."""
        self._last_seen = asyncio.get_running_loop().time()
        d = self.held.get(event_id)
        if d is None or d.settled:
            raise UnknownDeliveryError([event_id])
        await self._settle_in_store(d, self._store.dead_letter(
            self.subscription, d.group, self.consumer_id, event_id, attempts=d.attempt,
            reason=reason, error=error))
        if (observers := self.engine.observers) is not None:
            self.report_delivered()
            observers.events_dead_lettered(subscription=self.subscription,
                                           consumer_id=self.consumer_id, events=[d.record],
                                           reason=reason)

    async def release_unseen(self, event_ids: Iterable[str]) -> None:
        """Give held events back for redelivery now, with no attempt counted: a delivery
        provider handed them on (wrote them to a remote client) and learned its consumer's code
        never saw them (the client left or drained with them still buffered). Ids the consumer
        does not hold are ignored."""
        self._last_seen = asyncio.get_running_loop().time()
        by_group, _ = self._held_by_group(event_ids)
        buffered = {id(d) for d in self.prefetched}  # not handed over: not the caller's
        store, sub, me = self._store, self.subscription, self.consumer_id
        held = self.held
        for group, known in by_group.items():
            known = [d for d in known if id(d) not in buffered]
            if not known:
                continue
            for d in known:  # settled from now: an ack or nack of them meanwhile is refused
                d.settled = True
                del held[d.record.id]
            ids = [d.record.id for d in known]
            try:
                await self._settle(store.release(sub, group, me, event_ids=ids, unseen=ids))
            except Exception:  # refused: still held, released with the rest at the close
                # (a cancelled caller leaves the release to finish, see _settle)
                self._unsettle(known)
                raise
            self._settled(known)

    async def mark_read(self, event_ids: Iterable[str]) -> None:
        await self._store.record_receipts(self.subscription, self.consumer_id, list(event_ids),
                                          read=True)

    def _settled(self, deliveries: list[Delivery]) -> None:
        if self._tracking and self.runtime.mode.settled(self.consumer_id,
                                                        [d.record for d in deliveries]):
            self.engine.changed(self.runtime)
        self._room.set()

    # --- close ---------------------------------------------------------------------------------

    async def close(self, reason: str = "closed") -> None:
        """Unregister: held events go back for redelivery now (those no code saw without an
        attempt counted). May be called twice. A cancelled close still finishes (in the
        background, awaited when the host stops)."""
        task = self._close_task
        if task is None:
            if self.closed:
                return
            task = self._close_task = eager.start(self._close(reason))
            if not task.done():
                task.add_done_callback(self._close_done)
        # a second close (a host stop while a heartbeat expiry closes it) waits for the first
        await asyncio.shield(task)

    def _close_done(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning("consumer %s of %s: close failed (%r); what it held comes back at "
                        "its visibility deadline", self.consumer_id, self.subscription,
                        task.exception())

    async def _close(self, reason: str) -> None:
        if self._deferred_acks:
            with suppress(Exception):
                await self.flush_acks()
        if self.closed:
            return
        self.closed = True  # from now on a claim that lands gives its events back itself
        self.close_reason = reason
        self.stop_heartbeat()
        released_all: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._released_all = released_all
        self.runtime.releasing.add(released_all)
        try:
            await self._release_all()
        finally:
            self.runtime.releasing.discard(released_all)
            released_all.set_result(None)

    async def _release_all(self) -> None:
        self._room.set()
        if self._claims:
            # a claim in progress may commit in the store after a release computed what was
            # never seen: let it land first (seeing the consumer closed, it gives its events
            # back itself, as unseen)
            await asyncio.wait(list(self._claims), timeout=self.runtime.config.visibility_timeout)
        if self._deferred_acks:
            # deferred while the close's first flush ran (nothing is deferred once closed)
            with suppress(Exception):
                await self.flush_acks()
        # what was sent to the store before (an ack flushed in the background, a nack, a
        # processed mark) lands first: a release that overtook it would give events that code
        # processed back to the store for another consumer. A settlement may start another
        # (the next group's ack): wait until none is left
        loop = asyncio.get_running_loop()
        until = loop.time() + self.runtime.config.visibility_timeout
        while self._settling and (left := until - loop.time()) > 0:
            await asyncio.wait(list(self._settling), timeout=left)
        held = list(self.held.values())
        self.held.clear()
        unseen: dict[str, list[str]] = {}
        for d in self.prefetched:
            unseen.setdefault(d.group, []).append(d.record.id)
        self.prefetched.clear()
        runtime = self.runtime
        if runtime.consumers.get(self.consumer_id) is self:
            del runtime.consumers[self.consumer_id]
        store = self._store
        released = False
        try:
            for d in held:
                d.settled = True
            for group in sorted(self._groups):
                # always: a claim that committed in the store after we stopped waiting for it
                # may hold events we never saw
                await store.release(self.subscription, group, self.consumer_id,
                                    unseen=unseen.get(group, ()))
            released = True
            if self.private and (self.transient or self.correlation_id is not None
                                 or runtime.stream.type == StreamType.EPHEMERAL):
                await store.delete_group(self.subscription, self.group)
        finally:
            # whatever failed above, the consumer is gone: the mode must know. Events a failed
            # release left in flight still count as held by it until their deadlines pass.
            if released and held:
                runtime.mode.settled(self.consumer_id, [d.record for d in held])
            if self.consumer_id not in runtime.consumers:
                runtime.mode.leave(self.consumer_id)
                if not self.private:
                    self.engine.request_sync(runtime)
            self.engine.changed(runtime)
            runtime.wake_one()
            if (observers := self.engine.observers) is not None:
                self.report_delivered()
                observers.consumer_left(subscription=self.subscription,
                                        consumer_id=self.consumer_id,
                                        reason=self.close_reason or "closed")
        log.debug("consumer %s left %s (%s), released %d", self.consumer_id, self.subscription,
                  self.close_reason, len(held))

    def info(self) -> dict[str, Any]:
        return {"consumer_id": self.consumer_id, "subscription": self.subscription,
                "group": self.group, "in_flight": len(self.held),
                "delivered": self.delivered_count, "correlation_id": self.correlation_id,
                "connected_at": self.connected_at, "metadata": dict(self.metadata)}


async def _wait(aw: Any, deadline: float | None, loop: asyncio.AbstractEventLoop) -> bool:
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

