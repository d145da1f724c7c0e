"""Traces across processes: a command sent over HTTP to the sample host (a real subprocess
with the telemetry plugin), its event consumed by a remote gRPC consumer in another process.
The consumer's ``process`` span belongs to the command's trace, its parent is the event's
creation context (the ``publish`` span), and both carry the messaging attributes."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("svrnty_sample")

import span_files  # noqa: E402  (this folder is on sys.path under pytest's rootdir layout)
from output_process import OutputProcess as Process  # noqa: E402
from svrnty_sample.app import default_config_path  # noqa: E402

TESTS = Path(__file__).resolve().parent
TIMEOUT = 30.0

LAUNCH = ("import sys; sys.path.insert(0, {tests!r}); import span_files; "
          "span_files.install({spans!r}); {body}")
HOST_BODY = "from svrnty_sample.app import main; sys.exit(main(sys.argv[1:]))"
CONSUMER_BODY = r"""
import asyncio
from svrnty_events_grpc import EventClient

async def consume(target):
    async with EventClient(target) as client:
        async with client.subscribe("user-analytics", "trace-consumer", auto_ack=False) as subs:
            print("subscribed", flush=True)
            delivery = await subs.next(timeout=60)
            assert delivery is not None, "no delivery within 60 s"
            await delivery.ack()
            print("acked", delivery.id, delivery.headers.get("traceparent"), flush=True)

asyncio.run(consume(sys.argv[1]))
"""


def launch(spans: Path, body: str, *args: str) -> list[str]:
    return [sys.executable, "-c", LAUNCH.format(tests=str(TESTS), spans=str(spans), body=body),
            *args]


def wait_spans(path: Path, predicate, timeout: float = TIMEOUT) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        spans = span_files.read(path)
        if predicate(spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


async def post_json(url: str, payload: dict) -> tuple[int, dict]:
    import aiohttp
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=payload) as response:
            return response.status, await response.json()


async def test_a_command_over_http_and_its_remote_consumer_share_one_trace(tmp_path: Path):
    config = tmp_path / "sample.toml"
    config.write_text(default_config_path().read_text()
                      + '\n[telemetry]\n[telemetry.prometheus]\nport = 0\n')
    host_spans, consumer_spans = tmp_path / "host.jsonl", tmp_path / "consumer.jsonl"
    env = dict(os.environ, PYTHONUNBUFFERED="1", SVRNTY_EVENTS_PLUGINS="memory,grpc,telemetry")
    host = Process(launch(host_spans, HOST_BODY, "--config", str(config), "--grpc-port", "0",
                          "--http-port", "0"), env)
    consumer = None
    try:
        host.wait_for(r"^svrnty-events host started")
        grpc_target = host.wait_for(r"endpoint:\s+grpc://(127\.0\.0\.1:\d+)").group(1)
        http_url = host.wait_for(r"endpoint:\s+(http://127\.0\.0\.1:\d+)/docs\s").group(1)
        host.wait_for(r"endpoint:\s+metrics http://127\.0\.0\.1:\d+/metrics")  # the banner
        consumer = Process(launch(consumer_spans, CONSUMER_BODY, grpc_target), env)
        consumer.wait_for(r"^subscribed")
        status, body = await post_json(f"{http_url}/api/command/addUser",
                                       {"name": "Ada", "email": "ada@example.com"})
        assert status == 200, body
        acked = consumer.wait_for(r"^acked (\S+) (\S+)")
        event_id, traceparent = acked.group(1), acked.group(2)
        assert consumer.proc.wait(TIMEOUT) == 0, "\n".join(consumer.lines)

        produced = wait_spans(host_spans, lambda s: any(x["name"] == "publish users" for x in s))
        send = next(s for s in produced if s["name"] == "send addUser")
        publish = next(s for s in produced if s["name"] == "publish users")
        consumed = wait_spans(consumer_spans,
                              lambda s: any(x["name"] == "process user-analytics" for x in s))
        [process] = [s for s in consumed if s["name"] == "process user-analytics"]
    finally:
        if consumer is not None:
            consumer.stop()
        host.stop()

    # one trace: send -> publish (producer, its context in the event's headers) -> process
    assert publish["parent_id"] == send["span_id"]
    assert publish["kind"] == "PRODUCER" and process["kind"] == "CONSUMER"
    assert re.fullmatch(f"00-{publish['trace_id']}-{publish['span_id']}-0[13]", traceparent)
    assert process["trace_id"] == send["trace_id"] == publish["trace_id"]
    assert process["parent_id"] == publish["span_id"]
    attributes = process["attributes"]
    assert attributes["messaging.system"] == "svrnty_events"
    assert attributes["messaging.destination.name"] == "users"
    assert attributes["messaging.destination.subscription.name"] == "user-analytics"
    assert attributes["messaging.client.id"] == "trace-consumer"
    assert attributes["messaging.message.id"] == event_id
    assert attributes["svrnty_events.event.type"] == "UserAdded"
    assert attributes["svrnty_events.delivery.attempt"] == 1
    assert attributes["svrnty_events.settlement"] == "ack"
    workflow_id = attributes["svrnty_events.correlation_id"]
    assert attributes["messaging.message.conversation_id"] == workflow_id
    assert publish["attributes"]["messaging.message.conversation_id"] == workflow_id
    assert publish["attributes"]["messaging.message.id"] == event_id
    assert process["status"] == "UNSET"
