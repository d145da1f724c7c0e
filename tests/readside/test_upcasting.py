"""Event versions and upcasters in one process (the memory store): chains, errors of
registration, an upcaster that fails dead-letters its event instead of looping."""

from __future__ import annotations

import asyncio

import pytest

from svrnty_events import Event, EventStreaming
from svrnty_events.errors import EventVersionError, UpcasterError
from svrnty_events.events import EventTypes, record
from svrnty_events.upcasting import VERSION_HEADER


class UpcChained(Event, version=3):
    title: str
    tags: list[str]


class UpcPlain(Event):
    n: int


def test_a_class_declares_its_version_and_records_it() -> None:
    assert UpcChained.__event_version__ == 3 and UpcPlain.__event_version__ == 1
    chained = record(UpcChained(title="t", tags=[]), stream="s", correlation_id="c")
    plain = record(UpcPlain(n=1), stream="s", correlation_id="c")
    assert chained.version == 3 and chained.headers == {VERSION_HEADER: "3"}
    assert plain.version == 1 and plain.headers == {}  # unversioned: unchanged envelope


@pytest.mark.parametrize("version", [0, -1, "2", True, 1.5])
def test_a_bad_class_version_is_refused(version: object) -> None:
    with pytest.raises(TypeError, match="version must be an integer >= 1"):
        type("UpcBadVersion", (Event,), {}, version=version)


def test_upcasters_chain_in_order() -> None:
    types = EventTypes([UpcChained])
    calls: list[int] = []

    def one(p: dict) -> dict:
        calls.append(1)
        return {"title": p.pop("name")}

    def two(p: dict) -> dict:
        calls.append(2)
        return {**p, "tags": ["old"]}

    types.upcasters.add("UpcChained", 2, two)
    types.upcasters.add("UpcChained", 1, one)
    old = record(UpcPlain(n=0), stream="s", correlation_id="c")
    old = type(old)(**{**{f: getattr(old, f) for f in old.__struct_fields__},
                       "type": "UpcChained", "data": b'{"name":"x"}'})
    up = types.upcast(old)
    assert calls == [1, 2] and up.version == 3
    assert types.decode(up.type, up.data) == UpcChained(title="x", tags=["old"])
    assert types.upcast(up) is up  # current already: untouched


def test_registration_errors_are_typed() -> None:
    streaming = EventStreaming()
    with pytest.raises(UpcasterError, match="from_version must be an integer >= 1"):
        streaming.upcaster("UpcChained", from_version=0)(lambda p: p)

    @streaming.upcaster(UpcChained, from_version=1)
    def first(p: dict) -> dict:
        return p

    with pytest.raises(UpcasterError, match="two upcasters of \"UpcChained\" from version 1"):
        streaming.upcaster("UpcChained", from_version=1)(lambda p: p)


def test_missing_step_and_newer_version_name_type_versions_and_id() -> None:
    types = EventTypes([UpcChained])
    types.upcasters.add("UpcChained", 2, lambda p: p)
    old = record(UpcChained(title="t", tags=[]), stream="s", correlation_id="c",
                 headers={})
    v1 = type(old)(**{**{f: getattr(old, f) for f in old.__struct_fields__}, "headers": {}})
    with pytest.raises(EventVersionError) as info:
        types.upcast(v1)
    assert info.value.missing == 1 and v1.id in str(info.value)
    v9 = type(old)(**{**{f: getattr(old, f) for f in old.__struct_fields__},
                      "headers": {VERSION_HEADER: "9"}})
    with pytest.raises(EventVersionError, match="stored version 9 is newer than version 3"):
        types.upcast(v9)


async def test_an_upcaster_that_fails_dead_letters_the_event_and_delivery_goes_on() -> None:
    streaming = EventStreaming(store="memory")
    streaming.add_stream("upc", type="persistent")
    streaming.add_subscription("upc", "readers")
    streaming.register_event_types(UpcChained)

    @streaming.upcaster("UpcChained", from_version=1)
    def broken(p: dict) -> dict:
        if p["name"] == "bad":
            raise KeyError("title")
        return {"title": p["name"]}

    @streaming.upcaster("UpcChained", from_version=2)
    def returns_a_list(p: dict) -> list:  # type: ignore[type-arg]
        return [p] if p["title"] == "list" else {**p, "tags": []}  # type: ignore[return-value]

    async with streaming.run() as host:
        good = record(UpcPlain(n=0), stream="upc", correlation_id="c")
        events = [type(good)(**{**{f: getattr(good, f) for f in good.__struct_fields__},
                                "id": f"e{i}", "type": "UpcChained",
                                "data": f'{{"name":"{name}"}}'.encode()})
                  for i, name in enumerate(["a", "bad", "list", "b"])]
        await host.publish("upc", events, external=False)
        async with host.subscribe("readers", "r") as deliveries:
            got = [(await deliveries.next(timeout=10)).event for _ in range(2)]
            assert got == [UpcChained(title="a", tags=[]), UpcChained(title="b", tags=[])]
            deadline = asyncio.get_running_loop().time() + 30
            while len(letters := await host.dead_letters("readers")) < 2 \
                    and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
        assert sorted(dl.event.id for dl in letters) == ["e1", "e2"]
        reasons = {dl.event.id: dl.reason for dl in letters}
        assert "failed on event e1: KeyError" in reasons["e1"]
        assert "returned list, not a dict (event e2)" in reasons["e2"]
        assert {dl.error for dl in letters} == {"UpcasterError"}
