"""Process managers: code that reacts to the events of one or more workflow streams by sending
commands (eventsourcing's process applications, a saga's orchestrator).

``@streaming.process_manager(name, streams=[WorkflowType, ...])`` registers
``handler(event, pm)``; the host runs it for each event of those streams (optionally only
``event_types``), in order per workflow, with ``pm.state`` (the triggering workflow's state
folded from its events up to this one, when ``state`` and ``apply`` are given) and
``pm.send(command)``, which by default continues the triggering workflow.

Exactly once across crashes: each event is handled through ``Delivery.process_once`` (its
effect is marked applied with the ack), and everything a handler sends gets ids derived from
the triggering event's id (the events each command emits, its schedules, a new workflow's id):
a host killed after a command's events were appended and before the mark re-runs the handler on
redelivery, its commands append the same event ids, and the store deduplicates them. The
handler must send the same commands in the same order for the same event (no randomness or
clock in what it sends).

Each process manager has one subscription per stream, ``pm.<name>.<stream>``, in
``consumer_group`` mode: on a shared store the hosts share the work, one workflow on one host.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .commands import CommandResult
from .errors import ConfigError, ConsumerClosedError, StoreUnavailableError
from .events import RecordedEvent, type_names
from .scheduling import derived_id
from .workflow import Workflow

if TYPE_CHECKING:
    from .host import EventStreaming, EventStreamingHost
    from .subscriptions import Consumer, Delivery

log = logging.getLogger("svrnty_events.process_managers")

#: what ``pm.send(..., workflow_id=NEW)`` passes to start a new workflow
NEW = "__new__"


@dataclass
class ProcessManager:
    name: str
    streams: list[type[Workflow] | str]
    func: Callable[..., Any]
    event_types: list[str]
    state: Callable[[], Any] | None = None
    apply: Callable[[Any, Any], Any] | None = None
    #: options of its subscriptions (visibility_timeout, redelivery_delay, ...)
    options: dict[str, Any] = field(default_factory=dict)
    #: subscription name per stream name (filled by prepare)
    subscriptions: dict[str, str] = field(default_factory=dict)

    def subscription_name(self, stream: str) -> str:
        return f"pm.{self.name}.{stream}"


class ProcessContext:
    """What a process manager's handler gets besides the event."""

    def __init__(self, host: EventStreamingHost, manager: ProcessManager,
                 record: RecordedEvent, state: Any) -> None:
        self.host = host
        self.manager = manager
        #: the triggering event's envelope (id, stream, correlation id, sequence, headers)
        self.record = record
        #: the triggering workflow's state after this event (None without ``state``)
        self.state = state
        self._sent = 0

    @property
    def workflow_id(self) -> str:
        """The triggering workflow's id (the event's correlation id)."""
        return self.record.correlation_id

    async def send(self, command: Any, *, workflow_id: str | None = None) -> CommandResult:
        """Send ``command`` once. By default it continues the triggering workflow (or, when the
        command's workflow type keeps another stream that has no workflow of this id yet, starts
        one there with the same id); ``workflow_id=...`` continues another workflow;
        ``workflow_id=NEW`` starts a new one (its id derived from the triggering event)."""
        k = self._sent
        self._sent += 1
        trigger = self.record.id
        name = self.manager.name

        def ids(key: str) -> str:
            return derived_id("pm", name, trigger, k, key)

        host = self.host
        handler = host.handlers.for_payload(command, "command")
        assert handler.workflow is not None
        stream = host.streaming.workflows[handler.workflow]
        if workflow_id == NEW:
            new_id = ids("workflow")
            # a re-run after a crash finds the workflow it started: it continues it, and the
            # command's events (the same ids) are deduplicated
            if await host.store.correlation_version(stream, new_id) == 0:
                return await host._dispatch(command, None, new_id=new_id, ids=ids)
            return await host._dispatch(command, new_id, ids=ids)
        target = workflow_id or self.workflow_id
        if workflow_id is None and stream != self.record.stream and \
                await host.store.correlation_version(stream, target) == 0:
            return await host._dispatch(command, None, new_id=target, ids=ids)
        return await host._dispatch(command, target, ids=ids)


def register(streaming: EventStreaming, name: str, streams: Sequence[type[Workflow] | str],
             func: Callable[..., Any], *, event_types: Sequence[type | str] = (),
             state: Callable[[], Any] | None = None,
             apply: Callable[[Any, Any], Any] | None = None, **options: Any) -> None:
    managers: dict[str, ProcessManager] = streaming.__dict__.setdefault("process_managers", {})
    if not name:
        raise ConfigError("process_manager", "a process manager needs a name")
    if name in managers:
        raise ConfigError(f"process_manager.{name}", f'process manager "{name}" is defined twice')
    if not streams:
        raise ConfigError(f"process_manager.{name}.streams",
                          "name at least one workflow type (or stream) to react to")
    if (state is None) != (apply is None):
        raise ConfigError(f"process_manager.{name}.state",
                          "give both state (the initial state factory) and apply(state, event)")
    for t in event_types:
        if not isinstance(t, str):
            streaming.event_types.add(t)
    managers[name] = ProcessManager(name, list(streams), func, type_names(event_types),
                                    state, apply, dict(options))


def prepare(streaming: EventStreaming) -> None:
    """Add each process manager's subscriptions (once), after checking its streams: an unknown
    workflow type or stream is a ConfigError naming the process manager."""
    managers: dict[str, ProcessManager] = streaming.__dict__.get("process_managers", {})
    declared = {s.name for s in streaming.config.streams}
    for manager in managers.values():
        if manager.subscriptions:
            continue
        names = []
        for s in manager.streams:
            if isinstance(s, str):
                if s not in declared:
                    raise ConfigError(f"process_manager.{manager.name}.streams",
                                      f'unknown stream "{s}"; streams: '
                                      f'{", ".join(sorted(declared)) or "none"}')
                names.append(s)
            else:
                stream = streaming.workflows.get(s)
                if stream is None:
                    raise ConfigError(
                        f"process_manager.{manager.name}.streams",
                        f"unknown workflow type {getattr(s, '__name__', s)!s}: it has no "
                        f"stream; call add_stream({getattr(s, '__name__', s)!s}) first")
                names.append(stream)
        for stream in names:
            sub = manager.subscription_name(stream)
            streaming.add_subscription(stream, sub, **{
                "mode": "consumer_group", "max_delivery_attempts": 10, **manager.options,
                "event_types": manager.event_types})
            manager.subscriptions[stream] = sub


class ProcessManagerRunner:
    """The host's tasks: one consumer per process manager and stream."""

    def __init__(self, host: EventStreamingHost) -> None:
        self.host = host
        self.managers: dict[str, ProcessManager] = host.streaming.__dict__.get(
            "process_managers", {})
        self.consumer_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._tasks: list[asyncio.Task[None]] = []
        self._consumers: list[Consumer] = []
        #: handler runs of this host (re-runs of redelivered events included)
        self.runs = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for manager in self.managers.values():
            for stream, sub in manager.subscriptions.items():
                self._tasks.append(loop.create_task(self._consume(manager, stream, sub),
                                                    name=f"svrnty-pm-{sub}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for consumer in self._consumers:
            try:
                await consumer.close("host stopping")
            except Exception:  # noqa: BLE001 - closing on the way out
                pass

    async def _consume(self, manager: ProcessManager, stream: str, sub: str) -> None:
        backoff = 0.05
        consumer = None
        while True:
            try:
                if consumer is None or consumer.closed:
                    consumer = await self.host.open_consumer(sub, self.consumer_id, window=20)
                    self._consumers.append(consumer)
                for delivery in await consumer.fetch(timeout=1.0):
                    await self._handle(manager, delivery)
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except ConsumerClosedError:
                consumer = None
            except StoreUnavailableError as exc:
                log.warning('process manager "%s": store unavailable (%s)', manager.name, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _handle(self, manager: ProcessManager, delivery: Delivery) -> None:
        async def effect(d: Delivery) -> None:
            state = None
            if manager.state is not None:
                state = await self._state(manager, d.record)
            context = ProcessContext(self.host, manager, d.record, state)
            self.runs += 1
            result = manager.func(d.event, context)
            if inspect.isawaitable(result):
                await result

        try:
            await delivery.process_once(effect)
        except (asyncio.CancelledError, StoreUnavailableError):
            raise
        except Exception as exc:  # noqa: BLE001 - the handler's failure: redeliver later
            log.warning('process manager "%s" failed on event %s (attempt %d): %s: %s',
                        manager.name, delivery.id, delivery.attempt, type(exc).__name__, exc)
            try:
                await delivery.nack(reason=f"{type(exc).__name__}: {exc}"[:500])
            except Exception:  # noqa: BLE001 - no longer held: it comes back anyway
                pass

    async def _state(self, manager: ProcessManager, record: RecordedEvent) -> Any:
        """Fold the workflow's events up to ``record`` (included) into the manager's state."""
        assert manager.state is not None and manager.apply is not None
        state = manager.state()
        position = 0
        types = self.host.streaming.event_types
        while True:
            events = await self.host.store.read(record.stream, from_sequence=position,
                                                correlation_id=record.correlation_id,
                                                limit=500)
            for e in events:
                if e.sequence > record.sequence:
                    return state
                result = manager.apply(state, types.decode(e.type, e.data, e.content_type))
                state = await result if inspect.isawaitable(result) else result
            if len(events) < 500:
                return state
            position = events[-1].sequence + 1


__all__ = ["NEW", "ProcessContext", "ProcessManager"]
