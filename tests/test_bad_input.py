"""Bad input fails at once with an error that says what to fix: emitting anything but an Event,
a window below 1 from the API, and (a warning) event-type filters naming no known type."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest

from svrnty_events import Event, EventStreaming, Workflow
from svrnty_events.errors import ConfigError, InvalidEventError

# event type names are global (one class per name in a process): keep them unique


class TollboothCrossed(Event):
    plate: str


class TollboothWorkflow(Workflow):
    pass


class Parcel(msgspec.Struct):  # a Struct, but not an Event
    n: int


class RecordCrossing(msgspec.Struct):
    case: str


class WeighTruck(msgspec.Struct):
    pass


UNKNOWN_OBJECT = object()
BAD_EVENTS: dict[str, Any] = {
    "dict": {"n": 1},
    "object": UNKNOWN_OBJECT,
    "struct": Parcel(n=1),
    "class": TollboothCrossed,
    "none": None,
    "long": "x" * 200,
}
GOT = {
    "dict": "dict: {'n': 1}",
    "object": f"object: {UNKNOWN_OBJECT!r}",
    "struct": f"{__name__}.Parcel: Parcel(n=1)",
    "class": f"the class {__name__}.TollboothCrossed itself, not an instance",
    "none": "NoneType: None",
    "long": "str: '" + "x" * 76 + "...",
}


def tolls() -> EventStreaming:
    streaming = EventStreaming()
    streaming.add_stream(TollboothWorkflow, name="tolls")
    streaming.add_subscription("tolls", "billing", mode="exclusive")

    @streaming.command_handler(RecordCrossing, workflow=TollboothWorkflow)
    async def record_crossing(command: RecordCrossing, workflow: TollboothWorkflow) -> None:
        workflow.emit(TollboothCrossed(plate="AB-123"))  # a valid event first: not appended
        workflow.emit(BAD_EVENTS[command.case])

    @streaming.command_handler(WeighTruck, workflow=TollboothWorkflow, name="weigh")
    def weigh_truck(command: WeighTruck, workflow: TollboothWorkflow) -> None:
        workflow.emit({"kg": 40_000})

    return streaming


@pytest.mark.parametrize("case", sorted(BAD_EVENTS))
async def test_emitting_anything_but_an_event_fails_the_handler_naming_it(case: str):
    async with tolls().run() as host:
        with pytest.raises(InvalidEventError) as caught:
            await host.send(RecordCrossing(case=case))
        assert str(caught.value) == (
            f'command "recordCrossing" (handler {__name__}.tolls.<locals>.record_crossing): '
            f"workflow.emit() takes an instance of an Event subclass, got {GOT[case]}")
        assert isinstance(caught.value, TypeError)
        assert caught.value.value is BAD_EVENTS[case]
        assert (await host.stream_info("tolls")).length == 0


async def test_a_sync_handler_is_named_by_its_operation_name_and_function():
    async with tolls().run() as host:
        with pytest.raises(InvalidEventError) as caught:
            await host.send(WeighTruck())
        assert str(caught.value) == (
            f'command "weigh" (handler {__name__}.tolls.<locals>.weigh_truck): '
            "workflow.emit() takes an instance of an Event subclass, got dict: {'kg': 40000}")
        assert (await host.stream_info("tolls")).length == 0


def test_emit_outside_a_handler_names_the_value():
    with pytest.raises(InvalidEventError) as caught:
        TollboothWorkflow().emit(42)  # type: ignore[arg-type]
    assert str(caught.value) == \
        "workflow.emit() takes an instance of an Event subclass, got int: 42"


# --- window ------------------------------------------------------------------------------------


def file_window_error(tmp_path: Path) -> ConfigError:
    path = tmp_path / "svrnty-events.toml"
    path.write_text('[[streams]]\nname = "tolls"\n[[subscriptions]]\nname = "billing"\n'
                    'stream = "tolls"\nwindow = 0\n')
    with pytest.raises(ConfigError) as caught:
        EventStreaming.from_toml(path).build_host()
    return caught.value


@pytest.mark.parametrize("window", [0, -5])
async def test_a_window_below_one_is_the_same_config_error_as_in_a_file(tmp_path: Path,
                                                                        window: int):
    from_file = file_window_error(tmp_path)
    assert (from_file.path, from_file.message) == ("subscriptions[0].window", "must be >= 1")
    async with tolls().run() as host:
        with pytest.raises(ConfigError) as subscribe:
            host.subscribe("billing", "c1", window=window)
        assert str(subscribe.value) == "subscribe(window): must be >= 1"
        assert subscribe.value.message == from_file.message

        with pytest.raises(ConfigError) as open_consumer:
            await host.open_consumer("billing", "c2", window=window)
        assert str(open_consumer.value) == "open_consumer(window): must be >= 1"
        assert open_consumer.value.message == from_file.message
        assert host.consumers("billing") == []


# --- event-type filters --------------------------------------------------------------------------


def host_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "svrnty_events.host" and r.levelno == logging.WARNING]


async def test_filters_naming_unknown_types_are_reported_at_start(caplog: pytest.LogCaptureFixture):
    streaming = EventStreaming()
    streaming.add_stream("tolls")
    streaming.add_subscription("tolls", "typo", mode="exclusive",
                               event_types=["TollbothCrossed", TollboothCrossed],
                               terminal_event_types=["Zzyzx"])
    streaming.add_subscription("tolls", "known", event_types=["TollboothCrossed"])
    streaming.add_subscription("tolls", "classes", event_types=[TollboothCrossed])
    with caplog.at_level(logging.WARNING, logger="svrnty_events.host"):
        async with streaming.run():
            pass
    assert host_warnings(caplog) == [
        'subscription "typo" filters on event types no known event class has: '
        'event_types "TollbothCrossed" (did you mean "TollboothCrossed"?); '
        'terminal_event_types "Zzyzx" (no known type is close). Harmless if another service '
        "publishes events of these types; otherwise fix the names or register the classes "
        "(register_event_types)"]


async def test_types_the_host_registered_are_known(caplog: pytest.LogCaptureFixture):
    class TollboothOpened(msgspec.Struct):  # a plain Struct the host decodes into
        booth: int

    streaming = EventStreaming()
    streaming.add_stream("tolls")
    streaming.register_event_types(TollboothOpened)
    streaming.add_subscription("tolls", "opening", event_types=["TollboothOpened"])
    with caplog.at_level(logging.WARNING, logger="svrnty_events.host"):
        async with streaming.run():
            pass
    assert host_warnings(caplog) == []
