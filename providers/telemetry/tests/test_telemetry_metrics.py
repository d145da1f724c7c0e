"""The metrics a host serves at /metrics equal the true counts of a scripted scenario, on the
memory and the SQLite store, scraped over HTTP from the real endpoint."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from svrnty_events import EventStreaming, Workflow
from svrnty_events.errors import ConfigError
from svrnty_events.events import Event, record
from svrnty_events_telemetry import telemetry_of

TIMEOUT = 30.0
STREAM = "telemetry-orders"


class TelemetryPing(Event):
    n: int


class TelemetryPingPlaced(msgspec.Struct):
    n: int


class TelemetryOrderWorkflow(Workflow):
    pass


def streaming(store: str, tmp_path: Path, *, max_attempts: int = 2,
              options: dict[str, Any] | None = None) -> EventStreaming:
    if options is None:
        options = {"path": str(tmp_path / "events.db")} if store == "sqlite" else {}
    s = EventStreaming(store=store, store_options=options)
    s.add_stream(TelemetryOrderWorkflow, name=STREAM)
    s.add_subscription(STREAM, "billing", mode="exclusive", window=100,
                       max_delivery_attempts=max_attempts, visibility_timeout=60.0)
    s.add_subscription(STREAM, "audit", mode="broadcast")
    s.add_telemetry(prometheus={"host": "127.0.0.1", "port": 0})

    @s.command_handler(TelemetryPingPlaced, workflow=TelemetryOrderWorkflow)
    def place(command: TelemetryPingPlaced, workflow: TelemetryOrderWorkflow) -> int:
        workflow.emit(TelemetryPing(n=command.n))
        return command.n

    return s


async def scrape_text(url: str) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http:
        async with http.get(url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            return await response.text()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels without OpenTelemetry's scope labels) -> value."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset((k, v) for k, v in sample.labels.items()
                               if not k.startswith("otel_scope"))
            out[(sample.name, labels)] = sample.value
    return out


def value(s: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return s.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A redis-server of this module's own (skipped without redis-server)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt install redis-server)")
    from svrnty_events_redis.server import running_redis
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_options(store: str, tmp_path: Path, request: pytest.FixtureRequest
                  ) -> dict[str, Any]:
    if store == "sqlite":
        return {"path": str(tmp_path / "events.db")}
    if store == "redis":
        import uuid
        return {"url": request.getfixturevalue("redis_url"),
                "key_prefix": f"telemetry-{uuid.uuid4().hex[:8]}:"}
    return {}


async def fetch_until(consumer: Any, wanted: int) -> list[Any]:
    """Fetch until ``wanted`` deliveries came (each fetch with a timeout)."""
    got: list[Any] = []
    async with asyncio.timeout(TIMEOUT):
        while len(got) < wanted:
            got += await consumer.fetch(timeout=TIMEOUT)
    return got


async def test_metrics_equal_the_true_counts(store: str, store_options: dict[str, Any],
                                             tmp_path: Path) -> None:
    n_commands, n_published = 6, 4
    appended = n_commands + n_published
    poison = {1, 4, 8}  # nacked on both attempts: dead-lettered on the second
    async with streaming(store, tmp_path, options=store_options).run() as host:
        telemetry = telemetry_of(host)
        assert telemetry is not None and telemetry.prometheus_port
        url = telemetry.metrics_url
        assert url == f"http://127.0.0.1:{telemetry.prometheus_port}/metrics"

        for n in range(n_commands):
            await host.send(TelemetryPingPlaced(n=n))
        await host.publish(STREAM, [record(TelemetryPing(n=n), stream=STREAM,
                                           correlation_id=f"wf-{n}")
                                    for n in range(n_commands, appended)], external=False)

        consumer = await host.open_consumer("billing", "worker-1")
        first = await fetch_until(consumer, appended)
        assert sorted(d.event.n for d in first) == list(range(appended))
        s = samples(await scrape_text(url))
        assert value(s, "svrnty_events_appended_total", stream=STREAM) == appended
        assert value(s, "svrnty_events_delivered_total", subscription="billing",
                     attempt_class="first") == appended
        assert value(s, "svrnty_events_in_flight", subscription="billing") == appended
        assert value(s, "svrnty_events_subscription_lag", subscription="billing",
                     group="shared") == appended  # all in flight: none settled
        assert value(s, "svrnty_events_consumers", subscription="billing") == 1
        assert value(s, "svrnty_events_consumers", subscription="audit") == 0
        assert value(s, "svrnty_events_delivery_latency_seconds_count",
                     subscription="billing") == appended

        for d in first:
            if d.event.n in poison:
                await d.nack(delay=0.0, reason="poison")
            else:
                await d.ack()
        again = await fetch_until(consumer, len(poison))
        assert sorted(d.event.n for d in again) == sorted(poison)
        assert {d.attempt for d in again} == {2}
        for d in again:
            await d.nack(delay=0.0, reason="poison")

        acked = appended - len(poison)
        await telemetry.refresh_store_gauges(force=True)  # not the cached store figures
        s = samples(await scrape_text(url))
        assert value(s, "svrnty_events_acked_total", subscription="billing") == acked
        assert value(s, "svrnty_events_nacked_total", subscription="billing") == len(poison)
        assert value(s, "svrnty_events_dead_lettered_total",
                     subscription="billing") == len(poison)
        assert value(s, "svrnty_events_delivered_total", subscription="billing",
                     attempt_class="redelivery") == len(poison)
        assert value(s, "svrnty_events_in_flight", subscription="billing") == 0
        # billing settled everything (acked or dead-lettered); audit, a broadcast
        # subscription nobody consumes, has no group: no series
        lag_key = ("svrnty_events_subscription_lag",
                   frozenset({"subscription": "billing", "group": "shared"}.items()))
        assert s[lag_key] == 0
        assert value(s, "svrnty_events_dead_letters", subscription="billing") == len(poison)
        assert value(s, "svrnty_events_dead_letters", subscription="audit") == 0
        age = value(s, "svrnty_events_oldest_dead_letter_age_seconds", subscription="billing")
        assert 0.0 <= age < TIMEOUT
        # nothing was counted for the subscription nobody consumes
        assert value(s, "svrnty_events_delivered_total", subscription="audit",
                     attempt_class="first") == 0

        await consumer.close()
        s = samples(await scrape_text(url))
        assert value(s, "svrnty_events_consumers", subscription="billing") == 0
        assert host.banner().count(url) == 1


async def test_in_process_subscriber_with_auto_ack_is_counted(tmp_path: Path) -> None:
    async with streaming("memory", tmp_path).run() as host:
        for n in range(5):
            await host.send(TelemetryPingPlaced(n=n))
        seen = 0
        async with asyncio.timeout(TIMEOUT):
            async with host.subscribe("audit", "reader") as deliveries:
                async for _ in deliveries:
                    seen += 1
                    if seen == 5:
                        break
        telemetry = telemetry_of(host)
        assert telemetry is not None and telemetry.metrics_url
        s = samples(await scrape_text(telemetry.metrics_url))
        assert value(s, "svrnty_events_delivered_total", subscription="audit",
                     attempt_class="first") == 5
        # auto-acks are flushed in batches; leaving the loop settles them all
        assert value(s, "svrnty_events_acked_total", subscription="audit") == 5
        assert value(s, "svrnty_events_consumers", subscription="audit") == 0


async def test_metrics_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
    async with streaming("memory", tmp_path).run() as host:
        await host.send(TelemetryPingPlaced(n=1))
        consumer = await host.open_consumer("billing", "worker-1")
        [d] = await fetch_until(consumer, 1)
        await d.nack(delay=0.0)
        [d] = await fetch_until(consumer, 1)
        await d.nack(delay=0.0)
        telemetry = telemetry_of(host)
        assert telemetry is not None and telemetry.metrics_url
        text = await scrape_text(telemetry.metrics_url)
    assert "svrnty_events_dead_letters" in text
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                            capture_output=True, timeout=TIMEOUT)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


async def test_toml_configuration_and_banner(tmp_path: Path) -> None:
    config = tmp_path / "host.toml"
    config.write_text(f"""
[store]
plugin = "memory"

[[streams]]
name = "{STREAM}"

[[subscriptions]]
name = "billing"
stream = "{STREAM}"
mode = "exclusive"

[telemetry.prometheus]
host = "127.0.0.1"
port = 0
""")
    async with EventStreaming.from_toml(config).run() as host:
        telemetry = telemetry_of(host)
        assert telemetry is not None and telemetry.prometheus_port
        assert f"metrics {telemetry.metrics_url}" in host.banner()
        text = await scrape_text(str(telemetry.metrics_url))
        assert "svrnty_events_consumers" in text
    # stopped: the endpoint is closed
    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape_text(str(telemetry.metrics_url))


async def test_bad_options_name_the_field(tmp_path: Path) -> None:
    s = streaming("memory", tmp_path)
    s.add_telemetry(prometheus={"port": 70000})
    with pytest.raises(ConfigError, match=r"telemetry\.prometheus\.port"):
        async with s.run():
            pass


async def test_telemetry_section_without_the_plugin_is_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "memory")
    with pytest.raises(ConfigError, match="telemetry plugin is not loaded"):
        streaming("memory", tmp_path).build_host()


async def test_a_host_without_telemetry_observes_nothing(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVRNTY_EVENTS_PLUGINS", "memory,telemetry")
    s = EventStreaming()
    s.add_stream(TelemetryOrderWorkflow, name=STREAM)
    async with s.run() as host:
        assert host.pm.get_plugin("telemetry") is not None
        assert telemetry_of(host) is None
        assert host.engine.observers is None  # no observation hook is called at all


def test_the_kernel_imports_no_opentelemetry() -> None:
    code = ("import sys, asyncio\n"
            "from svrnty_events import EventStreaming\n"
            "async def main():\n"
            "    s = EventStreaming()\n"
            "    s.add_stream('s')\n"
            "    async with s.run():\n"
            "        pass\n"
            "asyncio.run(main())\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('opentelemetry', 'prometheus_client'))\n"
            "assert not bad, bad\n")
    import os
    import sys
    env = {**os.environ, "SVRNTY_EVENTS_PLUGINS": "memory"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr.decode()


def test_a_batch_is_bucketed_as_its_samples_one_by_one() -> None:
    """record_span (both ends in one bucket: one increment for the batch) gives the same bucket
    counts as bisecting each sample, for batches in order, and the sum within the batch's
    spread."""
    import random
    from bisect import bisect_left

    from svrnty_events_telemetry.metrics import LATENCY_BUCKETS, LatencyHistogram

    rng = random.Random(7)
    histogram = LatencyHistogram("h", "doc", "subscription")
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    true_sum = 0.0
    for n in range(2000):
        start = rng.choice([0.0, 0.0004, 0.0009, 0.003, 0.2, 400.0]) + rng.random() * 0.001
        size = rng.randint(1, 300)
        values = sorted((start + rng.random() * rng.choice([1e-5, 1e-3, 0.1])
                         for _ in range(size)), reverse=n % 2 == 0)
        histogram.record_span("s", iter(values), size, values[0], values[-1])
        for v in values:
            expected[bisect_left(LATENCY_BUCKETS, v)] += 1
        true_sum += sum(values)
    counts, total = histogram.series["s"]
    assert counts == expected
    assert sum(counts) == sum(expected)
    assert abs(total[0] - true_sum) <= 0.01 * true_sum
