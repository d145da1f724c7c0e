"""The remote side of the gRPC benchmarks, run in its own process:

    python -m benchmarks.grpc_worker ours TARGET SUBSCRIPTION COUNT [latency]
    python -m benchmarks.grpc_worker raw TARGET COUNT

Prints ``ready`` once subscribed, then one JSON line with what it measured."""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def ours(target: str, subscription: str, count: int, latency: bool) -> dict:
    from svrnty_events_grpc.client import EventClient

    samples: list[int] = []
    async with EventClient(target) as client:
        async with client.subscribe(subscription, "bench-remote", window=2000) as deliveries:
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


async def raw(target: str, count: int) -> dict:
    import grpc

    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_stream("/bench.Raw/Stream", request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        await channel.channel_ready()
        print("ready", flush=True)
        seen = 0
        start = time.perf_counter()
        async for message in call(b""):
            seen += int.from_bytes(message[:4], "big")
            if seen >= count:
                break
        elapsed = time.perf_counter() - start
    return {"count": seen, "elapsed": elapsed}


def main() -> None:
    mode = sys.argv[1]
    if mode == "ours":
        result = asyncio.run(ours(sys.argv[2], sys.argv[3], int(sys.argv[4]),
                                  len(sys.argv) > 5 and sys.argv[5] == "latency"))
    else:
        result = asyncio.run(raw(sys.argv[2], int(sys.argv[3])))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
