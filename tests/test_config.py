"""Configuration: the Python builder and TOML files map to the same types and are validated when
the host is built, before anything starts; every error names the path of the culprit."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from svrnty_events import (
    Backoff,
    DeliverySemantics,
    EventStreaming,
    StreamScope,
    StreamType,
    SubscriptionMode,
    Workflow,
)
from svrnty_events.config import HostConfig, StreamConfig, SubscriptionConfig, load_toml
from svrnty_events.errors import ConfigError

from .support import NoDedupStore, RecordingStore, store_plugin

FULL_TOML = """\
log_level = "debug"

[store]
plugin = "memory"
max_events_per_stream = 1000

[[streams]]
name = "users"
type = "ephemeral"
delivery_semantics = "at_least_once"

[[streams]]
name = "ledger"
type = "persistent"
delivery_semantics = "exactly_once"
scope = "cross_service"
retention_max_count = 50000
partitions = 8

[[subscriptions]]
name = "analytics"
stream = "users"
mode = "broadcast"

[[subscriptions]]
name = "billing"
stream = "ledger"
mode = "consumer_group"
event_types = ["Credited", "Debited"]
visibility_timeout = 12.5
max_delivery_attempts = 3
backoff = "exponential"
window = 10
"""


class LedgerWorkflow(Workflow):
    pass


def builder_equivalent() -> EventStreaming:
    streaming = EventStreaming(store="memory", store_options={"max_events_per_stream": 1000})
    streaming.config.log_level = "debug"
    streaming.add_stream("users", type=StreamType.EPHEMERAL,
                         delivery_semantics=DeliverySemantics.AT_LEAST_ONCE)
    streaming.add_stream(LedgerWorkflow, type="persistent",
                         delivery_semantics=DeliverySemantics.EXACTLY_ONCE,
                         scope=StreamScope.CROSS_SERVICE, retention_max_count=50000,
                         partitions=8)
    streaming.add_subscription("users", "analytics", mode=SubscriptionMode.BROADCAST)
    streaming.add_subscription(LedgerWorkflow, "billing", mode=SubscriptionMode.CONSUMER_GROUP,
                               event_types=["Credited", "Debited"], visibility_timeout=12.5,
                               max_delivery_attempts=3, backoff="exponential", window=10)
    return streaming


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "svrnty-events.toml"
    path.write_text(text)
    return path


def config_error(tmp_path: Path, text: str) -> ConfigError:
    """The ConfigError of a TOML file, whether raised on load or when the host is built."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        EventStreaming.from_toml(path, load_entrypoints=False, plugins=[store_plugin()]) \
            .build_host()
    assert info.value.source == str(path)
    return info.value


# --- the two ways in -------------------------------------------------------------------------


def test_toml_and_builder_give_the_same_config(tmp_path: Path) -> None:
    from_file = EventStreaming.from_toml(write(tmp_path, FULL_TOML))
    assert isinstance(from_file.config, HostConfig)
    assert from_file.config == builder_equivalent().config
    billing = from_file.config.subscriptions[1]
    assert billing.backoff == "exponential" and billing.visibility_timeout == 12.5
    assert from_file.config.streams[1].type is StreamType.PERSISTENT


async def test_toml_config_runs(tmp_path: Path) -> None:
    streaming = EventStreaming.from_toml(write(tmp_path, FULL_TOML))
    async with streaming.run() as host:
        assert set(host.streams) == {"users", "ledger"}
        assert host.store.options.max_events_per_stream == 1000
        assert (await host.stream_info("ledger")).type == "persistent"
        assert host.engine.runtime("billing").mode.partitions == 8


def test_consumer_group_partitions_that_contradict_the_stream_name_both(tmp_path: Path) -> None:
    streaming = EventStreaming()
    streaming.add_stream("orders", type="persistent", partitions=4)
    streaming.add_subscription("orders", "billing", mode="consumer_group",
                               options={"partitions": 8})
    with pytest.raises(ConfigError) as info:
        streaming.build_host()
    assert str(info.value) == (
        'subscriptions[0].options.partitions: 8 contradicts streams[0].partitions = 4 (stream '
        '"orders"): partitions belong to the stream; drop the option or set it to 4')
    streaming.config.subscriptions[0].options["partitions"] = 4
    streaming.build_host()  # agreeing is fine
    bad = EventStreaming()
    bad.add_stream("orders", partitions=0)
    with pytest.raises(ConfigError, match=r"^streams\[0\]\.partitions: must be >= 1 and <= 1024$"):
        bad.build_host()


def test_store_options_beside_or_under_options_are_the_same() -> None:
    a = load_toml_text('[store]\nplugin = "memory"\nmax_events_per_stream = 5\n')
    b = load_toml_text('[store]\nplugin = "memory"\noptions = { max_events_per_stream = 5 }\n')
    assert a == b
    assert a.store.options == {"max_events_per_stream": 5}


def load_toml_text(text: str, tmp: Path | None = None) -> HostConfig:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.toml"
        path.write_text(text)
        return load_toml(path)


def test_defaults() -> None:
    config = load_toml_text('[[streams]]\nname = "s"\n[[subscriptions]]\nname = "x"\n'
                            'stream = "s"\n')
    assert config.store.plugin == "memory"
    assert config.log_level == "info"
    assert config.delivery == {}
    assert config.streams[0] == StreamConfig(name="s")
    sub = config.subscriptions[0]
    assert sub == SubscriptionConfig(name="x", stream="s")
    assert (sub.mode, sub.visibility_timeout, sub.max_delivery_attempts, sub.window) == \
        ("broadcast", 30.0, 5, 100)


def test_exponential_backoff_is_capped() -> None:
    sub = SubscriptionConfig(name="x", stream="s", backoff=Backoff.EXPONENTIAL,
                             redelivery_delay=1.0, backoff_multiplier=3.0,
                             max_redelivery_delay=20.0)
    assert [sub.redelivery_delay_for(n) for n in (1, 2, 3, 4)] == [1.0, 3.0, 9.0, 20.0]
    fixed = SubscriptionConfig(name="x", stream="s", redelivery_delay=2.5)
    assert [fixed.redelivery_delay_for(n) for n in (1, 5)] == [2.5, 2.5]


# --- errors naming the path --------------------------------------------------------------------


@pytest.mark.parametrize(("toml", "message"), [
    ('[[streams]]\nname = "s"\n[[subscriptions]]\nname = "a"\nstream = "s"\n'
     '[[subscriptions]]\nname = "b"\nstream = "s"\nvisibility_timeout = "30s"\n',
     "subscriptions[1].visibility_timeout: expected float, got str"),
    ('[[streams]]\nname = "s"\ntype = "forever"\n',
     "streams[0].type: invalid enum value 'forever'"),
    ('[[streams]]\ntype = "persistent"\n', "streams[0].name: required field is missing"),
    ('[[streams]]\nname = "s"\n[[subscriptions]]\nname = "a"\nstream = "s"\n'
     "visiblity_timeout = 3.0\n", "subscriptions[0].visiblity_timeout: unknown field"),
    ('[[subscriptions]]\nname = "a"\nstream = "s"\nevent_types = "UserAdded"\n',
     "subscriptions[0].event_types: expected array, got str"),
    ('[[streams]]\nname = "s"\nretention_max_count = 1.5\n',
     "streams[0].retention_max_count: expected int | null, got float"),
    ('log_level = "loud"\n', "log_level: invalid enum value 'loud'"),
    ("streams = 3\n", "streams: expected array, got int"),
    ('[stream]\nname = "s"\n', "stream: unknown field"),
    ('[delivery]\ngrpc = 6000\n', "delivery.grpc: expected a table, got int"),
])
def test_type_errors_name_the_path(tmp_path: Path, toml: str, message: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        EventStreaming.from_toml(path)
    assert str(info.value) == f"{path}: {message}"
    assert info.value.path == message.split(":")[0]


def test_builder_type_error_names_the_path() -> None:
    streaming = EventStreaming()
    streaming.add_stream("users")
    streaming.add_subscription("users", "a")
    with pytest.raises(ConfigError) as info:
        streaming.add_subscription("users", "b", visibility_timeout="30s")
    assert str(info.value) == "subscriptions[1].visibility_timeout: expected float, got str"
    with pytest.raises(ConfigError, match=r"^streams\[1\]\.delivery_semantics: invalid enum"):
        streaming.add_stream("orders", delivery_semantics="twice")
    # nothing half-added
    assert [s.name for s in streaming.config.subscriptions] == ["a"]
    assert [s.name for s in streaming.config.streams] == ["users"]


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"^{missing}: file not found$"):
        EventStreaming.from_toml(missing)
    broken = write(tmp_path, '[[streams]\nname = "s"\n')
    with pytest.raises(ConfigError, match=f"^{broken}: invalid TOML: "):
        EventStreaming.from_toml(broken)


@pytest.mark.parametrize(("toml", "message"), [
    ('[[streams]]\nname = "users"\n[[subscriptions]]\nname = "a"\nstream = "users"\n'
     '[[subscriptions]]\nname = "b"\nstream = "userz"\n',
     'subscriptions[1].stream: unknown stream "userz"; streams: users'),
    ('[[subscriptions]]\nname = "a"\nstream = "users"\n',
     'subscriptions[0].stream: unknown stream "users"; streams: none'),
    ('[[streams]]\nname = "users"\n[[streams]]\nname = "orders"\n[[streams]]\nname = "users"\n',
     'streams[2].name: duplicate stream name "users"'),
    ('[[streams]]\nname = "users"\n[[subscriptions]]\nname = "a"\nstream = "users"\n'
     '[[subscriptions]]\nname = "a"\nstream = "users"\n',
     'subscriptions[1].name: duplicate subscription name "a"'),
    ('[[streams]]\nname = "users"\ndelivery_semantics = "exactly_once"\n',
     "streams[0].delivery_semantics: exactly_once needs a persistent stream"),
    ('[[streams]]\nname = "users"\n[[subscriptions]]\nname = "a"\nstream = "users"\n'
     "visibility_timeout = 0\n", "subscriptions[0].visibility_timeout: must be > 0"),
    ('[[streams]]\nname = "users"\n[[subscriptions]]\nname = "a"\nstream = "users"\n'
     "heartbeat_timeout = -1.0\n", "subscriptions[0].heartbeat_timeout: must be > 0"),
    ('[[streams]]\nname = "users"\n[[subscriptions]]\nname = "a"\nstream = "users"\n'
     "window = 0\n", "subscriptions[0].window: must be >= 1"),
    ('[[streams]]\nname = "users"\n[[subscriptions]]\nname = "a"\nstream = "users"\n'
     "max_delivery_attempts = -2\n", "subscriptions[0].max_delivery_attempts: must be >= 0"),
    ('[store]\nplugin = "memory"\nmax_events_per_stream = "lots"\n',
     "store.max_events_per_stream: expected int, got str"),
    ('[store]\nplugin = "memory"\ncolour = "blue"\n', "store.colour: unknown field"),
])
def test_semantic_errors_name_the_path(tmp_path: Path, toml: str, message: str) -> None:
    error = config_error(tmp_path, toml)
    assert str(error).startswith(f"{tmp_path / 'svrnty-events.toml'}: {message}")


def test_exactly_once_refused_by_a_store_that_cannot_deduplicate() -> None:
    streaming = EventStreaming(store="nodedup", load_entrypoints=False,
                               plugins=[store_plugin("nodedup", NoDedupStore)])
    streaming.add_stream("users")
    streaming.add_stream("ledger", type="persistent", delivery_semantics="exactly_once")
    with pytest.raises(ConfigError) as info:
        streaming.build_host()
    assert str(info.value) == ('streams[1].delivery_semantics: store "nodedup" cannot '
                               "deduplicate appends, so it cannot give exactly_once")

    # the same stream on a store that deduplicates is accepted
    accepted = EventStreaming(load_entrypoints=False, plugins=[store_plugin()])
    accepted.add_stream("ledger", type="persistent", delivery_semantics="exactly_once")
    assert accepted.build_host().streams["ledger"].delivery_semantics == "exactly_once"


def test_command_of_a_workflow_without_stream_is_refused() -> None:
    class OrphanWorkflow(Workflow):
        pass

    class Adopt(msgspec.Struct):
        name: str

    streaming = EventStreaming(load_entrypoints=False, plugins=[store_plugin()])

    @streaming.command_handler(Adopt, workflow=OrphanWorkflow)
    def adopt(command: Adopt, workflow: OrphanWorkflow) -> None:
        pass

    with pytest.raises(ConfigError) as info:
        streaming.build_host()
    assert str(info.value) == ("streams: command adopt uses workflow OrphanWorkflow, which has "
                               "no stream: call add_stream(OrphanWorkflow)")


async def test_errors_are_raised_before_anything_starts() -> None:
    RecordingStore.started.clear()
    streaming = EventStreaming(load_entrypoints=False,
                               plugins=[store_plugin(factory=RecordingStore)])
    streaming.add_stream("users")
    streaming.add_subscription("users", "a")
    streaming.add_subscription("users", "b", mode="nope")
    with pytest.raises(Exception, match=r"subscriptions\[1\]\.mode"):
        async with streaming.run():
            pytest.fail("run() must not yield with an invalid configuration")
    assert RecordingStore.started == []

    # a valid configuration does start the store (so the check above can fail)
    streaming.config.subscriptions.pop()
    async with streaming.run():
        assert len(RecordingStore.started) == 1
