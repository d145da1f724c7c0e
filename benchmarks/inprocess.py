"""In-process scenarios: the memory store and the engine against a raw asyncio.Queue."""

from __future__ import annotations

import asyncio
import gc
import time

from svrnty_events.testing import live_deliveries

from .common import Result, Stopwatch, current_rss_mb, latency_stats, streaming, ticks
from .common import Tick
from svrnty_events.events import record


async def raw_queue_throughput(n: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=100)

    async def produce() -> None:
        for i in range(n):
            await queue.put(i)

    async def consume() -> None:
        for _ in range(n):
            await queue.get()
            queue.task_done()

    with Stopwatch() as sw:
        await asyncio.gather(produce(), consume())
    return n / sw.elapsed


async def ours_throughput(n: int, batch: int = 100, *, telemetry: bool = False) -> float:
    """publish -> consume -> ack through the memory store, at-least-once, one consumer
    (``telemetry``: with the telemetry plugin's metrics on, no exporter)."""
    events = ticks("s0", n)
    s = streaming()
    if telemetry:
        s.add_telemetry()
    async with s.run() as host:
        async def produce() -> None:
            for i in range(0, n, batch):
                await host.publish("s0", events[i:i + batch], external=False)
                await asyncio.sleep(0)

        async def consume() -> None:
            seen = 0
            async with host.subscribe("sub0", "bench") as deliveries:
                async for _ in deliveries:
                    seen += 1
                    if seen == n:
                        break

        with Stopwatch() as sw:
            await asyncio.gather(produce(), consume())
    return n / sw.elapsed


async def paced(rate: int, seconds: float, send, receive_loop) -> list[int]:  # type: ignore[no-untyped-def]
    """Send ``rate`` events/s for ``seconds``; returns latencies (ns) measured by the receiver."""
    latencies: list[int] = []
    total = int(rate * seconds)
    done = asyncio.Event()
    consumer = asyncio.ensure_future(receive_loop(latencies, total, done))
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while sent < total:
        due = int((loop.time() - start) * rate) + 1
        while sent < min(due, total):
            await send(sent)
            sent += 1
            await asyncio.sleep(0)  # let the receiver run between sends, as true pacing would
        await asyncio.sleep(0.0005)
    await asyncio.wait_for(done.wait(), 30)
    await consumer
    return latencies


async def raw_queue_latency(rate: int, seconds: float) -> list[int]:
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def send(i: int) -> None:
        queue.put_nowait(time.perf_counter_ns())

    async def receive(latencies: list[int], total: int, done: asyncio.Event) -> None:
        for _ in range(total):
            sent = await queue.get()
            latencies.append(time.perf_counter_ns() - sent)
        done.set()

    return await paced(rate, seconds, send, receive)


async def ours_latency(rate: int, seconds: float) -> list[int]:
    async with streaming().run() as host:
        async def send(i: int) -> None:
            e = record(Tick(n=i, sent_ns=time.perf_counter_ns()), stream="s0",
                       correlation_id="bench")
            await host.publish("s0", [e], external=False)

        async def receive(latencies: list[int], total: int, done: asyncio.Event) -> None:
            seen = 0
            async with host.subscribe("sub0", "bench") as deliveries:
                async for d in deliveries:
                    latencies.append(time.perf_counter_ns() - d.event.sent_ns)
                    seen += 1
                    if seen == total:
                        break
            done.set()

        return await paced(rate, seconds, send, receive)


async def scaling(consumers: int, mode: str, n: int) -> float:
    """n events through one stream to ``consumers`` consumers (exclusive: shared; broadcast:
    each consumer gets all n). Returns deliveries acked per second."""
    events = ticks("s0", n)
    expected = n if mode == "exclusive" else n * consumers
    async with streaming(mode=mode).run() as host:
        cs = [await host.open_consumer("sub0", f"c{i}") for i in range(consumers)]
        acked = 0
        finished = asyncio.Event()

        async def run(c) -> None:  # type: ignore[no-untyped-def]
            nonlocal acked
            while not finished.is_set():
                batch = await c.fetch(timeout=0.05)
                if batch:
                    await c.ack([d.id for d in batch])
                    acked += len(batch)
                    if acked >= expected:
                        finished.set()

        with Stopwatch() as sw:
            tasks = [asyncio.ensure_future(run(c)) for c in cs]
            for i in range(0, n, 500):
                await host.publish("s0", events[i:i + 500], external=False)
                await asyncio.sleep(0)
            await asyncio.wait_for(finished.wait(), 120)
        await asyncio.gather(*tasks)
    return expected / sw.elapsed


async def streams_scaling(streams: int, n: int) -> float:
    """n events spread over ``streams`` streams, one consumer each."""
    per = max(1, n // streams)
    async with streaming(streams=streams).run() as host:
        batches = {i: ticks(f"s{i}", per) for i in range(streams)}

        async def consume(i: int) -> None:
            c = await host.open_consumer(f"sub{i}", "c")
            got = 0
            while got < per:
                batch = await c.fetch(timeout=5)
                await c.ack([d.id for d in batch])
                got += len(batch)

        with Stopwatch() as sw:
            tasks = [asyncio.ensure_future(consume(i)) for i in range(streams)]
            for i in range(streams):
                evs = batches[i]
                for j in range(0, per, 500):
                    await host.publish(f"s{i}", evs[j:j + 500], external=False)
                await asyncio.sleep(0)
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return per * streams / sw.elapsed


async def slow_consumer(n: int) -> dict[str, float]:
    """n events published to a stalled consumer: what it holds, what memory does."""
    gc.collect()
    rss_before = current_rss_mb()
    async with streaming(window=100).run() as host:
        c = await host.open_consumer("sub0", "stalled")
        await c.fetch(timeout=0.01)
        chunk = 10_000
        for i in range(0, n, chunk):
            await host.publish("s0", ticks("s0", chunk), external=False)
        got = await c.fetch(timeout=1)
        more = await c.fetch(timeout=0.05)
        live = sum(live_deliveries().values())
        info = await host.stream_info("s0")
        rss = current_rss_mb()
        return {"held": len(c.held), "handed_over": len(got) + len(more),
                "live_delivery_objects": live, "stream_length": info.length,
                "rss_growth_mb": round(rss - rss_before, 1)}


async def run(quick: bool, progress) -> list[Result]:  # type: ignore[no-untyped-def]
    n = 50_000 if quick else 300_000
    results: list[Result] = []

    progress("in-process throughput")
    base = max([await raw_queue_throughput(n) for _ in range(2)])
    ours = max([await ours_throughput(n) for _ in range(2)])
    results.append(Result("in-process publish->consume->ack", ours, baseline="asyncio.Queue",
                          baseline_events_per_s=base, ratio=ours / base))

    progress("in-process latency at 10,000 events/s")
    seconds = 1.0 if quick else 3.0
    raw = latency_stats(await raw_queue_latency(10_000, seconds))
    lat = latency_stats(await ours_latency(10_000, seconds))
    results.append(Result("in-process latency @10k/s", 10_000, p50_us=lat[0], p99_us=lat[1],
                          baseline="asyncio.Queue", ratio=None,
                          extra={"p99_9_us": lat[2], "baseline_p50_us": raw[0],
                                 "baseline_p99_us": raw[1], "baseline_p99_9_us": raw[2]}))

    m = 20_000 if quick else 100_000
    for mode in ("exclusive", "broadcast"):
        for consumers in (1, 10, 100):
            progress(f"scaling: {consumers} {mode} consumers")
            rate = await scaling(consumers, mode, m if mode == "exclusive" else m // consumers
                                 if consumers > 1 else m)
            results.append(Result(f"scaling {mode} x{consumers} consumers", rate,
                                  baseline="asyncio.Queue", baseline_events_per_s=base,
                                  ratio=rate / base))
    for streams in (1, 10, 100):
        progress(f"scaling: {streams} streams")
        rate = await streams_scaling(streams, m)
        results.append(Result(f"scaling {streams} streams", rate, baseline="asyncio.Queue",
                              baseline_events_per_s=base, ratio=rate / base))

    count = 100_000 if quick else 1_000_000
    progress(f"slow consumer: {count:,} events to a stalled consumer")
    slow = await slow_consumer(count)
    results.append(Result(f"slow consumer ({count:,} events)", None, extra=slow))
    return results
