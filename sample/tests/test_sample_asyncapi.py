"""The sample's AsyncAPI 3.0 document at /asyncapi.json: valid against the official schema, with
the sample's streams, event types (payload schemas from msgspec), subscriptions, and servers
that are the addresses the running host serves on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
import pytest

from svrnty_events.testing.asyncapi import AsyncAPIError, validate_asyncapi
from svrnty_events_grpc import EventClient
from svrnty_sample.domain import InvitationSent, UserAdded

if TYPE_CHECKING:
    from conftest import SampleProcess

TIMEOUT = aiohttp.ClientTimeout(total=10)


async def document(sample: SampleProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(f"{sample.http_url}/asyncapi.json") as r:
            assert r.status == 200 and r.content_type == "application/json"
            return await r.json()


async def test_the_document_is_valid_asyncapi_3(sample: SampleProcess) -> None:
    doc = await document(sample)
    validate_asyncapi(doc)
    assert doc["asyncapi"] == "3.0.0" and doc["info"]["title"] == "svrnty-events sample"
    # the validator is no rubber stamp: a broken copy is refused, naming the place
    broken = {**doc, "operations": {**doc["operations"], "user-analytics": {
        k: v for k, v in doc["operations"]["user-analytics"].items() if k != "action"}}}
    with pytest.raises(AsyncAPIError, match="operations/user-analytics"):
        validate_asyncapi(broken)


async def test_streams_events_and_subscriptions(sample: SampleProcess) -> None:
    doc = await document(sample)
    assert set(doc["channels"]) == {"users", "invitations"}
    assert set(doc["channels"]["users"]["messages"]) == {"UserAdded", "UserRemoved"}
    assert set(doc["channels"]["invitations"]["messages"]) == {
        "InvitationSent", "InvitationAccepted", "InvitationDeclined", "InvitationDue",
        "InvitationExpired"}
    messages, schemas = doc["components"]["messages"], doc["components"]["schemas"]
    # payloads are msgspec's JSON Schemas of the event classes
    expected = msgspec.json.schema_components(
        [UserAdded, InvitationSent], ref_template="#/components/schemas/{name}")[1]
    assert messages["UserAdded"]["payload"] == {"$ref": "#/components/schemas/UserAdded"}
    assert schemas["UserAdded"] == expected["UserAdded"]
    assert schemas["InvitationSent"] == expected["InvitationSent"]
    assert messages["UserAdded"]["correlationId"] == {
        "$ref": "#/components/correlationIds/workflow"}
    ops = doc["operations"]
    # the invitation-expiry process manager's subscription too
    assert set(ops) == {"user-analytics", "invitation-processor",
                        "pm_invitation-expiry_invitations"}
    assert ops["user-analytics"]["action"] == "send"
    assert ops["user-analytics"]["channel"] == {"$ref": "#/channels/users"}
    assert "broadcast" in ops["user-analytics"]["summary"]
    assert "exclusive" in ops["invitation-processor"]["summary"]
    assert "InvitationAccepted, InvitationDeclined" in ops["invitation-processor"]["description"]
    assert len(ops["invitation-processor"]["messages"]) == 5
    assert len(ops["pm_invitation-expiry_invitations"]["messages"]) == 1  # InvitationDue only


async def test_the_servers_are_where_the_host_serves(sample: SampleProcess) -> None:
    doc = await document(sample)
    servers = doc["servers"]
    assert servers["grpc"]["host"] == sample.grpc_target and servers["grpc"]["protocol"] == "grpc"
    http_address = sample.http_url.removeprefix("http://")
    sse, ws = servers["web-sse"], servers["web-ws"]
    assert (sse["host"], sse["protocol"]) == (http_address, "http")
    assert (ws["host"], ws["protocol"]) == (http_address, "ws")
    # the documented addresses answer: SSE of user-analytics, and gRPC's EventService
    url = f"http://{sse['host']}" + sse["pathname"].replace("{subscription}", "user-analytics")
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(url + "?new_only=true") as r:
            assert r.status == 200 and r.content_type == "text/event-stream"
    async with EventClient(servers["grpc"]["host"]) as client:
        info = await client.stream_info("users", timeout=10)
    assert info["name"] == "users"
