"""The hookspecs of svrnty-events, and nothing else.

Contribution hooks take a ``register`` callback; the kernel owns it, so type checks and
duplicate-name errors live in one place. Hooks are synchronous: they return factories, and the
async work lives on the objects those factories build. Arguments are only ever added to a
hookspec; an implementation may accept fewer than the spec offers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import argparse

    from .events import RecordedEvent
    from .host import EventStreamingHost
    from .subscriptions import Delivery

PROJECT_NAME = "svrnty_events"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    def __call__(self, name: str, factory: Any, *, options: type | None = None) -> None: ...


@hookspec
def add_hookspecs(pm: pluggy.PluginManager) -> None:
    """Add a plugin's own hookspecs (pytest's ``pytest_addhooks``).

    Called once every plugin is registered and before hook implementations are checked, so a
    plugin can define hooks for other plugins to implement: the gRPC provider defines
    ``register_grpc_services`` this way. Call ``pm.add_hookspecs(module_or_class)``.
    """


@hookspec
def register_event_stores(register: Register) -> None:
    """Register event store plugins.

    Call ``register(name, factory, options=OptionsStruct)`` once per store. ``factory(options)``
    is called with the validated options Struct (or ``None`` when no options type is given) and
    returns an :class:`svrnty_events.store.EventStore`. ``name`` is what configuration uses:
    ``EventStreaming(store=name)`` or ``[store] plugin = name``.
    """


@hookspec
def register_delivery_providers(register: Register) -> None:
    """Register delivery provider plugins.

    Call ``register(name, factory, options=OptionsStruct)`` once per provider. ``factory(host,
    options)`` returns a :class:`svrnty_events.host.DeliveryProvider`: an object with
    ``async start()``, ``async stop(grace: float)`` and ``endpoints() -> list[str]``. It is built
    and started by the host when the configuration has a ``[delivery.NAME]`` section.
    """


@hookspec
def register_subscription_modes(register: Register) -> None:
    """Register subscription modes.

    Call ``register(name, factory, options=OptionsStruct)`` once per mode. ``factory(subscription,
    options)`` returns a :class:`svrnty_events.modes.Mode` for one subscription; the options come
    from the subscription's ``options`` table. The built-in ``broadcast``, ``exclusive``,
    ``consumer_group`` and ``read_receipt`` modes are registered through this hook too.
    """


@hookspec
def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add subcommands to the ``svrnty-events`` command line.

    ``subparsers`` is the argparse sub-parser collection of the ``svrnty-events`` command: call
    ``parser = subparsers.add_parser(name, help=...)``, add arguments, and
    ``parser.set_defaults(func=run)`` where ``run(args) -> int`` returns the exit code.
    """


@hookspec
def host_started(host: EventStreamingHost) -> Any:
    """Called once the host has started its store, streams, subscriptions and providers.

    May return an awaitable, which the host awaits before ``run()`` yields. Every implementation
    is called; an exception stops the host start.
    """


@hookspec
def host_stopping(host: EventStreamingHost) -> Any:
    """Called when the host begins to stop, before providers and the store are closed.

    May return an awaitable, which the host awaits. Every implementation is called.
    """


# --- observation: what the host and its subscription engine did ------------------------------
#
# Called synchronously, once per batch, after the store has the change; an implementation
# returns nothing and must be quick (count, record, start a span). A host whose plugins
# implement none of them skips the calls altogether. An exception propagates to the code that
# appended or settled, after the store applied the change.


@hookspec
def events_appended(stream: str, events: Sequence[RecordedEvent]) -> None:
    """Events were appended to ``stream`` (by a command or ``host.publish``), as the store
    returned them: with sequences and partitions. An event whose id the stream already had
    (a deduplicated retry) is among them."""


@hookspec
def events_delivered(subscription: str, consumer_id: str,
                     deliveries: Sequence[Delivery]) -> None:
    """``deliveries`` were handed to a consumer's code (in-process, or a delivery provider's
    fetch), each with its ``attempt`` (1 = first delivery, more = a redelivery)."""


@hookspec
def events_acked(subscription: str, consumer_id: str, deliveries: Sequence[Delivery]) -> None:
    """A consumer acked ``deliveries`` (explicitly, automatically or by processing them once).
    At-most-once deliveries, settled when handed over, are not reported here."""


@hookspec
def events_nacked(subscription: str, consumer_id: str, deliveries: Sequence[Delivery],
                  delay: float) -> None:
    """A consumer nacked ``deliveries``: they are redelivered after ``delay`` seconds. A nack
    of a delivery on its last attempt dead-letters it instead (``events_dead_lettered``)."""


@hookspec
def events_dead_lettered(subscription: str, consumer_id: str,
                         events: Sequence[RecordedEvent], reason: str) -> None:
    """``events`` were moved to the subscription's dead-letter queue: nacked on their last
    attempt, dead-lettered by the consumer, or claimed again past their delivery attempts."""


@hookspec
def consumer_joined(subscription: str, consumer_id: str) -> None:
    """A consumer was registered with ``subscription``."""


@hookspec
def consumer_left(subscription: str, consumer_id: str, reason: str) -> None:
    """A consumer was unregistered (closed, replaced, heartbeat expired, host stopping)."""


# --- tracing: context around running a command and around an append --------------------------
#
# Each implementation may return a context manager (or None). The host enters every one returned
# around the work, innermost last, in the task that does it (so a context variable set on entry,
# an OpenTelemetry span made current, is seen by what runs inside). An exception of the work is
# passed to each manager's ``__exit__`` and propagates. A host whose plugins implement neither
# skips the calls.


@hookspec
def command_context(command: Any, command_name: str, stream: str,
                    workflow_id: str | None) -> Any:
    """A context manager to enter around running ``command`` (its handler and the append of
    what it emitted), or None. ``workflow_id`` is None for a command that starts a workflow."""


@hookspec
def publish_context(stream: str, events: Sequence[RecordedEvent]) -> Any:
    """A context manager to enter around appending ``events`` to ``stream``, or None. It is
    entered before the store has them, so it may add entries to each event's ``headers`` (each
    event has a dict of its own), e.g. a W3C ``traceparent``."""
