"""The event batches the server writes as bytes (wire.py) are the protobuf encoding of the same
messages: read back with the generated classes, they equal what the generated code builds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from conftest import OrderPlaced, append, running, target, within

from svrnty_events.events import RecordedEvent
from svrnty_events_grpc import EventClient, wire
from svrnty_events_grpc.convert import delivered_event
from svrnty_events_grpc.proto import events_pb2 as pb

T = datetime(2026, 12, 3, 14, 0, 0, 123456, tzinfo=timezone.utc)


def event(**fields) -> RecordedEvent:
    base = {"id": "e-1", "stream": "orders", "type": "OrderPlaced", "correlation_id": "wf-1",
            "timestamp": T, "data": b'{"order_id":1}', "sequence": 7}
    return RecordedEvent(**{**base, **fields})


RECORDS = [
    event(),
    event(sequence=0, partition=0, data=b""),
    event(sequence=2**40 + 3, partition=15, headers={"trace": "t-1", "x": ""}),
    event(headers={"svrnty-event-version": "3"}),
    event(content_type="application/octet-stream", data=bytes(range(256)) * 3),
    event(content_type="", type="", correlation_id="", stream=""),
    event(id="é-ünïcode-事件", type="Bestellung", headers={"clé": "välue"}),
    event(timestamp=T.replace(microsecond=0)),
    event(timestamp=datetime(1969, 7, 20, 20, 17, 40, 5, tzinfo=timezone.utc)),
    event(timestamp=datetime(1970, 1, 1, tzinfo=timezone.utc)),
    event(timestamp=datetime(2026, 1, 1, 12, 0)),  # naive: read as UTC
    event(timestamp=datetime(2026, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))),
    event(sequence=-1),
]


def parsed(messages: list[bytes]) -> list[pb.DeliveredEvent]:
    return [e for m in messages for e in pb.SubscribeResponse.FromString(m).events.events]


@pytest.mark.parametrize("record", RECORDS)
@pytest.mark.parametrize("attempt", [0, 1, 2, 127, 128, 70_000])
def test_an_event_reads_back_as_the_generated_code_builds_it(record, attempt):
    messages, too_large = wire.events_messages([SimpleNamespace(record=record,
                                                                attempt=attempt)], 1 << 22)
    assert too_large == [] and len(messages) == 1
    assert parsed(messages) == [delivered_event(record, attempt)]


def test_a_batch_is_one_message_in_order_and_the_same_bytes_as_protobuf_writes():
    ds = [SimpleNamespace(record=event(id=f"e-{i}", sequence=i), attempt=1) for i in range(300)]
    messages, too_large = wire.events_messages(ds, 1 << 22)
    assert too_large == [] and len(messages) == 1
    expected = pb.SubscribeResponse(events=pb.EventBatch(events=[
        delivered_event(d.record, d.attempt) for d in ds]))
    assert pb.SubscribeResponse.FromString(messages[0]) == expected


def test_batches_split_at_the_limit_and_oversized_events_are_set_aside():
    ds = [SimpleNamespace(record=event(id=f"e-{i}", sequence=i, data=b"x" * (100 + 37 * i)),
                          attempt=1) for i in range(60)]
    big = SimpleNamespace(record=event(id="big", data=b"y" * 5000), attempt=1)
    limit = 4096
    messages, too_large = wire.events_messages([*ds[:30], big, *ds[30:]], limit)
    assert len(messages) > 1
    assert all(len(m) <= limit + 6 for m in messages)  # the response's tag and length
    assert [e.id for e in parsed(messages)] == [d.record.id for d in ds]
    assert [(d.record.id, n > limit) for d, n in too_large] == [("big", True)]


def test_varints_match_protobuf():
    for n in [0, 1, 127, 128, 300, 2**14 - 1, 2**14, 2**21, 2**28 - 1, 2**28, 2**35 - 1, 2**35,
              2**63 - 1, -1, -(2**63)]:
        assert pb.DeliveredEvent(sequence=n).SerializeToString() == (
            b"\x28" + wire.varint(n) if n else b"")


async def test_large_events_are_split_over_messages_and_an_oversized_one_is_refused():
    async with running(max_message_bytes=65536) as host:
        small = [OrderPlaced(order_id=i, amount=1.0, items=["p" * 6000]) for i in range(30)]
        await append(host, *small[:15], OrderPlaced(order_id=999, amount=1.0,
                                                    items=["q" * 70_000]), *small[15:])
        seen: list[int] = []
        async with EventClient(target(host)) as c, c.subscribe("fragile", "c1") as deliveries:
            while len(seen) < 30:
                d = await within(deliveries.__anext__())
                seen.append(d.event.order_id)
        assert seen == list(range(30))  # every one once, in order; not the oversized one
        [letter] = await within(host.dead_letters("fragile"))
        assert letter.event.data.count(b"q") == 70_000
        assert "exceeds the gRPC max_message_bytes" in letter.reason
