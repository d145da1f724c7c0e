"""Clients without a valid token, or speaking plain text to a TLS port, are refused, and nothing is
delivered to them: the store never hands them an event, refused publishes append nothing, a
refused purge deletes nothing, and a good client later gets every event at attempt 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from svrnty_events import EventStreaming
from svrnty_events_grpc import EventClient, RemoteError
from svrnty_events_grpc.proto import events_pb2 as pb
from svrnty_events_grpc.proto import events_pb2_grpc as pb_grpc

from .grpc_support import (
    final_status,
    ledger,
    new_streaming,
    publish_jobs,
    running,
    self_signed,
    target,
    within,
)

TOKEN = "s3cret-token"
EVENTS = 5


def _streaming(**grpc_options: Any) -> EventStreaming:
    streaming = new_streaming(tokens=[TOKEN], **grpc_options)
    streaming.add_stream("orders", type="persistent", scope="cross_service")
    streaming.add_subscription("orders", "work", mode="exclusive", max_delivery_attempts=1)
    return streaming


async def _nothing_delivered_then_good_client_gets_all(host: Any, events: list[Any],
                                                       **client_options: Any) -> None:
    store = ledger(host)
    assert dict(store.claims) == {}, "an event was handed to a refused client"
    assert host.consumers("work") == []
    assert [e.id for e in await host.read("orders")][-len(events):] == [e.id for e in events], \
        "a refused publish appended something"
    async with EventClient(token=TOKEN, **client_options) as client, \
            client.subscribe("work", "good", auto_ack=False) as deliveries:
        got = []
        for _ in events:
            d = await within(deliveries.__anext__())
            got.append((d.id, d.attempt))
            await d.ack()
    assert got == [(e.id, 1) for e in events]


async def _dead_letter_one(host: Any) -> str:
    """Put one event in the dead-letter queue (so a refused purge has something to delete)."""
    await publish_jobs(host, "orders", range(EVENTS, EVENTS + 1), correlation_id="dlq")
    consumer = await within(host.open_consumer("work", "dead-letterer"))
    [d] = await within(consumer.fetch(max_events=1))
    await within(d.dead_letter("kept for the test"))
    await within(consumer.close())
    return d.id


BAD_METADATA = [
    pytest.param((), id="no-token"),
    pytest.param((("authorization", "Bearer wrong-token"),), id="wrong-token"),
    pytest.param((("authorization", f"Bearer {TOKEN}x"),), id="token-with-suffix"),
    pytest.param((("authorization", f"Basic {TOKEN}"),), id="wrong-scheme"),
    pytest.param((("authorization", "Bearer "),), id="empty-token"),
    pytest.param((("x-token", TOKEN),), id="token-in-another-header"),
]


@pytest.mark.parametrize("metadata", BAD_METADATA)
async def test_calls_without_a_valid_token_are_unauthenticated_and_get_nothing(metadata):
    async with running(_streaming()) as host:
        dead = await _dead_letter_one(host)
        events = await publish_jobs(host, "orders", range(EVENTS))
        store = ledger(host)
        store.claims.clear()  # what the setup above claimed
        async with grpc.aio.insecure_channel(target(host)) as channel:
            stub = pb_grpc.EventServiceStub(channel)
            # refused when the call starts, before any message is read. (Not writing here: a
            # write racing the refusal ends the call with INTERNAL "Internal error from Core"
            # in the grpc.aio client about 2% of the time, grpc/grpc#36066.)
            call = stub.Subscribe(metadata=metadata)
            code, details = await final_status(call)
            assert code == grpc.StatusCode.UNAUTHENTICATED
            assert details.startswith("authorization: ")
            unary = [
                (stub.Publish, pb.PublishRequest(stream="orders", events=[pb.NewEvent(
                    type="Job", correlation_id="evil", data=b'{"n": -1}')])),
                (stub.PurgeDeadLetters, pb.DeadLetterSelection(subscription="work")),
                (stub.ReplayDeadLetters, pb.DeadLetterSelection(subscription="work")),
                (stub.ListDeadLetters, pb.ListDeadLettersRequest(subscription="work")),
                (stub.ListConsumers, pb.ListConsumersRequest(subscription="work")),
                (stub.GetStreamInfo, pb.GetStreamInfoRequest(stream="orders")),
            ]
            for method, request in unary:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await within(method(request, metadata=metadata))
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, method
        assert [d.event.id for d in await host.dead_letters("work")] == [dead]
        await _nothing_delivered_then_good_client_gets_all(host, events, target=target(host))


async def test_tls_port_refuses_plain_text_untrusted_and_tokenless_clients(tmp_path: Path):
    cert, key = self_signed(tmp_path, "server")
    other_ca, _ = self_signed(tmp_path, "impostor")
    async with running(_streaming(tls_cert=str(cert), tls_key=str(key))) as host:
        events = await publish_jobs(host, "orders", range(EVENTS))
        endpoint = host.endpoints()[0]
        assert endpoint.startswith("grpcs://127.0.0.1:")
        refused = [
            # plain text against the TLS port: no HTTP/2 connection at all
            ({"target": target(host), "token": TOKEN}, grpc.StatusCode.UNAVAILABLE),
            # TLS, but the server's certificate is not signed by what the client trusts
            ({"target": endpoint, "token": TOKEN, "root_certificates": other_ca.read_bytes()},
             grpc.StatusCode.UNAVAILABLE),
            # a trusted TLS connection, without a token
            ({"target": endpoint, "root_certificates": cert.read_bytes()},
             grpc.StatusCode.UNAUTHENTICATED),
        ]
        for options, code in refused:
            async with EventClient(**options) as client:
                subscriber = client.subscribe("work", "intruder")
                with pytest.raises(RemoteError) as info:
                    await within(subscriber.open())
                await within(subscriber.aclose())
                assert info.value.code == code, options
                with pytest.raises(RemoteError) as info:
                    await within(client.purge_dead_letters("work", timeout=5))
                assert info.value.code == code, options
        await _nothing_delivered_then_good_client_gets_all(
            host, events, target=endpoint, root_certificates=cert.read_bytes())
