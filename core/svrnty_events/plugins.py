"""The plugin manager factory, entry-point loading and the registry of what plugins registered."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import (
    DuplicateNameError,
    NoStoreInstalledError,
    PluginImportError,
    PluginValidationError,
    UnknownPluginError,
)

if sys.version_info >= (3, 10):
    from importlib import metadata as importlib_metadata
else:  # pragma: no cover
    import importlib_metadata

ENTRY_POINT_GROUP = "svrnty_events"
PLUGINS_ENV = "SVRNTY_EVENTS_PLUGINS"

#: plugins that ship with the kernel and are always registered
DEFAULT_PLUGINS = ("svrnty_events.modes",)

KINDS = ("event store", "delivery provider", "subscription mode")

#: the hooks through which the host and its engine report what they did (see hookspecs.py)
OBSERVATION_HOOKS = ("events_appended", "events_delivered", "events_acked", "events_nacked",
                     "events_dead_lettered", "consumer_joined", "consumer_left")
CONTEXT_HOOKS = ("command_context", "publish_context")


@dataclass(frozen=True)
class Registration:
    kind: str
    name: str
    factory: Any
    options: type | None
    plugin: str


@dataclass
class Registry:
    """What the installed plugins registered, by kind and name."""

    stores: dict[str, Registration] = field(default_factory=dict)
    providers: dict[str, Registration] = field(default_factory=dict)
    modes: dict[str, Registration] = field(default_factory=dict)

    def of_kind(self, kind: str) -> dict[str, Registration]:
        return {"event store": self.stores, "delivery provider": self.providers,
                "subscription mode": self.modes}[kind]

    def get(self, kind: str, name: str, *, path: str = "",
            source: str | None = None) -> Registration:
        regs = self.of_kind(kind)
        try:
            return regs[name]
        except KeyError:
            if kind == "event store" and not regs:
                raise NoStoreInstalledError() from None
            raise UnknownPluginError(kind, name, regs, path, source) from None

    def by_plugin(self, plugin: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for kind in KINDS:
            names = [r.name for r in self.of_kind(kind).values() if r.plugin == plugin]
            if names:
                out[kind] = sorted(names)
        return out


def selected_plugins() -> set[str] | None:
    """The entry-point names SVRNTY_EVENTS_PLUGINS allows: None = all, empty set = none."""
    value = os.environ.get(PLUGINS_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, plus what svrnty-events knows of the plugins it loaded."""

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        #: plugin name -> (distribution, version), for the plugins loaded from entry points
        self.distributions: dict[str, tuple[str, str]] = {}


def get_plugin_manager(load_entrypoints: bool = True,
                       plugins: Iterable[object] = ()) -> pluggy.PluginManager:
    """Build a plugin manager: hookspecs first (so each plugin is validated as it registers),
    then the installed entry points (filtered by SVRNTY_EVENTS_PLUGINS), then the defaults,
    then ``plugins`` given by the caller (e.g. a test's plugin object)."""
    pm = PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        load_entry_points(pm)
    for module_name in DEFAULT_PLUGINS:
        if pm.get_plugin(module_name) is None:
            _register(pm, importlib.import_module(module_name), module_name)
    for plugin in plugins:
        _register(pm, plugin, None)
    pm.hook.add_hookspecs(pm=pm)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginValidationError(
            f'plugin "{plugin_name(pm, exc.plugin)}" implements an unknown hook: {exc}') from None
    return pm


def load_entry_points(pm: pluggy.PluginManager) -> None:
    allowed = selected_plugins()
    for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginImportError(ep.name, exc) from exc
        _register(pm, plugin, ep.name)
        if ep.dist is not None and isinstance(pm, PluginManager):
            pm.distributions[ep.name] = (ep.dist.metadata["Name"], ep.dist.version)


def _distributions(pm: pluggy.PluginManager) -> dict[str, tuple[str, str]]:
    # a manager built elsewhere (a plain pluggy one) knows no distributions
    return pm.distributions if isinstance(pm, PluginManager) else {}


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        # pluggy's error carries the plugin object, not its name
        who = name or pm.get_canonical_name(plugin)
        raise PluginValidationError(
            f'plugin "{who}" does not match its hookspec: {exc}') from None


def observation_hooks(pm: pluggy.PluginManager) -> pluggy.HookRelay | None:
    """``pm.hook`` when a plugin implements an observation hook, else None: the host and its
    engine check for None and skip the calls, so observing costs nothing when nobody does."""
    if any(getattr(pm.hook, name).get_hookimpls() for name in OBSERVATION_HOOKS):
        return pm.hook
    return None


def context_hooks(pm: pluggy.PluginManager) -> pluggy.HookRelay | None:
    """``pm.hook`` when a plugin implements ``command_context`` or ``publish_context``, else
    None (the host then skips them)."""
    if any(getattr(pm.hook, name).get_hookimpls() for name in CONTEXT_HOOKS):
        return pm.hook
    return None


def plugin_name(pm: pluggy.PluginManager, plugin: object) -> str:
    return pm.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))


def collect_registry(pm: pluggy.PluginManager) -> Registry:
    """Call the three contribution hooks; duplicate names raise DuplicateNameError naming both."""
    registry = Registry()
    hooks: list[tuple[str, str]] = [
        ("event store", "register_event_stores"),
        ("delivery provider", "register_delivery_providers"),
        ("subscription mode", "register_subscription_modes"),
    ]
    for kind, hook_name in hooks:
        target = registry.of_kind(kind)
        hook = getattr(pm.hook, hook_name)
        # call each plugin's implementation on its own (still through pluggy, so tracing and
        # hook monitoring see the call) so we know which plugin registered what
        for impl in hook.get_hookimpls():
            owner = plugin_name(pm, impl.plugin)
            others = [p for p in pm.get_plugins() if p is not impl.plugin]
            call = pm.subset_hook_caller(hook_name, remove_plugins=others)

            def register(name: str, factory: Any, *, options: type | None = None,
                         _owner: str = owner, _kind: str = kind, _target: dict = target) -> None:
                if not isinstance(name, str) or not name:
                    raise PluginValidationError(
                        f'plugin "{_owner}" registered a {_kind} with an invalid name: {name!r}')
                if not callable(factory):
                    raise PluginValidationError(
                        f'plugin "{_owner}" registered {_kind} "{name}" with a factory that is '
                        f"not callable: {factory!r}")
                if name in _target:
                    raise DuplicateNameError(_kind, name, _target[name].plugin, _owner)
                _target[name] = Registration(_kind, name, factory, options, _owner)

            call(register=register)
    return registry


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    hooks: list[str]
    registered: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "hooks": self.hooks, "registered": self.registered}


def list_plugins(pm: pluggy.PluginManager, registry: Registry | None = None) -> list[PluginInfo]:
    """Every registered plugin: name, distribution, version, hooks, and what it registered."""
    registry = registry if registry is not None else collect_registry(pm)
    dists = _distributions(pm)
    out = []
    for plugin in pm.get_plugins():
        name = plugin_name(pm, plugin)
        if name in DEFAULT_PLUGINS:
            dist_name, version = "svrnty-events", _version("svrnty-events")
        else:
            dist_name, version = dists.get(name, (None, None))
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append(PluginInfo(name, dist_name, version, hooks, registry.by_plugin(name)))
    return sorted(out, key=lambda p: p.name)


def _version(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None
