"""Peer scenario: the same publish -> consume -> ack through FastStream's Redis Streams broker
(what a Python user would pick instead), beside raw redis-py, on a local redis-server. Skipped
with a note when redis-server or faststream is absent. With the Redis store plugin installed,
ours runs on the same Redis too."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

from .common import Result, Stopwatch, latency_stats
from .redis_server import redis_server


async def raw_redis(url: str, n: int) -> float:
    import redis.asyncio as redis

    client = redis.from_url(url)
    stream, group = f"raw-{uuid.uuid4().hex}", "g"
    await client.xgroup_create(stream, group, id="0", mkstream=True)
    try:
        async def produce() -> None:
            for i in range(0, n, 100):
                async with client.pipeline(transaction=False) as pipe:
                    for j in range(i, min(i + 100, n)):
                        pipe.xadd(stream, {"n": j})
                    await pipe.execute()

        async def consume() -> None:
            seen = 0
            while seen < n:
                reply = await client.xreadgroup(group, "c", {stream: ">"}, count=100, block=1000)
                for _, entries in reply or []:
                    ids = [entry_id for entry_id, _ in entries]
                    await client.xack(stream, group, *ids)
                    seen += len(ids)

        with Stopwatch() as sw:
            await asyncio.gather(produce(), consume())
        return n / sw.elapsed
    finally:
        await client.delete(stream)
        await client.aclose()


async def faststream_throughput(url: str, n: int, batch: bool) -> float:
    from faststream.redis import RedisBroker, StreamSub

    broker = RedisBroker(url, logger=None)
    stream = f"fs-{uuid.uuid4().hex}"
    done = asyncio.Event()
    seen = 0

    if batch:
        @broker.subscriber(stream=StreamSub(stream, group="g", consumer="c", batch=True,
                                            max_records=100))
        async def handle_batch(msgs: list[int]) -> None:
            nonlocal seen
            seen += len(msgs)
            if seen >= n:
                done.set()
    else:
        @broker.subscriber(stream=StreamSub(stream, group="g", consumer="c"))
        async def handle(msg: int) -> None:
            nonlocal seen
            seen += 1
            if seen >= n:
                done.set()

    async with broker:
        await broker.start()
        with Stopwatch() as sw:
            for i in range(0, n, 8):  # concurrent publishes, so the producer is no bottleneck
                await asyncio.gather(*(broker.publish(j, stream=stream)
                                       for j in range(i, min(i + 8, n))))
            await asyncio.wait_for(done.wait(), 300)
    return n / sw.elapsed


async def faststream_latency(url: str, rate: int, seconds: float) -> list[int]:
    from faststream.redis import RedisBroker, StreamSub

    broker = RedisBroker(url, logger=None)
    stream = f"fsl-{uuid.uuid4().hex}"
    latencies: list[int] = []
    total = int(rate * seconds)
    done = asyncio.Event()

    @broker.subscriber(stream=StreamSub(stream, group="g", consumer="c"))
    async def handle(sent_ns: int) -> None:
        latencies.append(time.perf_counter_ns() - sent_ns)
        if len(latencies) >= total:
            done.set()

    async with broker:
        await broker.start()
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while sent < total:
            due = min(int((loop.time() - start) * rate) + 1, total)
            while sent < due:
                await broker.publish(time.perf_counter_ns(), stream=stream)
                sent += 1
            await asyncio.sleep(0.0005)
        await asyncio.wait_for(done.wait(), 60)
    return latencies


async def run(quick: bool, progress) -> list[Result]:  # type: ignore[no-untyped-def]
    try:
        import faststream  # noqa: F401
        import redis  # noqa: F401
    except ImportError as exc:
        print(f"[benchmarks] peer: skipped ({exc}; pip install 'faststream[redis]')",
              file=sys.stderr)
        return []
    results: list[Result] = []
    with redis_server() as url:
        if url is None:
            print("[benchmarks] peer: skipped (redis-server is not installed)", file=sys.stderr)
            return []
        n = 5_000 if quick else 20_000
        progress("peer: raw redis-py streams")
        raw = await raw_redis(url, n)
        progress("peer: FastStream, one handler call per event")
        fs = await faststream_throughput(url, n, batch=False)
        progress("peer: FastStream batch subscriber")
        fsb = await faststream_throughput(url, n, batch=True)
        progress("peer: FastStream latency at 2,000 events/s")
        p50, p99, _ = latency_stats(await faststream_latency(url, 2_000, 1.0 if quick else 3.0))
        results.append(Result("peer FastStream redis, per event", fs, baseline="raw redis-py",
                              baseline_events_per_s=raw, ratio=fs / raw))
        results.append(Result("peer FastStream redis, batch", fsb, baseline="raw redis-py",
                              baseline_events_per_s=raw, ratio=fsb / raw))
        results.append(Result("peer FastStream redis latency @2k/s", 2_000, p50_us=p50,
                              p99_us=p99))
    return results
