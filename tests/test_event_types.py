"""Decoding deliveries into event classes: the host's own classes first, and same-named classes
of other modules do not change how a host's deliveries decode."""

from __future__ import annotations

import pytest

from svrnty_events import Event, EventStreaming
from svrnty_events.events import EventTypes, decode_payload, record
from svrnty_events.testing import collect


class Shipped(Event):
    parcel: str


OurShipped = Shipped


class Shipped(Event):  # noqa: F811 - another module's class of the same name, defined later
    tracking_number: int
    carrier: str


TheirShipped = Shipped


def test_process_wide_decoding_picks_the_newest_class_that_fits():
    assert decode_payload("Shipped", b'{"tracking_number": 1, "carrier": "x"}') == \
        TheirShipped(tracking_number=1, carrier="x")
    assert decode_payload("Shipped", b'{"parcel": "p-1"}') == OurShipped(parcel="p-1")


def test_event_types_registry_wins_and_refuses_two_classes_for_one_name():
    types = EventTypes([OurShipped])
    assert types.decode("Shipped", b'{"parcel": "p-2"}') == OurShipped(parcel="p-2")
    with pytest.raises(ValueError, match='event type "Shipped" names both'):
        types.add(TheirShipped)


async def test_a_host_decodes_into_the_classes_it_subscribed_with():
    streaming = EventStreaming()
    streaming.add_stream("parcels")
    streaming.add_subscription("parcels", "tracking", mode="exclusive", event_types=[OurShipped])
    async with streaming.run() as host:
        await host.publish("parcels", [record(OurShipped(parcel="p-3"), stream="parcels",
                                              correlation_id="w")], external=False)
        consumer = await host.open_consumer("tracking", "c")
        [d] = await collect(consumer, 1)
        assert d.event == OurShipped(parcel="p-3") and type(d.event) is OurShipped
