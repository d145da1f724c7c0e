"""The Redis keys of a stream and of its subscriptions (the README's "key layout")."""

from __future__ import annotations

import asyncio

from svrnty_events.config import StreamConfig, SubscriptionConfig
from svrnty_events.store import ChangeNotifier

#: version of the key layout this code writes, kept in each stream's meta hash (field
#: ``layout``). A stream without the field was written by a version before partitions, whose
#: keys are those of layout 2 with one partition.
LAYOUT = 2


class Notifier(ChangeNotifier):
    """The kernel's change notifier, bumped by pub/sub messages and by ``notify``; it also
    tells when the store's pub/sub listener is subscribed."""

    __slots__ = ("subscribed",)

    def __init__(self) -> None:
        super().__init__()
        self.subscribed = asyncio.Event()


class StreamKeys:
    __slots__ = ("name", "config", "tag", "log", "meta", "versions", "eid", "subs", "channel",
                 "sub_base", "notifier", "untrimmed")

    def __init__(self, prefix: str, config: StreamConfig) -> None:
        self.name = config.name
        self.config = config
        # the {hash tag}: every key of the stream and its subscriptions is in one cluster slot
        self.tag = tag = f"{prefix}{{{config.name}}}"
        self.log = f"{tag}:log"
        self.meta = f"{tag}:meta"
        self.versions = f"{tag}:versions"
        self.eid = f"{tag}:eid:"
        self.subs = f"{tag}:subs"
        self.channel = f"{tag}:changes"
        self.sub_base = f"{tag}:sub:"
        self.notifier = Notifier()
        #: events this host appended since it last trimmed the (ephemeral) stream
        self.untrimmed = 0

    def partition(self, p: int) -> str:
        """The key of partition ``p`` (streams of several partitions only; lua/common.lua
        builds the same names)."""
        return f"{self.log}#{p}"

    def read_key(self, partition: int | None) -> str:
        """'' for the main log, else the partition whose key a claim reads."""
        return "" if partition is None or self.config.partitions <= 1 else str(partition)


class SubKeys:
    __slots__ = ("name", "config", "stream", "base", "groups", "parts", "filters", "dead",
                 "dead_index", "receipts", "processed")

    def __init__(self, stream: StreamKeys, config: SubscriptionConfig) -> None:
        self.name = config.name
        self.config = config
        self.stream = stream
        self.base = base = f"{stream.sub_base}{config.name}"
        self.groups = f"{base}:groups"
        #: group -> partition, for the groups that live on a partition's key
        self.parts = f"{base}:parts"
        #: group -> the event types / correlation id its claims pass (for retention)
        self.filters = f"{base}:filters"
        self.dead = f"{base}:dead"
        self.dead_index = f"{base}:dead:index"
        self.receipts = f"{base}:receipts"
        self.processed = f"{base}:processed"

    def gname(self, group: str) -> str:
        return f"{self.name}:{group}"

    def leases(self, group: str) -> str:
        return f"{self.base}:g:{group}:leases"

    def group_keys(self, group: str) -> list[str]:
        """The keys every group script gets, in lua/group.lua's order."""
        s, g = self.stream, f"{self.base}:g:{group}"
        return [s.log, s.meta, self.groups, s.subs, self.parts, f"{g}:avail", f"{g}:timers",
                f"{g}:reasons", f"{g}:expired", f"{g}:deleted", self.filters]
