"""Connecting to a Redis that wants a password, or TLS (rediss://): it works end to end with
the right settings, and the wrong ones give a clear error (a password never appears in it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from svrnty_events import EventStreaming
from svrnty_events.errors import ConfigError, StoreUnavailableError
from svrnty_events.events import Event, record
from svrnty_events.testing import collect, self_signed_certificate

from svrnty_events_redis.server import running_redis


class Ping(Event):
    n: int


def streaming(url: str, **options) -> EventStreaming:
    s = EventStreaming(store="redis", store_options={"url": url, "connect_timeout": 1.0,
                                                     "retries": 0, **options})
    s.add_stream("s", type="persistent")
    s.add_subscription("s", "sub", mode="exclusive")
    return s


async def round_trip(url: str, **options) -> list[int]:
    async with streaming(url, **options).run() as host:
        await host.publish("s", [record(Ping(n=i), stream="s", correlation_id="c")
                                 for i in range(3)], external=False)
        consumer = await host.open_consumer("sub", "c1")
        return [d.event.n for d in await collect(consumer, 3)]


@pytest.fixture
def redis_with_password(tmp_path: Path):
    with running_redis(tmp_path / "redis", extra_args=["--requirepass", "s3cret-pw"]) as server:
        yield server


async def test_password_in_the_url(redis_with_password):
    port = redis_with_password.port
    assert await round_trip(f"redis://:s3cret-pw@127.0.0.1:{port}/0") == [0, 1, 2]
    for url in (f"redis://:wrong-pw@127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/0"):
        with pytest.raises(ConfigError) as info:
            await round_trip(url)
        message = str(info.value)
        assert "store.options.url" in message and "credentials" in message
        assert "wrong-pw" not in message and "s3cret-pw" not in message


@pytest.fixture
def tls_redis(tmp_path: Path):
    cert, key = self_signed_certificate(tmp_path)
    started = False
    try:
        with running_redis(tmp_path / "redis", tls=True, extra_args=[
                "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]) as server:
            started = True
            yield server, cert
    except RuntimeError as exc:
        if started:
            raise
        pytest.skip(f"this redis-server does not serve TLS: {exc}")  # built without TLS


async def test_tls_with_rediss(tls_redis):
    server, ca = tls_redis
    url = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    assert await round_trip(url) == [0, 1, 2]
    # plain redis:// to the TLS port cannot work: a clear, retryable error, not a hang
    with pytest.raises(StoreUnavailableError) as info:
        await round_trip(f"redis://127.0.0.1:{server.port}/0", socket_timeout=2.0)
    assert f"127.0.0.1:{server.port}" in str(info.value)
