"""Event type names: one class per type name in a process (a second class of that name in
another module is an error naming both), redefinitions replace, and a host decodes into the
classes it knows first."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from svrnty_events import Event, EventStreaming
from svrnty_events.errors import DuplicateEventTypeError
from svrnty_events.events import EventTypes, decode_payload, lookup_event_type, record
from svrnty_events.testing import collect


class ParcelShipped(Event):
    parcel: str


OurShipped = ParcelShipped  # tests below define local classes named ParcelShipped

def duplicate_message(name: str, first: str, second: str) -> str:
    return (f'event type "{name}" is defined twice: by {first} and by {second}; events carry '
            f'only their type name, so rename one class or set __event_type__ = "..." on it')


def test_a_class_of_the_same_type_name_in_another_module_is_an_error_naming_both():
    with pytest.raises(DuplicateEventTypeError) as caught:
        class ParcelShipped(Event):  # noqa: F811
            __module__, __qualname__ = "carriers.events", "ParcelShipped"  # as another module's
            tracking_number: int

    assert str(caught.value) == duplicate_message(
        "ParcelShipped", f"{__name__}.ParcelShipped", "carriers.events.ParcelShipped")
    assert isinstance(caught.value, ValueError)
    assert (caught.value.first, caught.value.second) == \
        (f"{__name__}.ParcelShipped", "carriers.events.ParcelShipped")
    # the first class keeps the name: its deliveries still decode
    assert lookup_event_type("ParcelShipped") is OurShipped
    assert decode_payload("ParcelShipped", b'{"parcel": "p-1"}') == OurShipped(parcel="p-1")


def test_an_explicit_type_name_avoids_the_clash():
    def define_elsewhere() -> type[Event]:
        class ParcelShipped(Event):
            __module__ = "carriers.events"
            __event_type__ = "carriers.ParcelShipped"
            tracking_number: int
        return ParcelShipped

    theirs = define_elsewhere()
    assert decode_payload("carriers.ParcelShipped", b'{"tracking_number": 7}') == \
        theirs(tracking_number=7)
    assert lookup_event_type("ParcelShipped") is OurShipped


def test_a_second_class_of_the_name_elsewhere_in_the_same_module_is_an_error():
    with pytest.raises(DuplicateEventTypeError) as caught:
        class ParcelShipped(Event):  # noqa: F811
            __qualname__ = "Holder.ParcelShipped"  # as if nested in a module-level class
            weight: int

    assert str(caught.value) == duplicate_message(
        "ParcelShipped", f"{__name__}.ParcelShipped", f"{__name__}.Holder.ParcelShipped")


def test_a_class_defined_in_a_function_is_replaced_when_defined_again():
    def define() -> type[Event]:
        class Weighed(Event):
            grams: int
        return Weighed

    first, second = define(), define()
    assert first is not second and lookup_event_type("Weighed") is second
    assert type(decode_payload("Weighed", b'{"grams": 1}')) is second


@pytest.fixture
def module_files(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for name in ("Delivered",):
        Event._registry.pop(name, None)
    for name in [n for n in sys.modules if n.startswith("fixture_shop")]:
        del sys.modules[name]


def import_file(path: Path, module_name: str) -> object:
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def test_one_file_imported_under_two_module_names_is_one_definition(module_files: Path):
    source = "from svrnty_events import Event\n\nclass Delivered(Event):\n    parcel: str\n"
    (module_files / "shop_events.py").write_text(source)
    (module_files / "other_events.py").write_text(source)
    first = import_file(module_files / "shop_events.py", "fixture_shop.events")
    again = import_file(module_files / "shop_events.py", "fixture_shop_events")
    assert lookup_event_type("Delivered") is again.Delivered  # type: ignore[attr-defined]
    assert first.Delivered is not again.Delivered  # type: ignore[attr-defined]

    with pytest.raises(DuplicateEventTypeError) as caught:
        import_file(module_files / "other_events.py", "fixture_shop_other")
    assert str(caught.value) == duplicate_message(
        "Delivered", "fixture_shop_events.Delivered", "fixture_shop_other.Delivered")


def test_a_hosts_event_types_win_and_refuse_two_classes_for_one_name():
    class TheirShipped(msgspec.Struct):  # a plain Struct another service's client decodes into
        __module__ = "carriers.client"
        __event_type__ = "ParcelShipped"
        tracking_number: int

    theirs = EventTypes([TheirShipped])
    assert theirs.decode("ParcelShipped", b'{"tracking_number": 3}') == \
        TheirShipped(tracking_number=3)
    assert theirs.get("ParcelShipped") is TheirShipped

    ours = EventTypes([ParcelShipped])
    assert ours.decode("ParcelShipped", b'{"parcel": "p-2"}') == ParcelShipped(parcel="p-2")
    with pytest.raises(DuplicateEventTypeError) as caught:
        ours.add(TheirShipped)
    assert str(caught.value) == duplicate_message(
        "ParcelShipped", f"{__name__}.ParcelShipped",
        "carriers.client.test_a_hosts_event_types_win_and_refuse_two_classes_for_one_name"
        ".<locals>.TheirShipped")


async def test_a_host_decodes_into_the_classes_it_subscribed_with():
    streaming = EventStreaming()
    streaming.add_stream("parcels")
    streaming.add_subscription("parcels", "tracking", mode="exclusive",
                               event_types=[ParcelShipped])
    async with streaming.run() as host:
        await host.publish("parcels", [record(ParcelShipped(parcel="p-3"), stream="parcels",
                                              correlation_id="w")], external=False)
        consumer = await host.open_consumer("tracking", "c")
        [d] = await collect(consumer, 1)
        assert d.event == ParcelShipped(parcel="p-3") and type(d.event) is ParcelShipped


def test_event_ids_are_random_version_4_uuids_in_canonical_form():
    import uuid

    from svrnty_events.events import new_event_id

    ids = [new_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for event_id in ids:
        parsed = uuid.UUID(event_id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == event_id  # lowercase, hyphenated: what str(uuid4()) gives
    # every hex digit shows up in every random position (no bit stuck)
    for position in (0, 9, 15, 20, 35):
        assert len({i[position] for i in ids}) == 16
    assert {i[14] for i in ids} == {"4"}  # the version digit
    assert {i[19] for i in ids} == set("89ab")  # the variant digit takes its four values
