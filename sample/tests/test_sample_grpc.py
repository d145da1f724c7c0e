"""The sample host over gRPC: the EventService of the gRPC provider, consumed with its Python
client, and the sample's CommandService and QueryService on the same server."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
import grpc
import grpc.aio
import pytest
from svrnty_events_grpc.client import EventClient, RemoteError

from svrnty_sample.proto import commands_pb2 as pb
from svrnty_sample.proto import commands_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from conftest import SampleProcess

TIMEOUT = 10.0


def unique_email(name: str = "user") -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


async def http_command(sample: SampleProcess, name: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        async with session.post(f"{sample.http_url}/api/command/{name}", json=body) as r:
            payload = await r.json(content_type=None)
            assert r.status == 200, payload
            return payload


async def next_delivery(deliveries: Any, *, of_type: str | None = None) -> Any:
    """The next delivery (of ``of_type``, acking the others), or fail after TIMEOUT."""
    async def wait() -> Any:
        while True:
            delivery = await deliveries.next(timeout=TIMEOUT)
            assert delivery is not None, "no event arrived"
            if of_type is None or delivery.type == of_type:
                return delivery
            await delivery.ack()
    return await asyncio.wait_for(wait(), TIMEOUT)


# --- EventService: remote consumers -------------------------------------------------------------


async def test_a_grpc_subscriber_receives_user_added_with_its_payload(sample: SampleProcess):
    async with EventClient(sample.grpc_target) as client:
        consumer_id = f"e2e-{uuid.uuid4()}"
        async with client.subscribe("user-analytics", consumer_id, auto_ack=False) as deliveries:
            # the consumer is registered once subscribe() returned: nothing sent now is missed
            email = unique_email("ada")
            added = await http_command(sample, "addUser",
                                       {"name": "Ada", "email": email, "age": 36})

            delivery = await next_delivery(deliveries, of_type="UserAdded")
            while delivery.correlation_id != added["workflow_id"]:  # other tests' users
                await delivery.ack()
                delivery = await next_delivery(deliveries, of_type="UserAdded")
            assert delivery.stream == "users" and delivery.attempt == 1
            assert delivery.content_type == "application/json"
            assert json.loads(delivery.data) == {"user_id": added["result"], "name": "Ada",
                                                 "email": email, "age": 36}
            assert delivery.id == added["events"][0]["id"]
            await delivery.ack()

        # broadcast: the background consumer got the same event too
        await sample.expect(rf"event UserAdded correlation_id={added['workflow_id']} ")


async def test_a_correlation_scoped_subscription_completes_at_the_terminal_event(
        sample: SampleProcess):
    mark = sample.mark()
    invited = await http_command(sample, "inviteUser",
                                 {"email": unique_email("grace"), "inviter": "Ada"})
    invitation_id = invited["workflow_id"]
    assert invited["result"] == invitation_id

    async with EventClient(sample.grpc_target) as client:
        async with client.subscribe("invitation-processor", f"tracker-{uuid.uuid4()}",
                                    correlation_id=invitation_id) as deliveries:
            accepted = await http_command(sample, "acceptInvitation",
                                          {"invitation_id": invitation_id, "name": "Grace"})
            assert accepted["workflow_id"] == invitation_id

            async def consume() -> list[Any]:
                return [d async for d in deliveries]  # ends at the terminal event
            received = await asyncio.wait_for(consume(), TIMEOUT)
        assert deliveries.completed
        assert received, "the terminal event was not delivered"
        assert {d.correlation_id for d in received} == {invitation_id}
        assert received[-1].type == "InvitationAccepted" and received[-1].terminal
        assert json.loads(received[-1].data)["user_id"] == accepted["result"]
        assert [d.type for d in received] in (["InvitationSent", "InvitationAccepted"],
                                              ["InvitationAccepted"])

    # the background consumer saw both events of the workflow under one correlation id
    for event in ("InvitationSent", "InvitationAccepted"):
        await sample.expect(rf"event {event} correlation_id={invitation_id} "
                            r"subscription=invitation-processor ", start=mark)


async def test_declining_also_ends_the_invitation_workflow(sample: SampleProcess):
    async with EventClient(sample.grpc_target) as client, \
            grpc.aio.insecure_channel(sample.grpc_target) as channel:
        commands = pb_grpc.CommandServiceStub(channel)
        invited = await commands.InviteUser(pb.InviteUserCommandRequest(email=unique_email()),
                                            timeout=TIMEOUT)
        async with client.subscribe("invitation-processor", f"tracker-{uuid.uuid4()}",
                                    correlation_id=invited.result) as deliveries:
            declined = await commands.DeclineInvitation(pb.DeclineInvitationCommandRequest(
                invitation_id=invited.result, reason="busy"), timeout=TIMEOUT)
            assert declined.result and declined.workflow_id == invited.workflow_id
            received = await asyncio.wait_for(_collect(deliveries), TIMEOUT)
        assert received[-1].type == "InvitationDeclined"
        assert json.loads(received[-1].data)["reason"] == "busy"


async def _collect(deliveries: Any) -> list[Any]:
    return [d async for d in deliveries]


async def test_subscribing_to_an_unknown_subscription_is_refused(sample: SampleProcess):
    async with EventClient(sample.grpc_target) as client:
        with pytest.raises(RemoteError) as info:
            async with client.subscribe("no-such-subscription", "c1"):
                pass
    assert info.value.code == grpc.StatusCode.NOT_FOUND


# --- CommandService and QueryService ------------------------------------------------------------


async def test_add_user_over_grpc_returns_the_id(sample: SampleProcess):
    mark = sample.mark()
    async with grpc.aio.insecure_channel(sample.grpc_target) as channel:
        commands = pb_grpc.CommandServiceStub(channel)
        queries = pb_grpc.QueryServiceStub(channel)
        email = unique_email("lin")
        added = await commands.AddUser(pb.AddUserCommandRequest(name="Lin", email=email),
                                       timeout=TIMEOUT)
        assert added.result >= 1 and added.workflow_id
        await sample.expect(rf"event UserAdded correlation_id={added.workflow_id} ", start=mark)

        user = await queries.GetUser(pb.GetUserQueryRequest(user_id=added.result),
                                     timeout=TIMEOUT)
        assert (user.result.id, user.result.name, user.result.email) == (added.result, "Lin",
                                                                         email)
        assert not user.result.HasField("age")
        listed = await queries.ListUsers(pb.ListUsersQueryRequest(), timeout=TIMEOUT)
        assert added.result in [u.id for u in listed.result]

        removed = await commands.RemoveUser(pb.RemoveUserCommandRequest(user_id=added.result),
                                            timeout=TIMEOUT)
        assert removed.result
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await queries.GetUser(pb.GetUserQueryRequest(user_id=added.result),
                                  timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(("request_", "field"), [
    (pb.AddUserCommandRequest(name="", email="ada@example.com"), "name"),
    (pb.AddUserCommandRequest(name="Ada", email="not-an-email"), "email"),
    (pb.AddUserCommandRequest(name="Ada", email="ada@example.com", age=-1), "age"),
], ids=["empty-name", "bad-email", "negative-age"])
async def test_invalid_commands_over_grpc_are_invalid_argument_naming_the_field(
        sample: SampleProcess, request_: pb.AddUserCommandRequest, field: str):
    async with grpc.aio.insecure_channel(sample.grpc_target) as channel:
        commands = pb_grpc.CommandServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await commands.AddUser(request_, timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith(f"{field}: ")
        assert (("field", field) in tuple(info.value.trailing_metadata() or ()))
        # the host keeps serving
        ok = await commands.AddUser(pb.AddUserCommandRequest(name="Ok", email=unique_email()),
                                    timeout=TIMEOUT)
        assert ok.result >= 1


async def test_grpc_continuation_errors(sample: SampleProcess):
    async with grpc.aio.insecure_channel(sample.grpc_target) as channel:
        commands = pb_grpc.CommandServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await commands.AcceptInvitation(pb.AcceptInvitationCommandRequest(
                invitation_id="no-such-invitation", name="X"), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND

        invited = await commands.InviteUser(pb.InviteUserCommandRequest(email=unique_email()),
                                            timeout=TIMEOUT)
        await commands.DeclineInvitation(pb.DeclineInvitationCommandRequest(
            invitation_id=invited.result), timeout=TIMEOUT)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await commands.AcceptInvitation(pb.AcceptInvitationCommandRequest(
                invitation_id=invited.result, name="Late"), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "declined" in info.value.details()


async def test_the_sample_services_are_listed_by_health_checking(sample: SampleProcess):
    health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
    health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
    async with grpc.aio.insecure_channel(sample.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("svrnty.sample.v1.CommandService", "svrnty.sample.v1.QueryService",
                        "svrnty.events.v1.EventService"):
            response = await health.Check(health_pb2.HealthCheckRequest(service=service),
                                          timeout=TIMEOUT)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
