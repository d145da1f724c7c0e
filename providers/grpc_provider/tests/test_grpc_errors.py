"""Every error status of Subscribe names the field; the server keeps serving others and loses
nothing (what the failed consumer held is released at once)."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from conftest import OrderPlaced, append, running, target, within

from svrnty_events.errors import ConfigError
from svrnty_events_grpc import EventClient, RemoteError
from svrnty_events_grpc.proto import events_pb2 as pb
from svrnty_events_grpc.proto import events_pb2_grpc as pb_grpc


async def _status(call) -> tuple[grpc.StatusCode, str]:
    while True:
        try:
            msg = await within(call.read())
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
        if msg is grpc.aio.EOF:
            return await call.code(), await call.details()


async def _open(channel, **subscribe):
    call = pb_grpc.EventServiceStub(channel).Subscribe()
    await call.write(pb.SubscribeRequest(subscribe=pb.Subscribe(**subscribe)))
    return call


@pytest.fixture
async def bystander(host):
    """A consumer of another subscription that must keep receiving throughout."""
    async with EventClient(target(host)) as c, c.subscribe("all", "bystander") as deliveries:
        yield deliveries


async def _bystander_still_served(host, bystander):
    await append(host, OrderPlaced(order_id=42, amount=1.0))
    while True:
        d = await within(bystander.__anext__())
        if d.event.order_id == 42:
            return


async def test_unknown_subscription_is_not_found(host, client, bystander):
    with pytest.raises(RemoteError) as info:
        async with client.subscribe("nope", "c"):
            pass
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert "subscribe.subscription" in info.value.details and '"nope"' in info.value.details
    await _bystander_still_served(host, bystander)


@pytest.mark.parametrize("first, field", [
    (pb.SubscribeRequest(ack=pb.Ack(event_ids=["x"])), "first message must be `subscribe`"),
    (pb.SubscribeRequest(), "first message must be `subscribe`"),
    (pb.SubscribeRequest(subscribe=pb.Subscribe(subscription="all")), "subscribe.consumer_id"),
    (pb.SubscribeRequest(subscribe=pb.Subscribe(consumer_id="c")), "subscribe.subscription"),
])
async def test_bad_first_message_is_invalid_argument(host, bystander, first, field):
    async with grpc.aio.insecure_channel(target(host)) as channel:
        call = pb_grpc.EventServiceStub(channel).Subscribe()
        await call.write(first)
        code, details = await _status(call)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and field in details
    await _bystander_still_served(host, bystander)


async def test_ack_of_an_event_not_held_is_invalid_argument_and_releases(host, bystander):
    await append(host, OrderPlaced(order_id=1, amount=1.0))
    async with grpc.aio.insecure_channel(target(host)) as channel:
        call = await _open(channel, subscription="work", consumer_id="bad")
        await within(call.read())
        held = await within(call.read())
        assert len(held.events.events) == 1
        await call.write(pb.SubscribeRequest(ack=pb.Ack(event_ids=["never-delivered"])))
        code, details = await _status(call)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "ack.event_ids" in details and "never-delivered" in details
    # nothing lost: the held event goes to the next consumer at once (visibility is 30 s)
    async with EventClient(target(host)) as c, c.subscribe("work", "good") as deliveries:
        d = await within(deliveries.__anext__(), 5.0)
    assert d.id == held.events.events[0].id
    await _bystander_still_served(host, bystander)


async def test_second_subscribe_on_a_stream_is_failed_precondition(host, bystander):
    await append(host, OrderPlaced(order_id=1, amount=1.0))
    async with grpc.aio.insecure_channel(target(host)) as channel:
        call = await _open(channel, subscription="work", consumer_id="twice")
        await within(call.read())
        await within(call.read())
        await call.write(pb.SubscribeRequest(subscribe=pb.Subscribe(
            subscription="all", consumer_id="twice")))
        code, details = await _status(call)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "subscribe" in details
    async with EventClient(target(host)) as c, c.subscribe("work", "next") as deliveries:
        assert (await within(deliveries.__anext__(), 5.0)).event.order_id == 1
    await _bystander_still_served(host, bystander)


async def test_message_over_the_maximum_size_is_resource_exhausted():
    async with running(max_message_bytes=65536) as host:
        await append(host, OrderPlaced(order_id=1, amount=1.0))
        async with EventClient(target(host)) as c, c.subscribe("all", "by") as bystander:
            async with grpc.aio.insecure_channel(target(host)) as channel:
                call = await _open(channel, subscription="work", consumer_id="big")
                await within(call.read())
                await within(call.read())
                await call.write(pb.SubscribeRequest(ack=pb.Ack(event_ids=["x" * 70_000])))
                code, _ = await _status(call)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            async with c.subscribe("work", "next") as deliveries:
                assert (await within(deliveries.__anext__(), 5.0)).event.order_id == 1
            await _bystander_still_served(host, bystander)


async def test_nack_errors_name_the_field(host):
    await append(host, OrderPlaced(order_id=1, amount=1.0))
    async with grpc.aio.insecure_channel(target(host)) as channel:
        call = await _open(channel, subscription="work", consumer_id="n")
        await within(call.read())
        await within(call.read())
        await call.write(pb.SubscribeRequest(nack=pb.Nack(event_id="zzz")))
        code, details = await _status(call)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "nack.event_id" in details


async def test_options_are_validated_naming_the_field():
    with pytest.raises(ConfigError) as info:
        async with running(tls_cert="/x.pem"):
            pass
    assert "delivery.grpc" in str(info.value) and "tls_key" in str(info.value)
    with pytest.raises(ConfigError) as info:
        async with running(colour="blue"):
            pass
    assert "delivery.grpc.colour" in str(info.value)
