"""Bad options of the rabbitmq provider: each is a ConfigError naming the option, raised before
or while the host starts, and no event is lost or published by a host that did not start."""

from __future__ import annotations

from pathlib import Path

import aio_pika
import pytest
from rabbitmq_support import service_a, service_b

from svrnty_events import EventStreaming
from svrnty_events.errors import ConfigError
from svrnty_events_rabbitmq.server import free_port


async def start_fails(streaming: EventStreaming) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        async with streaming.run():
            pass
    return info.value


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1:5672/", "must be an amqp:// or amqps:// URL"),
    ("amqp://", "must be an amqp:// or amqps:// URL with a host"),
    ("amqp://127.0.0.1:99999/", "not a valid URL"),
])
async def test_a_bad_url_names_the_option(url: str, message: str):
    error = await start_fails(service_a(url, "x"))
    assert error.path == "delivery.rabbitmq"
    assert f"url: {message}" in str(error)


async def test_a_password_is_not_shown_in_the_error():
    error = await start_fails(service_a("http://user:s3cret@127.0.0.1/", "x"))
    assert "s3cret" not in str(error) and "user:***@" in str(error)


async def test_unknown_options_and_fields(tmp_path: Path):
    streaming = service_a("amqp://127.0.0.1/", "x")
    streaming.config.delivery["rabbitmq"]["prefetc"] = 10
    assert (await start_fails(streaming)).path == "delivery.rabbitmq.prefetc"
    streaming = service_a("amqp://127.0.0.1/", "x", routing_key="{stream}.{kind}")
    error = await start_fails(streaming)
    assert error.path == "delivery.rabbitmq.outbound[0]"
    assert "routing_key: unknown field {kind}" in str(error)
    streaming = service_a("amqp://127.0.0.1/", "x", window=0)
    assert (await start_fails(streaming)).path == "delivery.rabbitmq.outbound[0].window"


async def test_unknown_subscription_and_streams(tmp_path: Path):
    streaming = service_a("amqp://127.0.0.1/", "x")
    streaming.config.delivery["rabbitmq"]["outbound"][0]["subscription"] = "nope"
    error = await start_fails(streaming)
    assert error.path == "delivery.rabbitmq.outbound[0].subscription"
    assert 'unknown subscription "nope"; subscriptions: to-rabbitmq' in str(error)

    streaming = service_b("amqp://127.0.0.1/", "x", "q", tmp_path, stream="nope")
    error = await start_fails(streaming)
    assert error.path == "delivery.rabbitmq.inbound[0].stream"
    assert 'unknown stream "nope"' in str(error)

    streaming = service_b("amqp://127.0.0.1/", "x", "q", tmp_path)
    streaming.config.streams[0].scope = "internal"
    error = await start_fails(streaming)
    assert error.path == "delivery.rabbitmq.inbound[0].stream"
    assert 'scope = "cross_service"' in str(error)


async def test_url_env(monkeypatch: pytest.MonkeyPatch, rabbitmq, names):
    streaming = service_a("amqp://127.0.0.1/", names["exchange"])
    streaming.config.delivery["rabbitmq"]["url_env"] = "SVRNTY_TEST_RABBITMQ_URL"
    monkeypatch.delenv("SVRNTY_TEST_RABBITMQ_URL", raising=False)
    error = await start_fails(streaming)
    assert error.path == "delivery.rabbitmq.url_env"
    assert "SVRNTY_TEST_RABBITMQ_URL is not set" in str(error)
    monkeypatch.setenv("SVRNTY_TEST_RABBITMQ_URL", "redis://127.0.0.1/")
    assert "must be an amqp://" in str(await start_fails(streaming))
    monkeypatch.setenv("SVRNTY_TEST_RABBITMQ_URL", rabbitmq.url)
    async with streaming.run() as host:
        assert host.providers["rabbitmq"].url == rabbitmq.url


async def test_a_broker_that_cannot_be_reached():
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    streaming = service_a(url, "x")
    streaming.config.delivery["rabbitmq"]["connect_timeout"] = 1.0
    error = await start_fails(streaming)
    assert error.path == "delivery.rabbitmq.url"
    assert "cannot reach the broker" in str(error) and "connect_timeout" in str(error)
    assert "guest:***@" in str(error)


async def test_bad_credentials_and_an_unknown_virtual_host(rabbitmq):
    url = rabbitmq.url.replace("guest:guest", "guest:wrong")
    error = await start_fails(service_a(url, "x"))
    assert error.path == "delivery.rabbitmq.url"
    assert "refused the credentials" in str(error)
    assert "wrong" not in str(error)
    error = await start_fails(service_a(rabbitmq.url + "no-such-vhost", "x"))
    assert error.path == "delivery.rabbitmq.url"
    assert "refused to open virtual host 'no-such-vhost'" in str(error)


async def test_declarations_the_broker_refuses(rabbitmq, names, tmp_path: Path):
    # the queue exists with other arguments than the provider declares
    async with await aio_pika.connect(rabbitmq.url) as connection:
        channel = await connection.channel()
        await channel.declare_queue(names["queue"], durable=True,
                                    arguments={"x-max-length": 10})
    error = await start_fails(service_b(rabbitmq.url, names["exchange"], names["queue"],
                                        tmp_path))
    assert error.path == "delivery.rabbitmq.inbound[0].queue"
    assert "PRECONDITION_FAILED" in str(error)
    # an outbound exchange that does not exist (the provider declares only its own)
    error = await start_fails(service_a(rabbitmq.url, names["exchange"],
                                        exchange=f"{names['exchange']}-missing"))
    assert error.path == "delivery.rabbitmq.outbound[0].exchange"
    assert "NOT_FOUND" in str(error)
    # the provider's exchange exists with another type
    async with service_a(rabbitmq.url, names["exchange"]).run():
        pass  # declares it as a topic exchange
    error = await start_fails(_typed(rabbitmq.url, names["exchange"], "fanout"))
    assert error.path == "delivery.rabbitmq.exchange"
    assert "PRECONDITION_FAILED" in str(error)


def _typed(url: str, exchange: str, kind: str) -> EventStreaming:
    streaming = service_a(url, exchange)
    streaming.config.delivery["rabbitmq"]["exchange_type"] = kind
    return streaming


async def test_a_second_route_of_the_same_subscription_needs_its_own_consumer_id():
    streaming = service_a("amqp://127.0.0.1/", "x")
    outbound = streaming.config.delivery["rabbitmq"]["outbound"]
    outbound.append(dict(outbound[0]))
    error = await start_fails(streaming)
    assert error.path == "delivery.rabbitmq"
    assert "outbound[1]: outbound[0] already publishes" in str(error)
    assert "consumer_id" in str(error)


async def test_a_broker_certificate_the_client_does_not_trust(rabbitmq):
    if rabbitmq.tls is None:
        pytest.skip("openssl is needed to make the broker's test certificate")
    untrusted = rabbitmq.tls_url.split("?", 1)[0]
    error = await start_fails(service_a(untrusted, "x"))
    assert error.path == "delivery.rabbitmq.url"
    assert "TLS with the broker" in str(error) and "CERTIFICATE_VERIFY_FAILED" in str(error)
