"""TLS, bearer tokens, health checking, reflection, and services added by other plugins."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from conftest import OrderPlaced, append, running, target, within
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from svrnty_events import hookimpl
from svrnty_events.errors import ConfigError
from svrnty_events_grpc import EventClient, RemoteError


async def test_tls_with_a_self_signed_certificate(self_signed):
    cert, key = self_signed()
    async with running(tls_cert=str(cert), tls_key=str(key)) as host:
        assert host.endpoints() == [f"grpcs://127.0.0.1:{host.providers['grpc'].port}"]
        await append(host, OrderPlaced(order_id=1, amount=1.0))
        async with EventClient(host.endpoints()[0], root_certificates=cert.read_bytes()) as c:
            async with c.subscribe("all", "tls") as deliveries:
                assert (await within(deliveries.__anext__())).event.order_id == 1
        async with EventClient(target(host)) as plain:  # no TLS: the handshake fails
            with pytest.raises(RemoteError) as info:
                await within(plain.stream_info("orders", timeout=2.0))
        assert info.value.code in (grpc.StatusCode.UNAVAILABLE,
                                   grpc.StatusCode.DEADLINE_EXCEEDED)


async def test_unreadable_tls_files_name_the_field(tmp_path):
    with pytest.raises(ConfigError) as info:
        async with running(tls_cert=str(tmp_path / "no.pem"), tls_key=str(tmp_path / "no.key")):
            pass
    assert "delivery.grpc.tls_" in str(info.value)


async def test_bearer_tokens_from_config_and_environment(monkeypatch):
    monkeypatch.setenv("TEST_GRPC_TOKENS", "env-1, env-2")
    async with running(tokens=["conf"], token_env="TEST_GRPC_TOKENS") as host:
        await append(host, OrderPlaced(order_id=1, amount=1.0))
        for token in (None, "wrong"):
            async with EventClient(target(host), token=token) as c:
                with pytest.raises(RemoteError) as info:
                    async with c.subscribe("work", "intruder"):
                        pass
                assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
                assert "authorization" in info.value.details
                with pytest.raises(RemoteError) as info:
                    await within(c.dead_letters("work"))
                assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert host.consumers("work") == []  # nothing was delivered to them
        for token in ("conf", "env-2"):
            async with EventClient(target(host), token=token) as c:
                assert (await within(c.stream_info("orders")))["length"] == 1
        async with EventClient(target(host), token="env-1") as c:
            async with c.subscribe("work", "worker") as deliveries:
                d = await within(deliveries.__anext__())
                assert (d.event.order_id, d.attempt) == (1, 1)  # first delivery ever


async def test_token_env_must_hold_a_token(monkeypatch):
    monkeypatch.delenv("TEST_GRPC_TOKENS", raising=False)
    with pytest.raises(ConfigError) as info:
        async with running(token_env="TEST_GRPC_TOKENS"):
            pass
    assert "delivery.grpc.token_env" in str(info.value)


async def test_health_and_reflection_answer_without_a_token():
    async with running(tokens=["t"]) as host:
        async with grpc.aio.insecure_channel(target(host)) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "svrnty.events.v1.EventService"):
                reply = await within(health.Check(health_pb2.HealthCheckRequest(
                    service=service)))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = stub.ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            reply = await within(call.read())
            names = {s.name for s in reply.list_services_response.service}
            assert {"svrnty.events.v1.EventService", "grpc.health.v1.Health"} <= names
            await call.write(reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="svrnty.events.v1.EventService"))
            reply = await within(call.read())
            assert reply.file_descriptor_response.file_descriptor_proto
            await call.done_writing()


class EchoPlugin:
    """A plugin adding a service on the provider's port through register_grpc_services."""

    @hookimpl
    def register_grpc_services(self, server, host):
        async def echo(request: bytes, context) -> bytes:
            return request + b"|" + ",".join(sorted(host.streams)).encode()

        handler = grpc.method_handlers_generic_handler("test.Echo", {
            "Echo": grpc.unary_unary_rpc_method_handler(echo)})
        server.add_generic_rpc_handlers((handler,))
        return ["test.Echo"]


async def test_other_plugins_add_services_on_the_same_port_behind_auth():
    async with running(tokens=["t"], plugins=(EchoPlugin(),)) as host:
        async with grpc.aio.insecure_channel(target(host)) as channel:
            echo = channel.unary_unary("/test.Echo/Echo")
            assert await within(echo(b"hi", metadata=(("authorization", "Bearer t"),))) \
                == b"hi|inbox,orders"
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await within(echo(b"hi"))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            reply = await within(health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="test.Echo")))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
