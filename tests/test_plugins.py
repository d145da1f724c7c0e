"""The plugin manager, entry-point loading, the registry and its errors (in-process)."""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec
import pluggy
import pytest

from svrnty_events import EventStreaming, Mode, hookimpl
from svrnty_events import cli as svrnty_cli
from svrnty_events.errors import (
    DuplicateNameError,
    NoStoreInstalledError,
    PluginImportError,
    PluginValidationError,
    UnknownPluginError,
)
from svrnty_events.modes import Exclusive
from svrnty_events.plugins import collect_registry, get_plugin_manager, list_plugins

from .support import TIMEOUT, plugin, store_plugin, within


def installed_distribution(root: Path, monkeypatch: pytest.MonkeyPatch, *, dist: str,
                           version: str, entry_point: str, module: str, source: str) -> None:
    """Lay out an installed distribution (module + .dist-info with an entry point) in ``root``
    and put ``root`` on sys.path, which is all importlib.metadata needs to discover it."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[svrnty_events]\n{entry_point} = {module}\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, module, raising=False)


# --- the manager ------------------------------------------------------------------------------


def test_defaults_only_when_entry_points_are_off() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    assert [pm.get_name(p) for p in pm.get_plugins()] == ["svrnty_events.modes"]
    registry = collect_registry(pm)
    assert sorted(registry.modes) == ["broadcast", "consumer_group", "exclusive", "read_receipt"]
    assert registry.stores == {} and registry.providers == {}


def test_hookimpl_is_exported_from_the_package_root() -> None:
    from svrnty_events import hookspecs

    assert hookimpl is hookspecs.hookimpl
    assert hookimpl.project_name == "svrnty_events"


# "unset = all installed" is shown in test_install.py, in an environment whose plugins are known
@pytest.mark.parametrize(("selection", "loaded"), [
    ("", False), ("memory", True), ("other", False), ("other, memory", True)])
def test_env_var_filters_entry_points(monkeypatch: pytest.MonkeyPatch, selection: str,
                                      loaded: bool) -> None:
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", selection)
    pm = get_plugin_manager()
    assert (pm.get_plugin("memory") is not None) is loaded
    # the default plugins are never filtered out
    assert pm.get_plugin("svrnty_events.modes") is not None


def test_entry_point_plugin_is_listed_with_its_distribution(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed_distribution(tmp_path, monkeypatch, dist="svrnty-events-acme", version="2.0.1",
                           entry_point="acme", module="svrnty_events_acme_test", source=(
                               "from svrnty_events import hookimpl\n"
                               "from svrnty_events.modes import Broadcast\n"
                               "@hookimpl\n"
                               "def register_subscription_modes(register):\n"
                               "    register('fan_out', Broadcast)\n"))
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "acme")
    pm = get_plugin_manager()
    infos = {i.name: i.to_dict() for i in list_plugins(pm)}
    assert infos["acme"] == {"name": "acme", "distribution": "svrnty-events-acme",
                             "version": "2.0.1", "hooks": ["register_subscription_modes"],
                             "registered": {"subscription mode": ["fan_out"]}}
    assert infos["svrnty_events.modes"]["registered"] == {
        "subscription mode": ["broadcast", "consumer_group", "exclusive", "read_receipt"]}


def test_in_process_plugin_is_listed_without_distribution() -> None:
    pm = get_plugin_manager(load_entrypoints=False, plugins=[store_plugin(name="local")])
    info = {i.name: i for i in list_plugins(pm)}["local"]
    assert (info.distribution, info.version) == (None, None)
    assert info.hooks == ["register_event_stores"]
    assert info.registered == {"event store": ["memory"]}


def test_implementation_may_take_fewer_arguments_than_the_spec() -> None:
    calls: list[str] = []
    pm = get_plugin_manager(load_entrypoints=False, plugins=[
        plugin("quiet", register_commands=lambda: calls.append("commands"))])
    pm.hook.register_commands(subparsers=None)
    assert calls == ["commands"]


def test_plugin_can_add_hookspecs_for_other_plugins() -> None:
    class Specs:
        @pluggy.HookspecMarker("svrnty_events")
        def register_widgets(self, register):  # type: ignore[no-untyped-def]
            """A hook another plugin defines."""

    def add_hookspecs(pm):  # type: ignore[no-untyped-def]
        pm.add_hookspecs(Specs)

    widgets: list[str] = []
    implementer = plugin("widget-maker",
                         register_widgets=lambda register: register("gear"))
    definer = plugin("widget-host", add_hookspecs=add_hookspecs)
    pm = get_plugin_manager(load_entrypoints=False, plugins=[implementer, definer])
    pm.hook.register_widgets(register=widgets.append)
    assert widgets == ["gear"]

    # without the plugin that defines the hook, the implementation is an unknown hook
    with pytest.raises(PluginValidationError,
                       match='plugin "widget-maker" implements an unknown hook'):
        get_plugin_manager(load_entrypoints=False, plugins=[implementer])


# --- errors that name the culprit ----------------------------------------------------------


def test_plugin_that_fails_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    installed_distribution(tmp_path, monkeypatch, dist="svrnty-events-broken", version="0.1",
                           entry_point="broken", module="svrnty_events_broken_test",
                           source="import a_dependency_that_is_not_installed\n")
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "broken,memory")
    with pytest.raises(PluginImportError) as info:
        get_plugin_manager()
    assert str(info.value) == ('Error importing plugin "broken": ModuleNotFoundError: '
                               "No module named 'a_dependency_that_is_not_installed'")
    assert info.value.plugin == "broken"

    # the command line reports it the same way, and exits non-zero
    assert svrnty_cli.main(["plugins"]) == 2
    assert 'Error importing plugin "broken": ModuleNotFoundError' in capsys.readouterr().err

    # deselected, the broken plugin is not even imported
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "memory")
    assert get_plugin_manager().get_plugin("memory") is not None
    assert "svrnty_events_broken_test" not in sys.modules


def test_entry_point_hookimpl_that_does_not_match_its_spec(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed_distribution(tmp_path, monkeypatch, dist="svrnty-events-odd", version="0.1",
                           entry_point="odd", module="svrnty_events_odd_test", source=(
                               "from svrnty_events import hookimpl\n"
                               "@hookimpl\n"
                               "def register_event_stores(register, flavour):\n"
                               "    pass\n"))
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "odd")
    with pytest.raises(PluginValidationError) as info:
        get_plugin_manager()
    message = str(info.value)
    assert message.startswith('plugin "odd" does not match its hookspec')
    assert "register_event_stores" in message and "'flavour'" in message


def test_in_process_hookimpl_that_does_not_match_its_spec() -> None:
    bad = plugin("bad-provider", register_delivery_providers=lambda register, host: None)
    with pytest.raises(PluginValidationError) as info:
        EventStreaming(plugins=[bad], load_entrypoints=False).build_host()
    assert str(info.value).startswith('plugin "bad-provider" does not match its hookspec')
    assert "register_delivery_providers" in str(info.value) and "'host'" in str(info.value)


def test_hookimpl_of_an_unknown_hook() -> None:
    typo = plugin("typo", register_event_store=lambda register: None)
    with pytest.raises(PluginValidationError) as info:
        get_plugin_manager(load_entrypoints=False, plugins=[typo])
    assert str(info.value).startswith('plugin "typo" implements an unknown hook')
    assert "register_event_store'" in str(info.value)


def test_two_plugins_register_the_same_store_name() -> None:
    pm = get_plugin_manager(load_entrypoints=False, plugins=[
        store_plugin(name="first-stores"), store_plugin(name="second-stores")])
    with pytest.raises(DuplicateNameError) as info:
        collect_registry(pm)
    message = str(info.value)
    assert message.startswith('event store "memory" is registered by two plugins: "')
    assert '"first-stores"' in message and '"second-stores"' in message
    assert {info.value.first, info.value.second} == {"first-stores", "second-stores"}
    assert message.endswith("uninstall one of them or select one with SVRNTY_EVENTS_PLUGINS")


def test_plugin_registering_a_built_in_mode_name_is_refused() -> None:
    clash = plugin("my-modes",
                   register_subscription_modes=lambda register: register("broadcast", Mode))
    with pytest.raises(DuplicateNameError) as info:
        EventStreaming(plugins=[store_plugin(), clash], load_entrypoints=False).build_host()
    assert str(info.value).startswith('subscription mode "broadcast" is registered by two plugins')
    assert {info.value.first, info.value.second} == {"svrnty_events.modes", "my-modes"}
    assert '"svrnty_events.modes"' in str(info.value) and '"my-modes"' in str(info.value)


def test_same_name_in_different_kinds_is_fine() -> None:
    both = plugin("both", register_subscription_modes=lambda register: register("memory", Mode))
    registry = collect_registry(get_plugin_manager(load_entrypoints=False,
                                                   plugins=[store_plugin(), both]))
    assert registry.stores["memory"].plugin == "test-stores"
    assert registry.modes["memory"].plugin == "both"


@pytest.mark.parametrize(("args", "message"), [
    (("", Mode), 'plugin "sloppy" registered a subscription mode with an invalid name: \'\''),
    (("spin", "not a factory"),
     'plugin "sloppy" registered subscription mode "spin" with a factory that is not callable'),
])
def test_register_checks_name_and_factory(args: tuple, message: str) -> None:
    sloppy = plugin("sloppy", register_subscription_modes=lambda register: register(*args))
    with pytest.raises(PluginValidationError, match=message.replace("(", r"\(")):
        collect_registry(get_plugin_manager(load_entrypoints=False, plugins=[sloppy]))


def test_exception_in_a_hook_is_not_swallowed() -> None:
    def register_event_stores(register):  # type: ignore[no-untyped-def]
        raise RuntimeError("store plugin exploded")

    with pytest.raises(RuntimeError, match="store plugin exploded"):
        EventStreaming(plugins=[plugin("boom", register_event_stores=register_event_stores)],
                       load_entrypoints=False).build_host()


def test_no_store_installed_names_the_package() -> None:
    with pytest.raises(NoStoreInstalledError) as info:
        EventStreaming(load_entrypoints=False).build_host()
    assert "pip install svrnty-events-memory" in str(info.value)


def test_unknown_store_lists_available_stores() -> None:
    streaming = EventStreaming(store="sqlite", load_entrypoints=False, plugins=[
        store_plugin("memory", name="a"), store_plugin("scratchpad", name="b")])
    with pytest.raises(UnknownPluginError) as info:
        streaming.build_host()
    assert str(info.value) == ('store.plugin: unknown event store "sqlite"; '
                               "available: memory, scratchpad")
    assert info.value.available == ["memory", "scratchpad"]


def test_unknown_mode_lists_available_modes() -> None:
    streaming = EventStreaming(load_entrypoints=False, plugins=[store_plugin()])
    streaming.add_stream("users")
    streaming.add_subscription("users", "audit")
    streaming.add_subscription("users", "billing", mode="round_robin")
    with pytest.raises(UnknownPluginError) as info:
        streaming.build_host()
    assert str(info.value) == ('subscriptions[1].mode: unknown subscription mode "round_robin"; '
                               "available: broadcast, consumer_group, exclusive, read_receipt")


def test_unknown_provider_lists_available_providers() -> None:
    class Provider:
        def __init__(self, host, options):  # type: ignore[no-untyped-def]
            pass

    providers = plugin("webhooks", register_delivery_providers=lambda register: (
        register("webhook", Provider), register("sse", Provider)))
    streaming = EventStreaming(load_entrypoints=False, plugins=[store_plugin(), providers])
    streaming.add_delivery("grpc", port=6000)
    with pytest.raises(UnknownPluginError) as info:
        streaming.build_host()
    assert str(info.value) == ('delivery.grpc: unknown delivery provider "grpc"; '
                               "available: sse, webhook")


# --- plugins that take part: options, modes, providers, lifecycle ---------------------------


class QuorumOptions(msgspec.Struct, forbid_unknown_fields=True):
    quorum: int = 1


class FirstOnly(Exclusive):
    """A third-party mode: only the consumer named in its options takes events."""

    def accepts(self, consumer_id, event):  # type: ignore[no-untyped-def]
        return consumer_id == self.options.chosen


class FirstOnlyOptions(msgspec.Struct, forbid_unknown_fields=True):
    chosen: str


async def test_third_party_mode_with_options_decides_delivery() -> None:
    modes = plugin("picky", register_subscription_modes=lambda register: register(
        "first_only", FirstOnly, options=FirstOnlyOptions))
    streaming = EventStreaming(load_entrypoints=False, plugins=[store_plugin(), modes])
    streaming.add_stream("jobs")
    streaming.add_subscription("jobs", "workers", mode="first_only", options={"chosen": "b"})
    async with streaming.run() as host:
        from svrnty_events.events import record

        await host.publish("jobs", [record({"n": 1}, stream="jobs", correlation_id="w")],
                           external=False)
        async with host.subscribe("workers", "a") as a, host.subscribe("workers", "b") as b:
            delivery = await b.next(timeout=TIMEOUT)
            assert delivery is not None and delivery.event == {"n": 1}
            assert await a.next(timeout=0.2) is None


def test_mode_options_are_validated_against_the_plugin_struct() -> None:
    streaming = EventStreaming(load_entrypoints=False, plugins=[store_plugin()])
    streaming.add_stream("users")
    streaming.add_subscription("users", "groups", mode="consumer_group",
                               options={"sync_interval": "often"})
    with pytest.raises(Exception, match=r"subscriptions\[0\]\.options\.sync_interval: "
                                        "expected float, got str"):
        streaming.build_host()


def test_mode_without_options_refuses_options() -> None:
    streaming = EventStreaming(load_entrypoints=False, plugins=[store_plugin()])
    streaming.add_stream("users")
    streaming.add_subscription("users", "fan", mode="broadcast", options={"fanout": 3})
    with pytest.raises(Exception, match=r"subscriptions\[0\]\.options\.fanout: "
                                        "this plugin takes no options"):
        streaming.build_host()


async def test_provider_is_built_started_and_stopped_by_the_host() -> None:
    events: list[str] = []

    class Provider:
        def __init__(self, host, options):  # type: ignore[no-untyped-def]
            self.host, self.options = host, options

        async def start(self) -> None:
            events.append(f"start quorum={self.options.quorum}")

        async def stop(self, grace: float) -> None:
            events.append("stop")

        def endpoints(self) -> list[str]:
            return [f"test://quorum/{self.options.quorum}"]

    providers = plugin("test-providers", register_delivery_providers=lambda register: register(
        "quorum", Provider, options=QuorumOptions))
    streaming = EventStreaming(load_entrypoints=False, plugins=[store_plugin(), providers])
    streaming.add_delivery("quorum", quorum=3)
    async with streaming.run() as host:
        assert events == ["start quorum=3"]
        assert host.providers["quorum"].host is host
        assert host.endpoints() == ["test://quorum/3"]
        assert "endpoint:      test://quorum/3" in host.banner()
    assert events == ["start quorum=3", "stop"]


async def test_lifecycle_hooks_see_a_working_host() -> None:
    seen: list[str] = []

    async def host_started(host):  # type: ignore[no-untyped-def]
        seen.append(f"started: {(await host.stream_info('users')).length} events")

    async def host_stopping(host):  # type: ignore[no-untyped-def]
        # the store is still open while plugins stop
        seen.append(f"stopping: {(await host.stream_info('users')).length} events")

    lifecycle = plugin("lifecycle", host_started=host_started, host_stopping=host_stopping)
    streaming = EventStreaming(load_entrypoints=False, plugins=[store_plugin(), lifecycle])
    streaming.add_stream("users")
    async with streaming.run() as host:
        assert seen == ["started: 0 events"]
        from svrnty_events.events import record

        await within(host.publish("users", [record({"a": 1}, stream="users",
                                                   correlation_id="w")], external=False))
    assert seen == ["started: 0 events", "stopping: 1 events"]


async def test_failing_host_started_stops_the_host() -> None:
    from .support import RecordingStore

    def host_started(host):  # type: ignore[no-untyped-def]
        raise RuntimeError("not today")

    RecordingStore.started.clear()
    streaming = EventStreaming(load_entrypoints=False, plugins=[
        store_plugin(factory=RecordingStore), plugin("grumpy", host_started=host_started)])
    with pytest.raises(RuntimeError, match="not today"):
        async with streaming.run():
            pytest.fail("run() must not yield when a host_started hook raises")
    assert len(RecordingStore.started) == 1 and RecordingStore.started[0].closed
