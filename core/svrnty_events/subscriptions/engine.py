"""The subscription engine: every subscription of a host and its consumers, over one store."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pluggy

from ..config import StreamConfig, SubscriptionConfig
from ..errors import (
    ConfigError,
    ConsumerClosedError,
    SvrntyEventsError,
    UnknownSubscriptionError,
)
from ..events import EventTypes, type_names
from ..modes import Mode
from ..replay import sequence_at
from ..store import SHARED_GROUP, ChangeNotifier, EventStore, wait_until_resolved
from .consumer import Consumer
from .sync import sync_loop

log = logging.getLogger("svrnty_events.subscriptions")


class ConsumerLimitError(SvrntyEventsError):
    def __init__(self, subscription: str, limit: int) -> None:
        super().__init__(f'subscription "{subscription}" already has its maximum of {limit} '
                         "consumers")


@dataclass
class SubscriptionRuntime:
    config: SubscriptionConfig
    stream: StreamConfig
    mode: Mode
    consumers: dict[str, Consumer] = field(default_factory=dict)
    #: bumped when the mode's choices may have changed (a consumer may claim more now)
    changes: ChangeNotifier = field(default_factory=ChangeNotifier)
    #: closes in progress: claims wait for them, so released events are claimable at once
    releasing: set[asyncio.Future[None]] = field(default_factory=set)
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

    async def wait_in_relay(self, consumer: Consumer, version: int,
                            timeout: float | None) -> None:
        if self.store_waiter is None:
            self.store_waiter = consumer
            try:
                await consumer.engine.store.wait_for_change(self.name, consumer.group, version,
                                                            timeout)
            finally:
                if self.store_waiter is consumer:
                    self.store_waiter = None
                self.wake_one()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.followers.append(fut)
        try:
            await wait_until_resolved(fut, timeout)
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.wake_one()  # woken, then cancelled: the wake-up goes to another follower
            raise


class SubscriptionEngine:
    """Consumers of every subscription of a host, over one store."""

    def __init__(self, store: EventStore, event_types: EventTypes | None = None) -> None:
        self.store = store
        #: the classes deliveries decode into (then the process-wide Event registry)
        self.event_types = event_types if event_types is not None else EventTypes()
        self.subscriptions: dict[str, SubscriptionRuntime] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        #: the plugin manager's hooks when a plugin observes deliveries (see
        #: plugins.observation_hooks), else None: then nothing is reported
        self.observers: pluggy.HookRelay | None = None

    def add(self, runtime: SubscriptionRuntime) -> None:
        self.subscriptions[runtime.name] = runtime
        runtime.mode.stream = runtime.stream
        if runtime.mode.sync_interval is not None and self.store.capabilities.shared:
            runtime.mode.shared_store = True

    def changed(self, runtime: SubscriptionRuntime) -> None:
        """The mode's choices may have changed: wake the subscription's consumers, and have a
        shared-store mode sync."""
        runtime.changes.bump()
        self.store.notify(runtime.name)
        self.request_sync(runtime)

    # --- modes that agree across hosts ------------------------------------------------------

    def request_sync(self, runtime: SubscriptionRuntime) -> None:
        """Have the mode sync with the store soon (a consumer joined or left, or a partition
        may change hands); starts the sync task when it is not running."""
        if not runtime.mode.shared_store:
            return
        runtime.sync_poke.set()
        if runtime.sync_task is None or runtime.sync_task.done():
            runtime.sync_task = asyncio.ensure_future(sync_loop(self, runtime))
            self._tasks.add(runtime.sync_task)
            runtime.sync_task.add_done_callback(self._tasks.discard)

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
                            start: int | datetime | str | None = None,
                            transient: bool = False) -> Consumer:
        """Register a consumer. A consumer with the same id already connected is replaced (its
        held events are released). ``correlation_id`` scopes the consumer to one workflow: it
        gets a cursor of its own over the subscription's stream and completes when a terminal
        event type (its own, or the subscription's) is delivered.

        ``event_types`` narrows what the consumer receives; it needs a group of its own (a
        broadcast or read_receipt subscription, or a ``correlation_id``): consumers that share
        a group share its events, so one of them cannot leave events to the others by type.

        ``start`` places a new cursor (a consumer with a group of its own, or a shared group not
        created yet): a sequence, a datetime (the first event at or after it), ``"beginning"``
        or ``"new"`` (only events appended from now on); None = the oldest retained event.
        An existing cursor resumes where it was.

        ``transient``: a consumer with a group of its own (broadcast, read_receipt) whose cursor
        is forgotten when it closes (a browser connection that states its own start each time);
        no effect on a shared group."""
        if self._closing:
            raise ConsumerClosedError("host is stopping")
        if not consumer_id:
            raise ValueError("consumer_id is required")
        runtime = self.runtime(subscription)
        config = runtime.config
        if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                                   or window < 1):
            raise ConfigError("subscribe(window)", f"must be an integer >= 1, got {window!r}")
        own_types = type_names(event_types)
        shared = correlation_id is None and runtime.mode.shared
        if own_types and shared:
            raise ConfigError(
                "subscribe(event_types)",
                f'subscription "{subscription}" is {config.mode}: its consumers share one '
                "delivery group, so one of them cannot leave events of other types to the "
                "others; set event_types on the subscription, or subscribe with a "
                "correlation_id, or use a broadcast subscription")
        previous = runtime.consumers.get(consumer_id)
        if previous is not None:
            await previous.close("replaced by a new connection with the same consumer id")
        if config.max_consumers is not None and len(runtime.consumers) >= config.max_consumers:
            raise ConsumerLimitError(subscription, config.max_consumers)
        terminal = type_names(terminal_event_types)
        if correlation_id is not None:
            group, private = f"{consumer_id}@{correlation_id}", True
            terminal = terminal or list(config.terminal_event_types)
        elif shared:
            group, private = SHARED_GROUP, False
        else:
            group, private = consumer_id, True
        consumer = Consumer(
            self, runtime, consumer_id, group=group, private=private,
            correlation_id=correlation_id, event_types=own_types,
            terminal_event_types=terminal,
            window=window if window is not None else config.window,
            metadata=dict(metadata or {}), heartbeat_timeout=heartbeat_timeout,
            transient=transient)
        begin = await self._start_sequence(runtime, start)
        try:
            for group_name, claim_filter in consumer.groups():
                await self.store.ensure_group(subscription, group_name, start=begin,
                                              filter=claim_filter)
        except BaseException:
            consumer.stop_heartbeat()
            raise
        runtime.consumers[consumer_id] = consumer
        if not private:
            runtime.mode.join(consumer_id)
            self.changed(runtime)
        if self.observers is not None:
            self.observers.consumer_joined(subscription=subscription, consumer_id=consumer_id)
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
            return await sequence_at(self.store, stream, start)
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
