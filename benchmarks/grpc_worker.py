"""The remote side of the gRPC benchmarks, run in its own process (each freezes its start-up
heap once connected, as the gRPC provider's README advises a client; see svrnty_events.heap):

    python -m benchmarks.grpc_worker ours TARGET SUBSCRIPTION COUNT [latency]
    python -m benchmarks.grpc_worker raw TARGET COUNT
    python -m benchmarks.grpc_worker share TARGET SUBSCRIPTION CONSUMERS
    python -m benchmarks.grpc_worker publish TARGET STREAM COUNT CALLERS
    python -m benchmarks.grpc_worker rawpub TARGET COUNT CALLERS

Prints ``ready`` once subscribed, then one JSON line with what it measured."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


async def ours(target: str, subscription: str, count: int, latency: bool) -> dict:
    from svrnty_events.heap import freeze_startup_heap
    from svrnty_events_grpc.client import EventClient

    samples: list[int] = []
    async with EventClient(target) as client:
        async with client.subscribe(subscription, "bench-remote", window=2000) as deliveries:
            freeze_startup_heap()  # as the gRPC provider's README advises a client
            print("ready", flush=True)
            seen = 0
            start = None
            async for d in deliveries:
                if start is None:
                    start = time.perf_counter()
                if latency:
                    samples.append(time.monotonic_ns() - int(d.headers["sent_ns"]))
                seen += 1
                if seen >= count:
                    break
            elapsed = time.perf_counter() - (start or time.perf_counter())
    return {"count": seen, "elapsed": elapsed, "latencies_ns": samples}


async def share(target: str, subscription: str, consumers: int) -> None:
    """``consumers`` gRPC streams (a channel each, consumer ids ``bench-PID-N``) sharing the
    work of an exclusive subscription. Prints ``ready`` once all are open, then the count of
    events received and acked so far whenever it changed (every 20 ms at most), until stdin
    closes."""
    import os

    from svrnty_events.heap import freeze_startup_heap
    from svrnty_events_grpc.client import EventClient

    seen = 0
    opened = 0
    all_open = asyncio.Event()

    async def consume(i: int) -> None:
        nonlocal seen, opened
        async with EventClient(target) as client:
            async with client.subscribe(subscription, f"bench-{os.getpid()}-{i}",
                                        window=max(2000 // consumers, 20)) as deliveries:
                opened += 1
                if opened == consumers:
                    all_open.set()
                async for _ in deliveries:
                    seen += 1

    tasks = [asyncio.create_task(consume(i)) for i in range(consumers)]
    await asyncio.wait_for(all_open.wait(), 120)
    freeze_startup_heap()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    eof = asyncio.ensure_future(reader.read())
    last = -1
    while not eof.done():
        if seen != last:
            last = seen
            print(seen, flush=True)
        await asyncio.wait([eof], timeout=0.02)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def raw(target: str, count: int) -> dict:
    import grpc

    from svrnty_events.heap import freeze_startup_heap

    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_stream("/bench.Raw/Stream", request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        await channel.channel_ready()
        freeze_startup_heap()  # as the other workers do
        print("ready", flush=True)
        seen = 0
        start = time.perf_counter()
        async for message in call(b""):
            seen += int.from_bytes(message[:4], "big")
            if seen >= count:
                break
        elapsed = time.perf_counter() - start
    return {"count": seen, "elapsed": elapsed}


async def publish(target: str, stream: str, count: int, callers: int) -> dict:
    """``callers`` tasks publishing one event per ``EventClient.publish`` call until ``count``
    events were published (and answered)."""
    from svrnty_events.heap import freeze_startup_heap
    from svrnty_events_grpc.client import EventClient

    from .common import Tick

    async with EventClient(target) as client:
        await client.channel.channel_ready()
        freeze_startup_heap()
        print("ready", flush=True)
        elapsed = await _callers(count, callers, lambda n: client.publish(
            stream, [Tick(n=n)], correlation_id="bench"))
        return {"count": count, "elapsed": elapsed, "requests": client.publish_requests}


async def rawpub(target: str, count: int, callers: int) -> dict:
    """The same with raw grpc.aio unary calls, one event's bytes per call."""
    import grpc

    from svrnty_events.heap import freeze_startup_heap

    body = b'{"n":12345,"sent_ns":0}'
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/bench.Raw/Publish", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        await channel.channel_ready()
        freeze_startup_heap()
        print("ready", flush=True)
        elapsed = await _callers(count, callers, lambda n: call(body))
        return {"count": count, "elapsed": elapsed}


async def _callers(count: int, callers: int, send: Any) -> float:
    """Seconds for ``callers`` tasks to make ``count`` awaited ``send(n)`` calls between them."""
    left = count

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await send(left)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return time.perf_counter() - start


def main() -> None:
    mode = sys.argv[1]
    if mode == "ours":
        result = asyncio.run(ours(sys.argv[2], sys.argv[3], int(sys.argv[4]),
                                  len(sys.argv) > 5 and sys.argv[5] == "latency"))
    elif mode == "publish":
        result = asyncio.run(publish(sys.argv[2], sys.argv[3], int(sys.argv[4]),
                                     int(sys.argv[5])))
    elif mode == "rawpub":
        result = asyncio.run(rawpub(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    elif mode == "share":
        asyncio.run(share(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        return
    else:
        result = asyncio.run(raw(sys.argv[2], int(sys.argv[3])))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
