"""Publish (cross-service only) and the dead-letter / introspection RPCs."""

from __future__ import annotations

import grpc
import pytest
from conftest import OrderPlaced, append, within

from svrnty_events_grpc import RemoteError
from svrnty_events_grpc.proto import events_pb2 as pb


async def test_publish_to_a_cross_service_stream_is_delivered(host, client):
    published = await within(client.publish("inbox", [OrderPlaced(order_id=1, amount=2.0)],
                                            correlation_id="remote-wf", headers={"from": "b"}))
    assert [p.sequence for p in published] == [0]
    async with client.subscribe("inbox", "c") as deliveries:
        d = await within(deliveries.__anext__())
    assert (d.id, d.event, d.correlation_id, d.headers) == (
        published[0].id, OrderPlaced(order_id=1, amount=2.0), "remote-wf", {"from": "b"})


async def test_publish_to_an_internal_stream_is_permission_denied(host, client):
    with pytest.raises(RemoteError) as info:
        await within(client.publish("orders", [OrderPlaced(order_id=1, amount=2.0)]))
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "stream" in info.value.details and "orders" in info.value.details
    assert (await host.stream_info("orders")).length == 0


async def test_publish_errors_name_the_field(host, client):
    with pytest.raises(RemoteError) as info:
        await within(client.publish("nowhere", [OrderPlaced(order_id=1, amount=2.0)]))
    assert info.value.code == grpc.StatusCode.NOT_FOUND and "stream" in info.value.details
    bad = pb.PublishRequest(stream="inbox", events=[
        pb.NewEvent(type="T", correlation_id="c", data=b"{}"),
        pb.NewEvent(type="T", correlation_id="c", data=b"{not json")])
    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await within(client.stub.Publish(bad))
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events[1].data" in raw.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await within(client.stub.Publish(pb.PublishRequest(stream="inbox", events=[
            pb.NewEvent(correlation_id="c", data=b"{}")])))
    assert "events[0].type" in raw.value.details()
    assert (await host.stream_info("inbox")).length == 0  # nothing of a bad batch appended


async def test_dead_letters_list_replay_purge(host, client):
    await append(host, OrderPlaced(order_id=1, amount=1.0), OrderPlaced(order_id=2, amount=1.0))
    async with client.subscribe("fragile", "f", auto_ack=False) as deliveries:
        for _ in range(2):
            d = await within(deliveries.__anext__())
            await d.nack(reason="cannot process")
        letters = []
        for _ in range(50):
            letters = await within(client.dead_letters("fragile"))
            if len(letters) == 2:
                break
            await within(deliveries.next(timeout=0.05), 1.0)
    assert sorted(dl.event.data for dl in letters) == sorted(
        [b'{"order_id":1,"amount":1.0,"items":[]}', b'{"order_id":2,"amount":1.0,"items":[]}'])
    assert {(dl.reason, dl.attempts, dl.subscription) for dl in letters} == {
        ("cannot process", 1, "fragile")}
    first = letters[0].event.id
    assert await within(client.replay_dead_letters("fragile", [first])) == 1
    async with client.subscribe("fragile", "f2") as deliveries:
        assert (await within(deliveries.__anext__())).id == first
    assert await within(client.purge_dead_letters("fragile")) == 1
    assert await within(client.dead_letters("fragile")) == []
    with pytest.raises(RemoteError) as info:
        await within(client.dead_letters("nope"))
    assert info.value.code == grpc.StatusCode.NOT_FOUND and "subscription" in info.value.details


async def test_stream_info(host, client):
    await append(host, OrderPlaced(order_id=1, amount=1.0))
    info = await within(client.stream_info("orders"))
    assert (info["name"], info["type"], info["scope"], info["length"], info["next_sequence"]) \
        == ("orders", "ephemeral", "internal", 1, 1)
    with pytest.raises(RemoteError) as err:
        await within(client.stream_info("nope"))
    assert err.value.code == grpc.StatusCode.NOT_FOUND
