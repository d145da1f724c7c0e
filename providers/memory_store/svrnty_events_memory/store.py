"""The in-memory event store.

Everything lives in this process: fast, nothing to run, lost on exit. Methods do not await
while they change state, so they are atomic with respect to other tasks of the event loop
(the store is not thread-safe: use it from one loop).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from bisect import bisect_left
from collections.abc import Sequence
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import msgspec

from svrnty_events.config import RetentionPolicy, StreamConfig, StreamType, SubscriptionConfig
from svrnty_events.errors import ConcurrencyError, UnknownStreamError, UnknownSubscriptionError
from svrnty_events.events import RecordedEvent, partition_of, utcnow
from svrnty_events.scheduling import InProcessSchedules
from svrnty_events.store import (
    Capabilities,
    ChangeNotifier,
    ClaimFilter,
    Claimed,
    ClaimResult,
    DeadLetter,
    EventStore,
    Receipt,
    StreamInfo,
    batch_correlation,
    check_partitions,
)


class MemoryStoreOptions(msgspec.Struct, forbid_unknown_fields=True):
    #: bound on events kept per stream when the stream sets no retention of its own
    #: (oldest dropped first, even if undelivered); 0 = unbounded
    max_events_per_stream: int = 0
    #: seconds a workflow stays known (for continuations and expected versions) once the
    #: stream retains none of its events; then what is kept for it is dropped and a
    #: continuation is refused (UnknownWorkflowError). 0 = at once
    forget_workflows_after: float = 3600.0


class _Stream:
    def __init__(self, config: StreamConfig, forget_after: float = 3600.0) -> None:
        self.config = config
        self.events: list[RecordedEvent] = []
        self.base = 0  # sequence of events[0]
        self.ids: dict[str, int] = {}
        self.versions: dict[str, int] = {}
        #: retained events per correlation id, and the workflows with none since when
        #: (time.monotonic()), oldest first: forgotten after ``forget_after`` seconds
        self.retained: dict[str, int] = {}
        self.idle: OrderedDict[str, float] = OrderedDict()
        self.forget_after = forget_after
        self.removed = 0  # events trimmed since the dicts were last compacted
        self.notifier = ChangeNotifier()
        self.subscriptions: list[_Subscription] = []
        #: sequences of each partition's events, oldest first (partitioned streams only)
        self.parts: list[list[int]] | None = \
            [[] for _ in range(config.partitions)] if config.partitions > 1 else None

    def forget_idle(self, now: float) -> None:
        """Drop what is kept for workflows with no retained event for ``forget_after``."""
        idle, versions, limit = self.idle, self.versions, now - self.forget_after
        while idle:
            corr, since = next(iter(idle.items()))
            if since > limit:
                break
            del idle[corr]
            versions.pop(corr, None)

    @property
    def next_sequence(self) -> int:
        return self.base + len(self.events)

    def get(self, sequence: int) -> RecordedEvent | None:
        i = sequence - self.base
        if 0 <= i < len(self.events):
            return self.events[i]
        return None

    def trim_to(self, sequence: int) -> None:
        """Drop events below ``sequence``."""
        k = min(sequence - self.base, len(self.events))
        if k <= 0:
            return
        retained, idle, now = self.retained, self.idle, time.monotonic()
        for e in self.events[:k]:
            self.ids.pop(e.id, None)
            corr = e.correlation_id
            left = retained.get(corr, 1) - 1
            if left > 0:
                retained[corr] = left
            else:
                retained.pop(corr, None)
                idle[corr] = now
        del self.events[:k]
        self.base += k
        self.forget_idle(now)
        # dicts keep their capacity after a burst: copy them once they are mostly empty, so
        # memory goes back down with the number of retained events
        self.removed += k
        if self.removed > 2 * len(self.ids) + 4096:
            self.removed = 0
            self.ids, self.versions, self.retained = \
                dict(self.ids), dict(self.versions), dict(self.retained)
        if self.parts is not None:
            for part in self.parts:
                if part and part[0] < self.base:
                    del part[:bisect_left(part, self.base)]


class _InFlight(msgspec.Struct, gc=False):
    """An event handed to a consumer and not settled (one per event in flight: a Struct for
    its construction cost)."""

    sequence: int
    consumer: str
    deadline: float
    attempt: int


@dataclass
class _Group:
    cursor: int
    available: list[int] = field(default_factory=list)  # heap of sequences
    delayed: list[tuple[float, int]] = field(default_factory=list)  # heap of (due, sequence)
    inflight: dict[str, _InFlight] = field(default_factory=dict)
    # heap of (deadline, claim number, event ids claimed together), lazily cleaned
    deadlines: list[tuple[float, int, list[str]]] = field(default_factory=list)
    claims: int = 0
    #: what the group holds (the filter its claims pass)
    filter: ClaimFilter | None = None
    #: events in flight when retention removed them from the log: kept until settled
    kept: dict[int, RecordedEvent] = field(default_factory=dict)
    #: deliveries so far of events that are not in flight now (released, nacked, expired)
    attempts: dict[int, int] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)

    def floor(self) -> int:
        low = self.cursor
        if self.available:
            low = min(low, self.available[0])
        if self.delayed:
            low = min(low, min(s for _, s in self.delayed))
        for f in self.inflight.values():
            if f.sequence < low:
                low = f.sequence
        return low


@dataclass
class _Subscription:
    config: SubscriptionConfig
    stream: _Stream
    groups: dict[str, _Group] = field(default_factory=dict)
    floor: int = 0
    dead: dict[tuple[str, str], DeadLetter] = field(default_factory=dict)  # (group, event id)
    receipts: dict[tuple[str, str], Receipt] = field(default_factory=dict)
    processed: set[str] = field(default_factory=set)


class MemoryStore(InProcessSchedules, EventStore):
    """In-memory store: ephemeral streams (dropped once every subscription acked them) and
    persistent streams kept in memory (full history, read from an offset, replay)."""

    capabilities = Capabilities(durable=False, idempotent_append=True, shared=False,
                                schedules=True)
    _retention_log = logging.getLogger("svrnty_events.retention")

    def __init__(self, options: MemoryStoreOptions | None = None) -> None:
        self.options = options or MemoryStoreOptions()
        self._streams: dict[str, _Stream] = {}
        self._subs: dict[str, _Subscription] = {}
        self._acks_since_trim = 0
        self._checkpoints: dict[str, int] = {}

    # --- streams -----------------------------------------------------------------------------

    def _stream(self, name: str) -> _Stream:
        try:
            return self._streams[name]
        except KeyError:
            raise UnknownStreamError(name, self._streams) from None

    def _sub(self, name: str) -> _Subscription:
        try:
            return self._subs[name]
        except KeyError:
            raise UnknownSubscriptionError(name, self._subs) from None

    async def create_stream(self, config: StreamConfig) -> None:
        stream = self._streams.get(config.name)
        if stream is None:
            self._streams[config.name] = _Stream(config, self.options.forget_workflows_after)
            return
        stored = stream.config.partitions
        check_partitions(config.name, stored, config.partitions, has_events=bool(stream.ids))
        stream.config = config
        if stored != config.partitions:
            stream.parts = [[] for _ in range(config.partitions)] \
                if config.partitions > 1 else None

    async def append(self, stream: str, events: Sequence[RecordedEvent], *,
                     expected_version: int | None = None) -> list[RecordedEvent]:
        s = self._stream(stream)
        if expected_version is not None and events:
            correlation = batch_correlation(events, expected_version)
            actual = s.versions.get(correlation, 0)
            if actual != expected_version:
                raise ConcurrencyError(stream, correlation, expected_version, actual)
        out: list[RecordedEvent] = []
        seq = s.next_sequence
        batch_ids: dict[str, RecordedEvent] = {}
        ids, versions, log = s.ids, s.versions, s.events
        replace = msgspec.structs.replace
        partitions = s.config.partitions
        for e in events:
            existing = ids.get(e.id)
            if existing is not None:
                out.append(s.get(existing) or e)
                continue
            if e.id in batch_ids:
                out.append(batch_ids[e.id])
                continue
            r = replace(e, sequence=seq, stream=stream,
                        partition=partition_of(e.correlation_id, partitions))
            batch_ids[e.id] = r
            out.append(r)
            seq += 1
        # all checks passed: commit the batch at once
        parts, retained, idle = s.parts, s.retained, s.idle
        for r in batch_ids.values():
            ids[r.id] = r.sequence
            corr = r.correlation_id
            versions[corr] = versions.get(corr, 0) + 1
            retained[corr] = retained.get(corr, 0) + 1
            if idle:
                idle.pop(corr, None)
            log.append(r)
            if parts is not None:
                parts[r.partition].append(r.sequence)
        if batch_ids:
            self._apply_retention(s)
            s.notifier.bump()
        return out

    def _apply_retention(self, s: _Stream) -> None:
        cfg = s.config
        limit = cfg.retention_max_count or self.options.max_events_per_stream
        new_base = s.base
        if limit and len(s.events) > limit:
            new_base = s.next_sequence - limit
        if cfg.retention_max_age is not None and s.events:
            # the oldest events, up to the first one that is not too old: timestamps may come
            # out of order (an event's own time), and a fresh event is never dropped for an
            # older one appended after it (that one goes once the events before it went)
            cutoff = utcnow() - timedelta(seconds=cfg.retention_max_age)
            events, k = s.events, new_base - s.base
            while k < len(events) and events[k].timestamp < cutoff:
                k += 1
            new_base = s.base + k
        if new_base > s.base:
            self._retire(s, new_base)
        if cfg.type == StreamType.EPHEMERAL and len(s.events) >= 1024:
            self._trim_acked(s)

    def _retire(self, s: _Stream, new_base: int) -> None:
        """Retention removes the events below ``new_base``: what a group had not settled is
        dead-lettered in it (reason "retention"), or, with the keep_unsettled policy, kept."""
        if s.config.retention_policy == RetentionPolicy.KEEP_UNSETTLED:
            for sub in s.subscriptions:
                for g in sub.groups.values():
                    new_base = min(new_base, self._unsettled_floor(s, g, new_base))
            if new_base <= s.base:
                return
            s.trim_to(new_base)
            self._sweep_marks(s)
            return
        now = utcnow()
        for sub in s.subscriptions:
            lost = 0
            for name, g in sub.groups.items():
                lost += self._dead_letter_retired(s, sub, name, g, new_base, now)
            if lost:
                self._retention_log.warning(
                    "stream %s: retention removed %d event(s) that subscription %s had not "
                    "settled; they are in its dead-letter queue (reason: retention)",
                    s.config.name, lost, sub.config.name)
        s.trim_to(new_base)
        self._sweep_marks(s)

    @staticmethod
    def _unsettled_floor(s: _Stream, g: _Group, new_base: int) -> int:
        """The oldest sequence below ``new_base`` that ``g`` has not settled (else new_base)."""
        f = g.filter
        low = new_base
        for seq in range(max(g.cursor, s.base), new_base):
            e = s.events[seq - s.base]
            if f is None or f.matches(e):
                low = seq
                break
        for seq in [*g.available, *(q for _, q in g.delayed),
                    *(x.sequence for x in g.inflight.values())]:
            low = min(low, seq) if seq >= s.base else low
        return low

    def _dead_letter_retired(self, s: _Stream, sub: _Subscription, name: str, g: _Group,
                             new_base: int, now: datetime) -> int:
        f = g.filter
        count = 0

        def bury(seq: int, reason_attempts: int) -> None:
            nonlocal count
            e = s.get(seq)
            if e is None:
                return
            sub.dead[(name, e.id)] = DeadLetter(
                event=e, subscription=sub.config.name, group=name, consumer_id="",
                reason="retention", attempts=reason_attempts, dead_lettered_at=now,
                error=g.reasons.get(seq))
            self._forget(g, seq)
            count += 1

        start = max(g.cursor, s.base)
        for seq in range(start, new_base):  # never read by the group
            if f is None or f.matches(s.events[seq - s.base]):
                bury(seq, 0)
        if g.cursor < new_base:
            g.cursor = new_base
        if any(q < new_base for q in g.available):
            for q in [q for q in g.available if q < new_base]:
                bury(q, g.attempts.get(q, 0))
            g.available = [q for q in g.available if q >= new_base]
            heapq.heapify(g.available)
        if any(q < new_base for _, q in g.delayed):
            for _, q in [x for x in g.delayed if x[1] < new_base]:
                bury(q, g.attempts.get(q, 0))
            g.delayed = [x for x in g.delayed if x[1] >= new_base]
            heapq.heapify(g.delayed)
        for x in g.inflight.values():  # with a consumer now: kept until settled
            if x.sequence < new_base and x.sequence not in g.kept:
                e = s.get(x.sequence)
                if e is not None:
                    g.kept[x.sequence] = e
        return count

    @staticmethod
    def _sweep_marks(s: _Stream) -> None:
        """Processed marks and receipts of events the stream no longer retains go too (they
        are only ever asked about retained events: dedup is within retention)."""
        ids = s.ids
        for sub in s.subscriptions:
            if len(sub.processed) > 2 * len(ids) + 1024:
                sub.processed = {k for k in sub.processed if k.split("@", 1)[0] in ids}
            if len(sub.receipts) > 2 * len(ids) + 1024:
                sub.receipts = {k: r for k, r in sub.receipts.items() if k[1] in ids}

    def _trim_acked(self, s: _Stream) -> None:
        """Ephemeral streams: drop events every subscription has settled."""
        low = s.next_sequence
        for sub in s.subscriptions:
            if sub.groups:
                sub.floor = min(g.floor() for g in sub.groups.values())
            low = min(low, sub.floor)
        if low - s.base >= 512 or low == s.next_sequence:
            s.trim_to(low)
            self._sweep_marks(s)

    async def read(self, stream: str, *, from_sequence: int = 0, limit: int | None = None,
                   correlation_id: str | None = None, event_types: Sequence[str] | None = None,
                   since: datetime | None = None) -> list[RecordedEvent]:
        s = self._stream(stream)
        start = max(from_sequence - s.base, 0)
        types = set(event_types) if event_types else None
        out: list[RecordedEvent] = []
        for e in s.events[start:]:
            if correlation_id is not None and e.correlation_id != correlation_id:
                continue
            if types is not None and e.type not in types:
                continue
            if since is not None and e.timestamp < since:
                continue
            out.append(e)
            if limit is not None and len(out) >= limit:
                break
        return out

    async def correlation_version(self, stream: str, correlation_id: str) -> int:
        return self._stream(stream).versions.get(correlation_id, 0)

    async def stream_info(self, stream: str) -> StreamInfo:
        s = self._stream(stream)
        return StreamInfo(name=stream, type=str(s.config.type), length=len(s.events),
                          first_sequence=s.base, next_sequence=s.next_sequence,
                          metadata={"store": "memory"})

    # --- subscriptions -------------------------------------------------------------------------

    async def create_subscription(self, config: SubscriptionConfig) -> None:
        sub = self._subs.get(config.name)
        if sub is not None:
            sub.config = config
            return
        stream = self._stream(config.stream)
        sub = _Subscription(config, stream, floor=stream.base)
        self._subs[config.name] = sub
        stream.subscriptions.append(sub)

    async def ensure_group(self, subscription: str, group: str, *,
                           start: int | None = None, filter: ClaimFilter | None = None) -> None:
        sub = self._sub(subscription)
        g = sub.groups.get(group)
        if g is None:
            base = sub.stream.base
            begin = max(start, base) if start is not None else max(sub.floor, base)
            g = sub.groups[group] = _Group(cursor=begin)
        g.filter = filter

    async def delete_group(self, subscription: str, group: str) -> None:
        sub = self._sub(subscription)
        g = sub.groups.pop(group, None)
        if g is not None and not sub.groups:
            sub.floor = max(sub.floor, g.floor())

    async def group_lags(self, subscription: str) -> dict[str, int]:
        sub = self._sub(subscription)
        s = sub.stream
        end = s.next_sequence
        out: dict[str, int] = {}
        for name, g in sub.groups.items():
            cursor = max(g.cursor, s.base)
            f = g.filter
            if f is not None and f.partition is not None and s.parts is not None:
                part = s.parts[f.partition]
                ahead = len(part) - bisect_left(part, cursor)
            else:
                ahead = max(end - cursor, 0)
            out[name] = ahead + len(g.available) + len(g.delayed) + len(g.inflight)
        return out

    def _group(self, subscription: str, group: str) -> tuple[_Subscription, _Group]:
        sub = self._sub(subscription)
        g = sub.groups.get(group)
        if g is None:
            g = sub.groups[group] = _Group(cursor=max(sub.floor, sub.stream.base))
        return sub, g

    async def claim(self, subscription: str, group: str, consumer_id: str, *, max_count: int,
                    visibility_timeout: float, filter: ClaimFilter | None = None) -> ClaimResult:
        sub, g = self._group(subscription, group)
        s = sub.stream
        now = time.time()
        self._expire(g, now)
        claimed: list[Claimed] = []
        deadline = now + visibility_timeout
        attempts, inflight, reasons = g.attempts, g.inflight, g.reasons
        ids: list[str] = []

        def take(seq: int, e: RecordedEvent) -> None:
            attempt = attempts.pop(seq, 0) + 1 if attempts else 1
            inflight[e.id] = _InFlight(seq, consumer_id, deadline, attempt)
            ids.append(e.id)
            claimed.append(Claimed(e, attempt, reasons.get(seq) if reasons else None))

        # 1. events waiting for redelivery, oldest first (they passed the filter before)
        g.filter = filter
        available = g.available
        while available and len(claimed) < max_count:
            seq = heapq.heappop(available)
            e = s.get(seq) or g.kept.get(seq)
            if e is None:  # trimmed by retention meanwhile (and dead-lettered then)
                self._forget(g, seq)
            else:
                take(seq, e)
        # 2. new events past the cursor
        if g.cursor < s.base:
            g.cursor = s.base
        room = max_count - len(claimed)
        end = s.next_sequence
        if room > 0 and g.cursor < end:
            base, events = s.base, s.events
            if filter is None or filter.empty:
                # new events: first hand-over, no reason yet
                stop = min(end, g.cursor + room)
                for seq in range(g.cursor, stop):
                    e = events[seq - base]
                    inflight[e.id] = _InFlight(seq, consumer_id, deadline, 1)
                    ids.append(e.id)
                    claimed.append(Claimed(e, 1))
                g.cursor = stop
            elif filter.partition is not None and s.parts is not None:
                part = s.parts[filter.partition]  # that partition's events only
                i, n = bisect_left(part, g.cursor), len(part)
                if filter.event_types is None and filter.correlation_id is None:
                    # every one of them matches: first hand-overs, as above
                    stop = min(n, i + room)
                    for seq in part[i:stop]:
                        e = events[seq - base]
                        inflight[e.id] = _InFlight(seq, consumer_id, deadline, 1)
                        ids.append(e.id)
                        claimed.append(Claimed(e, 1))
                    i = stop
                else:
                    matches = filter.matches
                    while i < n and len(claimed) < max_count:
                        seq = part[i]
                        i += 1
                        e = events[seq - base]
                        if matches(e):
                            take(seq, e)
                g.cursor = part[i] if i < n else end
            else:
                matches = filter.matches
                seq = g.cursor
                while seq < end and len(claimed) < max_count:
                    e = events[seq - base]
                    seq += 1
                    if matches(e):
                        take(seq - 1, e)
                g.cursor = seq
        if ids:
            g.claims += 1
            heapq.heappush(g.deadlines, (deadline, g.claims, ids))
        return ClaimResult(claimed, s.notifier.version, self._next_due(g))

    def _expire(self, g: _Group, now: float) -> None:
        while g.delayed and g.delayed[0][0] <= now:
            _, seq = heapq.heappop(g.delayed)
            heapq.heappush(g.available, seq)
        deadlines = g.deadlines
        while deadlines and deadlines[0][0] <= now:
            due, _, event_ids = heapq.heappop(deadlines)
            for event_id in event_ids:
                f = g.inflight.get(event_id)
                if f is not None and f.deadline == due:
                    self._requeue(g, event_id)
                    g.reasons.setdefault(f.sequence, "visibility timeout expired")

    def _next_due(self, g: _Group) -> float | None:
        due: float | None = None
        if g.delayed:
            due = g.delayed[0][0]
        deadlines = g.deadlines
        inflight = g.inflight
        while deadlines:
            d, _, event_ids = deadlines[0]
            if not any((f := inflight.get(i)) is not None and f.deadline == d
                       for i in event_ids):
                heapq.heappop(deadlines)  # every event of that claim was settled
                continue
            due = d if due is None else min(due, d)
            break
        return due

    @staticmethod
    def _requeue(g: _Group, event_id: str, delay_until: float | None = None) -> _InFlight:
        """Take an event out of flight, keeping its delivery count, to be claimed again."""
        f = g.inflight.pop(event_id)
        g.attempts[f.sequence] = f.attempt
        if delay_until is None:
            heapq.heappush(g.available, f.sequence)
        else:
            heapq.heappush(g.delayed, (delay_until, f.sequence))
        return f

    @staticmethod
    def _forget(g: _Group, seq: int) -> None:
        g.attempts.pop(seq, None)
        g.reasons.pop(seq, None)
        if g.kept:
            g.kept.pop(seq, None)

    async def ack(self, subscription: str, group: str, consumer_id: str,
                  event_ids: Sequence[str]) -> list[str]:
        sub, g = self._group(subscription, group)
        missing: list[str] = []
        inflight = g.inflight
        for event_id in event_ids:
            f = inflight.get(event_id)
            if f is None or f.consumer != consumer_id:
                missing.append(event_id)
                continue
            del inflight[event_id]
            if g.reasons:
                g.reasons.pop(f.sequence, None)
            if g.kept:
                g.kept.pop(f.sequence, None)
        self._acks_since_trim += len(event_ids)
        if self._acks_since_trim >= 4096:
            self._acks_since_trim = 0
            s = sub.stream
            if s.config.type == StreamType.EPHEMERAL:
                self._trim_acked(s)
        if len(g.deadlines) > 1024 and len(g.deadlines) > 4 * len(inflight):
            # drop entries of claims whose events were all settled
            g.deadlines = [x for x in g.deadlines if any(i in inflight for i in x[2])]
            heapq.heapify(g.deadlines)
        return missing

    async def nack(self, subscription: str, group: str, consumer_id: str, event_id: str, *,
                   delay: float, reason: str | None = None) -> bool:
        sub, g = self._group(subscription, group)
        f = g.inflight.get(event_id)
        if f is None or f.consumer != consumer_id:
            return False
        if reason:
            g.reasons[f.sequence] = reason
        self._requeue(g, event_id, time.time() + delay if delay > 0 else None)
        sub.stream.notifier.bump()
        return True

    async def extend(self, subscription: str, group: str, consumer_id: str,
                     event_ids: Sequence[str], *, visibility_timeout: float) -> list[str]:
        sub, g = self._group(subscription, group)
        now = time.time()
        self._expire(g, now)
        deadline = now + visibility_timeout
        missing: list[str] = []
        extended: list[str] = []
        for event_id in event_ids:
            f = g.inflight.get(event_id)
            if f is None or f.consumer != consumer_id:
                missing.append(event_id)
            else:
                f.deadline = deadline
                extended.append(event_id)
        if extended:
            g.claims += 1
            heapq.heappush(g.deadlines, (deadline, g.claims, extended))
        return missing

    async def release(self, subscription: str, group: str, consumer_id: str, *,
                      event_ids: Sequence[str] | None = None,
                      unseen: Sequence[str] = ()) -> int:
        sub = self._sub(subscription)
        g = sub.groups.get(group)
        if g is None:
            return 0
        inflight = g.inflight
        if event_ids is None:
            mine = [i for i, f in inflight.items() if f.consumer == consumer_id]
        else:
            mine = [i for i in event_ids
                    if (f := inflight.get(i)) is not None and f.consumer == consumer_id]
        not_seen = set(unseen)
        for event_id in mine:
            f = self._requeue(g, event_id)
            if event_id in not_seen:  # that hand-over never reached the consumer's code
                if f.attempt > 1:
                    g.attempts[f.sequence] = f.attempt - 1
                else:
                    g.attempts.pop(f.sequence, None)
        if mine:
            sub.stream.notifier.bump()
        return len(mine)

    async def wait_for_change(self, subscription: str, group: str, version: int,
                              timeout: float | None) -> int:
        return await self._sub(subscription).stream.notifier.wait(version, timeout)

    def notify(self, subscription: str) -> None:
        self._sub(subscription).stream.notifier.bump()

    # --- dead letters ------------------------------------------------------------------------

    async def dead_letter(self, subscription: str, group: str, consumer_id: str, event_id: str, *,
                          reason: str, attempts: int, error: str | None = None) -> bool:
        sub, g = self._group(subscription, group)
        f = g.inflight.pop(event_id, None)
        if f is None:
            return False
        e = sub.stream.get(f.sequence) or g.kept.get(f.sequence)
        self._forget(g, f.sequence)
        if e is None:
            return False
        sub.dead[(group, event_id)] = DeadLetter(
            event=e, subscription=subscription, group=group, consumer_id=consumer_id,
            reason=reason, attempts=attempts, dead_lettered_at=utcnow(), error=error)
        return True

    async def list_dead_letters(self, subscription: str, *,
                                limit: int | None = None) -> list[DeadLetter]:
        letters = list(self._sub(subscription).dead.values())
        return letters[:limit] if limit is not None else letters

    def _pick(self, sub: _Subscription, event_ids: Sequence[str] | None) -> list[DeadLetter]:
        if event_ids is None:
            return list(sub.dead.values())
        wanted = set(event_ids)
        return [d for (_, i), d in sub.dead.items() if i in wanted]

    async def replay_dead_letters(self, subscription: str,
                                  event_ids: Sequence[str] | None = None) -> int:
        sub = self._sub(subscription)
        letters = self._pick(sub, event_ids)
        for d in letters:
            del sub.dead[(d.group, d.event.id)]
            _, g = self._group(subscription, d.group)
            # a group made anew (its consumer left) reaches the event through its cursor
            if sub.stream.get(d.event.sequence) is not None and d.event.sequence < g.cursor:
                heapq.heappush(g.available, d.event.sequence)
        if letters:
            sub.stream.notifier.bump()
        return len(letters)

    async def purge_dead_letters(self, subscription: str,
                                 event_ids: Sequence[str] | None = None) -> int:
        sub = self._sub(subscription)
        letters = self._pick(sub, event_ids)
        for d in letters:
            del sub.dead[(d.group, d.event.id)]
        return len(letters)

    # --- receipts, idempotency ------------------------------------------------------------

    async def record_receipts(self, subscription: str, consumer_id: str,
                              event_ids: Sequence[str], *, read: bool) -> None:
        receipts = self._sub(subscription).receipts
        now = datetime.now(timezone.utc)
        for event_id in event_ids:
            key = (consumer_id, event_id)
            r = receipts.get(key)
            if r is None:
                r = receipts[key] = Receipt(subscription, consumer_id, event_id, delivered_at=now)
            if read and r.read_at is None:
                r.read_at = now

    async def list_receipts(self, subscription: str, *, event_id: str | None = None,
                            consumer_id: str | None = None) -> list[Receipt]:
        return [r for (c, e), r in self._sub(subscription).receipts.items()
                if (event_id is None or e == event_id) and (consumer_id is None or c == consumer_id)]

    async def mark_processed(self, subscription: str, key: str) -> bool:
        processed = self._sub(subscription).processed
        if key in processed:
            return False
        processed.add(key)
        return True

    async def is_processed(self, subscription: str, key: str) -> bool:
        return key in self._sub(subscription).processed

    # --- projection checkpoints (views of a memory store live in memory too: both start
    # empty with the process, so a projection rebuilds its view at start) -----------------

    async def load_checkpoint(self, projection: str) -> int:
        return self._checkpoints.get(projection, 0)

    async def save_checkpoint(self, projection: str, position: int, *,
                              expected: int | None = None) -> bool:
        if expected is not None and self._checkpoints.get(projection, 0) != expected:
            return False
        self._checkpoints[projection] = position
        return True
