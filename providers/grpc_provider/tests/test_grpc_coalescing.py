"""A remote consumer that falls behind: the server sends what became ready meanwhile in fewer,
larger messages; nothing is lost, duplicated or reordered by it."""

from __future__ import annotations

import asyncio
import json
import sys

from conftest import OrderPlaced, running, target, within

from svrnty_events.events import record
from svrnty_events_grpc import client as grpc_client
from svrnty_events_grpc import wire

COUNT = 600

# a consumer in its own process whose event loop stalls now and then (a blocking call in the
# loop body): its transport stops reading, so the server's writes wait
SLOW_CONSUMER = f"""
import asyncio, json, sys, time
from svrnty_events_grpc import EventClient
async def main():
    seen = []
    async with EventClient(sys.argv[1]) as c:
        async with c.subscribe("work", "slow", window=1000) as deliveries:
            print("ready", flush=True)
            async for d in deliveries:
                seen.append([json.loads(d.data)["order_id"], d.attempt])
                if len(seen) % 100 == 1:
                    time.sleep(0.05)
                if len(seen) == {COUNT}:
                    break
    print(json.dumps(seen), flush=True)
asyncio.run(main())
"""


def test_loopback_clients_keep_a_small_receive_window_unless_told_otherwise():
    options = dict(grpc_client.EventClient("127.0.0.1:6000")._options)
    assert options["grpc.http2.bdp_probe"] == 0
    assert options["grpc.http2.lookahead_bytes"] == 1024
    mine = dict(grpc_client.EventClient("localhost:6000", options=[
        ("grpc.http2.lookahead_bytes", 65536)])._options)
    assert mine["grpc.http2.lookahead_bytes"] == 65536
    remote = dict(grpc_client.EventClient("10.1.2.3:6000")._options)
    assert "grpc.http2.bdp_probe" not in remote and "grpc.http2.lookahead_bytes" not in remote


async def test_a_consumer_that_falls_behind_gets_every_event_once_in_order(tmp_path,
                                                                           monkeypatch):
    batches: list[int] = []
    encode = wire.events_messages

    def counting(deliveries, limit):
        deliveries = list(deliveries)
        batches.append(len(deliveries))
        return encode(deliveries, limit)

    monkeypatch.setattr(wire, "events_messages", counting)
    script = tmp_path / "slow.py"
    script.write_text(SLOW_CONSUMER)
    async with running() as host:
        proc = await asyncio.create_subprocess_exec(sys.executable, str(script), target(host),
                                                    stdout=asyncio.subprocess.PIPE)
        try:
            assert (await within(proc.stdout.readline(), 30)).strip() == b"ready"
            for i in range(COUNT):  # one at a time, as requests of a service would
                await host.publish("orders", [record(OrderPlaced(order_id=i, amount=1.0),
                                                     stream="orders",
                                                     correlation_id=f"wf-{i % 7}")],
                                   external=False)
                await asyncio.sleep(0)
            seen = json.loads(await within(proc.stdout.readline(), 60))
            assert await within(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert seen == [[i, 1] for i in range(COUNT)]  # each once, in order, first attempt
    assert sum(batches) == COUNT
    assert max(batches) > 1  # what became ready while a write waited went together
