"""Subscription modes. The four built-in modes are a default plugin of the kernel; a third-party
mode registers the same way through ``register_subscription_modes``.

A mode decides which consumer(s) an event goes to, through two choices:

* ``shared``: whether all consumers draw from one delivery group (competing consumers) or each
  consumer has a group of its own (every consumer sees every event);
* ``partitioned`` (shared modes): whether the group is split by the stream's partitions (one
  group per partition, see ``store.partition_group``), each claimed by the consumers that
  ``assignment`` names. A mode never looks at single events while a store claims: the engine
  asks it which partitions a consumer may claim, then claims exactly those.

The engine tells the mode when consumers join and leave, when claims of partitions begin and
end, and when events are handed out and settled, so a mode can keep per-partition ordering (as
``consumer_group`` does).

On a store shared by several hosts (``Capabilities.shared``), a mode with a ``sync_interval``
is also called (``sync``) every so often with the store's leases of its group, so that its
choices agree across hosts: ``consumer_group`` keeps its members and partition owners there.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from .config import StreamConfig, SubscriptionConfig
from .events import RecordedEvent, partition_of
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .store import EventStore


class Leases:
    """The store's leases of one delivery group (see ``EventStore.leases``), for ``Mode.sync``."""

    def __init__(self, store: EventStore, subscription: str, group: str) -> None:
        self.store = store
        self.subscription = subscription
        self.group = group

    async def update(self, *, acquire: Mapping[str, tuple[str, float]] | None = None,
                     release: Mapping[str, str] | None = None) -> dict[str, str]:
        """Release, then take or renew leases, atomically; returns every unexpired lease."""
        return await self.store.leases(self.subscription, self.group, acquire=acquire,
                                       release=release)


class Assignment(msgspec.Struct, frozen=True, gc=False):
    """What a consumer of a partitioned mode may claim now."""

    #: partitions it may claim now
    partitions: Sequence[int]
    #: when (time.monotonic()) the answer may change by itself (a holder's deadline passes);
    #: None when only an event the mode hears of (join, leave, settle, sync) changes it
    retry_at: float | None = None


class Mode:
    """Base class of subscription modes (one instance per subscription)."""

    #: one delivery group for all consumers (True), or one per consumer (False)
    shared: bool = True
    #: shared modes: one delivery group per partition of the stream, claimed as ``assignment``
    #: says (True), or one group for the whole stream (False)
    partitioned: bool = False
    #: record delivered/read receipts per consumer
    receipts: bool = False
    #: set by the engine before any consumer joins: the configuration of the stream
    stream: StreamConfig | None = None

    def __init__(self, subscription: SubscriptionConfig, options: msgspec.Struct | None = None):
        self.subscription = subscription
        self.options = options

    def join(self, consumer_id: str) -> None:
        """A consumer subscribed."""

    def leave(self, consumer_id: str) -> None:
        """A consumer left (its in-flight events are released by the engine)."""

    def assignment(self, consumer_id: str) -> Assignment:
        """Partitioned modes: the partitions ``consumer_id`` may claim now."""
        return Assignment(range((self.stream.partitions if self.stream else 1)))

    def claim_started(self, consumer_id: str, partitions: Sequence[int]) -> None:
        """Partitioned modes: a claim of ``consumer_id`` for ``partitions`` begins (until
        ``claim_ended``, the consumer may receive events of them any moment)."""

    def claim_ended(self, consumer_id: str, partitions: Sequence[int]) -> bool:
        """The claim is over; what it claimed was reported with ``delivered`` before. Return
        True if another consumer may now claim what it could not claim before."""
        return False

    def delivered(self, consumer_id: str, events: Sequence[RecordedEvent]) -> None:
        """``events`` (one claim's) were handed to ``consumer_id``."""

    def settled(self, consumer_id: str, events: Sequence[RecordedEvent]) -> bool:
        """``consumer_id`` no longer holds ``events`` (acked, nacked, released,
        dead-lettered). Return True if another consumer may now claim what it could not
        claim before."""
        return False

    def extended(self, consumer_id: str, events: Sequence[RecordedEvent]) -> None:
        """The visibility deadlines of ``events``, held by ``consumer_id``, moved to a full
        visibility timeout from now (a slow consumer said it is still working on them)."""

    #: on a store shared by several hosts: seconds between two ``sync`` calls (None: the mode
    #: needs none, its choices are right whatever other hosts do)
    sync_interval: float | None = None
    #: set by the engine before any consumer joins: the store is shared by several hosts and
    #: ``sync`` will be called
    shared_store: bool = False

    @property
    def lingering(self) -> bool:
        """True while the mode still needs ``sync`` calls after this host's last consumer left
        (e.g. to give up leases once the events of a consumer that left time out)."""
        return False

    async def sync(self, leases: Leases) -> bool:
        """On a shared store: called every ``sync_interval`` seconds while this host has
        consumers in the subscription's shared group, at once after a join or a leave, and
        once more after the last of them left. Return True when consumers of this host may now
        claim what they could not claim before (the engine wakes them)."""
        return False


class Broadcast(Mode):
    """Every consumer gets every event."""

    shared = False


class Exclusive(Mode):
    """Competing consumers: each event goes to exactly one of them."""

    shared = True


class ReadReceipt(Broadcast):
    """Broadcast, plus per-consumer delivered/read receipts that can be queried."""

    receipts = True


class ConsumerGroupOptions(msgspec.Struct, forbid_unknown_fields=True):
    #: must equal the stream's ``partitions`` when given (partitions belong to the stream)
    partitions: int | None = None
    #: on a store shared by several hosts: seconds between two renewals of this host's
    #: memberships and partition leases (a host that stops renewing drops out after 3 of them)
    sync_interval: float = 1.0


class ConsumerGroup(Mode):
    """The stream's partitions spread over the consumers, one owner per partition at a time:
    one workflow's events (one partition) go, in order, to one consumer (Kafka's consumer
    groups, KurrentDB's pinned-by-correlation).

    Partitions are spread over the consumers by rendezvous hashing, so a join or a leave moves
    only the partitions it must. A partition moves only once its holder settled its events (or
    their visibility deadline passed, when the store hands them out again): the new owner
    never takes an event of a workflow while another consumer may still work on an earlier one.

    On a store shared by several hosts the members and the partition owners are leases in the
    store: a consumer claims a partition only while it holds the partition's lease, and gives
    the lease up (to the partition's new owner) once it holds no event of the partition. A host
    that dies keeps its leases until they expire: a visibility timeout (plus two
    ``sync_interval``) after its last renewal, when its in-flight events have come back too.
    """

    shared = True
    partitioned = True

    def __init__(self, subscription: SubscriptionConfig,
                 options: ConsumerGroupOptions | None = None):
        super().__init__(subscription, options)
        options = options or ConsumerGroupOptions()
        self._partitions_option = options.partitions
        self.sync_interval = options.sync_interval
        self.members: list[str] = []
        self._owner: dict[int, str] = {}
        # partition -> consumer of this host -> (claims and events held, latest deadline)
        self._holds: dict[int, dict[str, tuple[int, float]]] = {}
        # shared store: members of every host, partition -> lease holder
        self._synced = False
        self._view: list[str] = []
        self._leased: dict[int, str] = {}
        self._lease_until = 0.0
        self._left: set[str] = set()

    @property
    def partitions(self) -> int:
        if self.stream is not None:
            return self.stream.partitions
        return self._partitions_option or 1

    def partition_of(self, correlation_id: str) -> int:
        return partition_of(correlation_id, self.partitions)

    def join(self, consumer_id: str) -> None:
        self._left.discard(consumer_id)
        if consumer_id not in self.members:
            self.members.append(consumer_id)
            self._owner.clear()

    def leave(self, consumer_id: str) -> None:
        if consumer_id in self.members:
            self.members.remove(consumer_id)
            self._owner.clear()
            if self.shared_store:
                self._left.add(consumer_id)
        self._forget_expired(time.monotonic())

    @property
    def lingering(self) -> bool:
        return bool(self._left)

    def _candidates(self) -> list[str]:
        if not self.shared_store:
            return self.members
        return sorted((set(self._view) | set(self.members)) - self._left)

    def owner_of(self, partition: int) -> str | None:
        owner = self._owner.get(partition)
        if owner is None:
            members = self._candidates()
            if members:
                owner = max(members,
                            key=lambda m: zlib.crc32(f"{m}\x00{partition}".encode()))
                self._owner[partition] = owner
        return owner

    def assignment(self, consumer_id: str) -> Assignment:
        now = time.monotonic()
        mine: list[int] = []
        retry_at: float | None = None
        if self.shared_store:
            if now >= self._lease_until:
                return Assignment(mine)  # not renewed lately: another host may take over
            for partition, holder in self._leased.items():
                if holder == consumer_id and self.owner_of(partition) == consumer_id:
                    mine.append(partition)
            return Assignment(sorted(mine))
        for partition in range(self.partitions):
            if self.owner_of(partition) != consumer_id:
                continue
            # another consumer still holds events of it (a rebalance): wait until it settled
            # them or their deadline passed (then the store hands them out again)
            blocked = [deadline for c, (_, deadline) in self._holds.get(partition, {}).items()
                       if c != consumer_id and deadline > now]
            if blocked:
                until = max(blocked)
                retry_at = until if retry_at is None else min(retry_at, until)
            else:
                mine.append(partition)
        return Assignment(mine, retry_at)

    def claim_started(self, consumer_id: str, partitions: Sequence[int]) -> None:
        deadline = time.monotonic() + self.subscription.visibility_timeout
        for partition in partitions:
            _hold(self._holds, partition, consumer_id, deadline, 1)

    def claim_ended(self, consumer_id: str, partitions: Sequence[int]) -> bool:
        wake = False
        for partition in partitions:
            wake |= self._unhold(consumer_id, partition, 1)
        return wake

    def delivered(self, consumer_id: str, events: Sequence[RecordedEvent]) -> None:
        deadline = time.monotonic() + self.subscription.visibility_timeout
        for partition, count in _per_partition(events).items():
            _hold(self._holds, partition, consumer_id, deadline, count)

    def settled(self, consumer_id: str, events: Sequence[RecordedEvent]) -> bool:
        wake = False
        for partition, count in _per_partition(events).items():
            wake |= self._unhold(consumer_id, partition, count)
        return wake

    def extended(self, consumer_id: str, events: Sequence[RecordedEvent]) -> None:
        # the partition stays with its holder as long as the store gives it the events
        deadline = time.monotonic() + self.subscription.visibility_timeout
        for partition in _per_partition(events):
            held = self._holds.get(partition)
            if held and consumer_id in held:
                count, before = held[consumer_id]
                held[consumer_id] = (count, max(before, deadline))

    def _unhold(self, consumer_id: str, partition: int, count: int) -> bool:
        if not _unhold(self._holds, partition, consumer_id, count):
            return False
        # nobody holds the partition now: if it moved to another consumer during a rebalance,
        # that one may claim it (on a shared store, once the lease moves: the engine syncs)
        return self.owner_of(partition) != consumer_id

    def _forget_expired(self, now: float) -> None:
        for partition, held in list(self._holds.items()):
            for consumer in [c for c, (_, deadline) in held.items()
                             if deadline <= now and c not in self.members]:
                del held[consumer]
            if not held:
                del self._holds[partition]

    def _held_until(self, consumer_id: str, partition: int, now: float) -> float | None:
        """Until when ``consumer_id`` may hold events of ``partition`` (None: it holds none)."""
        held = self._holds.get(partition)
        entry = held.get(consumer_id) if held else None
        return entry[1] if entry is not None and entry[1] > now else None

    async def sync(self, leases: Leases) -> bool:
        started = time.monotonic()
        member_ttl = 3 * self.sync_interval
        lease_ttl = self.subscription.visibility_timeout + 2 * self.sync_interval
        before = self._leased
        lapsed = started >= self._lease_until  # consumers stopped taking events meanwhile
        if not self._synced:
            # first sync: learn who else is there before claiming partitions
            self._apply(await leases.update(acquire=self._memberships(member_ttl),
                                            release={f"m:{c}": c for c in self._left}))
            self._synced = True
        for _ in range(2):  # once more when the members turned out to have changed
            view = self._view
            acquire, release = self._plan(started, member_ttl, lease_ttl)
            table = await leases.update(acquire=acquire, release=release)
            kept = {holder for holder, _ in acquire.values()}
            self._left.difference_update(c for c in release.values() if c not in kept)
            # claim only while the leases outlive what is claimed: an event taken at t is in
            # flight until t + visibility timeout, and the leases renewed now last until
            # started + visibility timeout + 2 intervals (the next renewal is due in one
            # interval; the rest is room for a late renewal and for a claim in progress)
            self._lease_until = started + 1.75 * self.sync_interval
            self._apply(table)
            if self._view == view:
                break
        local = set(self.members)
        return any(holder in local and (lapsed or before.get(p) != holder)
                   for p, holder in self._leased.items())

    def _memberships(self, ttl: float) -> dict[str, tuple[str, float]]:
        return {f"m:{c}": (c, ttl) for c in self.members}

    def _plan(self, now: float, member_ttl: float, lease_ttl: float
              ) -> tuple[dict[str, tuple[str, float]], dict[str, str]]:
        """The leases to take or renew and those to give up, from the current view."""
        acquire = self._memberships(member_ttl)
        release = {f"m:{c}": c for c in self._left}
        local = set(self.members)
        for partition, held in list(self._holds.items()):  # forget deadlines that passed
            for consumer in [c for c, (_, deadline) in held.items() if deadline <= now]:
                del held[consumer]
            if not held:
                del self._holds[partition]
        for partition in range(self.partitions):
            key = f"p:{partition}"
            owner = self.owner_of(partition)
            holder = self._leased.get(partition)
            if holder is not None and holder != owner and (holder in local
                                                           or holder in self._left):
                until = self._held_until(holder, partition, now)
                if until is not None:
                    # keep it until its events settle or time out (also for a consumer that
                    # left without its events released: only as long as those may be held)
                    acquire[key] = (holder, lease_ttl if holder in local
                                    else until - now + 2 * self.sync_interval)
                    continue
                release[key] = holder
            if owner in local:
                acquire[key] = (owner, lease_ttl)  # take it when free, or renew it
        return acquire, release

    def _apply(self, table: dict[str, str]) -> None:
        view = sorted(k[2:] for k in table if k.startswith("m:"))
        if view != self._view:
            self._view = view
            self._owner.clear()
        self._leased = {int(k[2:]): h for k, h in table.items() if k.startswith("p:")}


_Holds = dict  # key -> consumer -> (count held, visibility deadline of the latest)


def _per_partition(events: Sequence[RecordedEvent]) -> dict[int, int]:
    if not events:
        return {}
    if len({e.partition for e in events}) == 1:  # the usual case: a claim from one partition
        return {events[0].partition: len(events)}
    counts: dict[int, int] = {}
    for e in events:
        p = e.partition
        counts[p] = counts.get(p, 0) + 1
    return counts


def _hold(holds: _Holds, key: object, consumer_id: str, deadline: float, count: int) -> None:
    held = holds.setdefault(key, {})
    before, _ = held.get(consumer_id, (0, 0.0))
    held[consumer_id] = (before + count, deadline)


def _unhold(holds: _Holds, key: object, consumer_id: str, count: int) -> bool:
    """``count`` holds of ``key`` less for ``consumer_id``. True when those were the last holds
    of ``key`` anyone had."""
    held = holds.get(key)
    if not held or consumer_id not in held:
        return False
    before, deadline = held[consumer_id]
    if before > count:
        held[consumer_id] = (before - count, deadline)
        return False
    del held[consumer_id]
    if held:
        return False
    del holds[key]
    return True


@hookimpl
def register_subscription_modes(register):  # type: ignore[no-untyped-def]
    register("broadcast", Broadcast)
    register("exclusive", Exclusive)
    register("consumer_group", ConsumerGroup, options=ConsumerGroupOptions)
    register("read_receipt", ReadReceipt)
