"""Connecting to a Redis that wants a password, or TLS (rediss://): it works end to end with
the right settings, and the wrong ones give a clear error (a password never appears in it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from svrnty_events import EventStreaming
from svrnty_events.errors import ConfigError, StoreUnavailableError
from svrnty_events.events import Event, record
from svrnty_events.testing import collect

from redis_server_proc import RedisServer


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
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    server = RedisServer(tmp_path / "redis", extra_args=["--requirepass", "s3cret-pw"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
    if shutil.which("redis-server") is None or shutil.which("openssl") is None:
        pytest.skip("redis-server and openssl are needed")
    folder = tmp_path / "tls"
    folder.mkdir()
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=30)
    server = RedisServer(tmp_path / "redis", tls=True, extra_args=[
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"])
    try:
        server.start()
    except RuntimeError as exc:  # a redis-server built without TLS
        pytest.skip(f"this redis-server does not serve TLS: {exc}")
    try:
        yield server, cert
    finally:
        server.stop()


async def test_tls_with_rediss(tls_redis):
    server, ca = tls_redis
    url = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    assert await round_trip(url) == [0, 1, 2]
    # plain redis:// to the TLS port cannot work: a clear, retryable error, not a hang
    with pytest.raises(StoreUnavailableError) as info:
        await round_trip(f"redis://127.0.0.1:{server.port}/0", socket_timeout=2.0)
    assert f"127.0.0.1:{server.port}" in str(info.value)
