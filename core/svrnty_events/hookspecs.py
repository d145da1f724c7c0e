"""The hookspecs of svrnty-events, and nothing else.

Contribution hooks take a ``register`` callback; the kernel owns it, so type checks and
duplicate-name errors live in one place. Hooks are synchronous: they return factories, and the
async work lives on the objects those factories build. Arguments are only ever added to a
hookspec; an implementation may accept fewer than the spec offers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import argparse

    from .host import EventStreamingHost

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
