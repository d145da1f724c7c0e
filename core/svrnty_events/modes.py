"""Subscription modes. The four built-in modes are a default plugin of the kernel; a third-party
mode registers the same way through ``register_subscription_modes``.

A mode decides which consumer(s) an event goes to, through two choices:

* ``shared``: whether all consumers draw from one delivery group (competing consumers) or each
  consumer has a group of its own (every consumer sees every event);
* ``accepts(consumer_id, event)``: in a shared group, whether this consumer may take the event
  now (otherwise it stays available for another consumer).

The engine tells the mode when consumers join and leave and when events are handed out and
settled, so a mode can keep per-key ordering (as ``consumer_group`` does).
"""

from __future__ import annotations

import time
import zlib
from collections import defaultdict

import msgspec

from .config import SubscriptionConfig
from .events import RecordedEvent
from .hookspecs import hookimpl


class Mode:
    """Base class of subscription modes (one instance per subscription)."""

    #: one delivery group for all consumers (True), or one per consumer (False)
    shared: bool = True
    #: record delivered/read receipts per consumer
    receipts: bool = False

    def __init__(self, subscription: SubscriptionConfig, options: msgspec.Struct | None = None):
        self.subscription = subscription
        self.options = options

    def join(self, consumer_id: str) -> None:
        """A consumer subscribed."""

    def leave(self, consumer_id: str) -> None:
        """A consumer left (its in-flight events are released by the engine)."""

    def accepts(self, consumer_id: str, event: RecordedEvent) -> bool:
        """Whether ``consumer_id`` may take ``event`` now. Called only for shared modes."""
        return True

    def delivered(self, consumer_id: str, event: RecordedEvent) -> None:
        """``event`` was handed to ``consumer_id``."""

    def settled(self, consumer_id: str, event: RecordedEvent) -> bool:
        """``consumer_id`` no longer holds ``event`` (acked, nacked, released, dead-lettered).
        Return True if another consumer may now take events it could not take before."""
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
    #: number of partitions correlation ids are hashed into
    partitions: int = 64


class ConsumerGroup(Mode):
    """Events partitioned by correlation id: one workflow's events go, in order, to one consumer.

    Partitions are spread over the consumers by rendezvous hashing, so a join or a leave moves
    only the partitions it must. Ordering survives a rebalance: a consumer does not take an event
    of a workflow while another consumer still holds an earlier event of it.
    """

    shared = True

    def __init__(self, subscription: SubscriptionConfig,
                 options: ConsumerGroupOptions | None = None):
        super().__init__(subscription, options)
        self.partitions = (options or ConsumerGroupOptions()).partitions
        self.members: list[str] = []
        self._owner: dict[int, str] = {}
        # correlation id -> consumer -> (events held, visibility deadline of the latest)
        self._holders: dict[str, dict[str, tuple[int, float]]] = defaultdict(dict)

    def join(self, consumer_id: str) -> None:
        if consumer_id not in self.members:
            self.members.append(consumer_id)
            self._owner.clear()

    def leave(self, consumer_id: str) -> None:
        if consumer_id in self.members:
            self.members.remove(consumer_id)
            self._owner.clear()

    def partition_of(self, correlation_id: str) -> int:
        return zlib.crc32(correlation_id.encode()) % self.partitions

    def owner_of(self, partition: int) -> str | None:
        owner = self._owner.get(partition)
        if owner is None and self.members:
            owner = max(self.members,
                        key=lambda m: zlib.crc32(f"{m}\x00{partition}".encode()))
            self._owner[partition] = owner
        return owner

    def accepts(self, consumer_id: str, event: RecordedEvent) -> bool:
        if self.owner_of(self.partition_of(event.correlation_id)) != consumer_id:
            return False
        holders = self._holders.get(event.correlation_id)
        if not holders:
            return True
        # a holder past its visibility deadline no longer blocks: the store redelivers its
        # events, and they must be able to reach the new owner
        now = time.monotonic()
        return all(c == consumer_id or deadline <= now
                   for c, (_, deadline) in holders.items())

    def delivered(self, consumer_id: str, event: RecordedEvent) -> None:
        holders = self._holders[event.correlation_id]
        count, _ = holders.get(consumer_id, (0, 0.0))
        holders[consumer_id] = (count + 1,
                                time.monotonic() + self.subscription.visibility_timeout)

    def settled(self, consumer_id: str, event: RecordedEvent) -> bool:
        holders = self._holders.get(event.correlation_id)
        if not holders or consumer_id not in holders:
            return False
        count, deadline = holders[consumer_id]
        if count > 1:
            holders[consumer_id] = (count - 1, deadline)
        else:
            del holders[consumer_id]
        if not holders:
            del self._holders[event.correlation_id]
            # a workflow that moved to another consumer during a rebalance is free for it now
            return self.owner_of(self.partition_of(event.correlation_id)) != consumer_id
        return False


@hookimpl
def register_subscription_modes(register):  # type: ignore[no-untyped-def]
    register("broadcast", Broadcast)
    register("exclusive", Exclusive)
    register("consumer_group", ConsumerGroup, options=ConsumerGroupOptions)
    register("read_receipt", ReadReceipt)
