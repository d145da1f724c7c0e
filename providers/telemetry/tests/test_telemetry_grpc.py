"""A remote consumer over gRPC is counted by the same engine hooks as an in-process one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from svrnty_events.events import record
from svrnty_events_telemetry import telemetry_of

from test_telemetry_metrics import (
    STREAM,
    TIMEOUT,
    TelemetryPing,
    samples,
    scrape_text,
    streaming,
    value,
)

grpc_client = pytest.importorskip("svrnty_events_grpc", reason="svrnty-events-grpc is not installed")


async def scrape_until(url: str, done: Callable[[dict], bool]) -> dict:
    """Scrape until ``done(samples)``: remote acks and nacks reach the engine asynchronously."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            s = samples(await scrape_text(url))
            if done(s):
                return s
            await asyncio.sleep(0.02)


async def test_remote_consumer_is_counted(tmp_path: Path) -> None:
    s = streaming("memory", tmp_path)
    s.add_delivery("grpc", host="127.0.0.1", port=0)
    async with s.run() as host:
        telemetry = telemetry_of(host)
        assert telemetry is not None and telemetry.metrics_url
        url = telemetry.metrics_url
        [endpoint] = [e for e in host.endpoints() if e.startswith("grpc")]
        await host.publish(STREAM, [record(TelemetryPing(n=n), stream=STREAM,
                                           correlation_id=f"wf-{n}") for n in range(5)],
                           external=False)
        async with grpc_client.EventClient(endpoint, event_types=[TelemetryPing]) as client:
            async with client.subscribe("billing", "remote-1", auto_ack=False) as deliveries:
                got = []
                async with asyncio.timeout(TIMEOUT):
                    async for d in deliveries:
                        got.append(d)
                        if d.event.n == 0:  # on its second attempt: dead-lettered
                            await d.nack(delay=0.0, reason="poison")
                        else:
                            await d.ack()
                        if len(got) == 6:  # five, and the nacked one again
                            break
                assert [d.attempt for d in got if d.event.n == 0] == [1, 2]
                s1 = await scrape_until(url, lambda m: value(
                    m, "svrnty_events_dead_lettered_total", subscription="billing") == 1)
                assert value(s1, "svrnty_events_consumers", subscription="billing") == 1
        s2 = await scrape_until(url, lambda m: value(
            m, "svrnty_events_consumers", subscription="billing") == 0)
    assert value(s2, "svrnty_events_delivered_total", subscription="billing",
                 attempt_class="first") == 5
    assert value(s2, "svrnty_events_delivered_total", subscription="billing",
                 attempt_class="redelivery") == 1
    assert value(s2, "svrnty_events_acked_total", subscription="billing") == 4
    assert value(s2, "svrnty_events_nacked_total", subscription="billing") == 1
    assert value(s2, "svrnty_events_dead_lettered_total", subscription="billing") == 1
    assert value(s2, "svrnty_events_in_flight", subscription="billing") == 0
