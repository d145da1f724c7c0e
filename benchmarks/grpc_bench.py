"""gRPC scenarios: one stream to one remote consumer in another process through the gRPC
provider, with acks; beside raw grpc.aio server streams (one message per event, and 100 events
per message) to a client in another process."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from svrnty_events import EventStreaming
from svrnty_events.events import record

from .common import CountingWorkers, Result, Stopwatch, Tick, latency_stats, streaming

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = b'{"n":12345,"sent_ns":0}'


async def start_worker(*args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.grpc_worker", *args, cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, limit=1 << 26)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if line.strip() != b"ready":
        proc.kill()
        raise RuntimeError(f"benchmark worker did not start: {line!r}")
    return proc


async def finish_worker(proc: asyncio.subprocess.Process, timeout: float = 300) -> dict:
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        await asyncio.wait_for(proc.wait(), 30)
        return json.loads(line)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def shared(n: int, processes: int, per_process: int) -> float:
    """Events/s for ``processes`` worker processes of ``per_process`` remote consumers each,
    sharing one exclusive subscription: from the first publish until the workers together
    reported ``n`` events."""
    s = streaming(window=2000)
    s.add_delivery("grpc", port=0, max_batch=500)
    async with s.run() as host:
        target = f"127.0.0.1:{host.providers['grpc'].port}"
        argv = ["benchmarks.grpc_worker", "share", target, "sub0", str(per_process)]
        async with CountingWorkers([argv] * processes) as workers:
            batch = [record(Tick(n=i), stream="s0", correlation_id="bench") for i in range(n)]
            started = time.perf_counter()
            for i in range(0, n, 500):
                await host.publish("s0", batch[i:i + 500], external=False)
                await asyncio.sleep(0)
            await workers.wait_total(n)
            return n / (time.perf_counter() - started)


async def ours(n: int, rate: int | None = None) -> dict:
    s = streaming(window=2000)
    s.add_delivery("grpc", port=0, max_batch=500)
    async with s.run() as host:
        target = f"127.0.0.1:{host.providers['grpc'].port}"
        args = ["ours", target, "sub0", str(n)] + (["latency"] if rate else [])
        proc = await start_worker(*args)
        with Stopwatch() as sw:
            if rate is None:
                batch = [record(Tick(n=i), stream="s0", correlation_id="bench")
                         for i in range(n)]
                for i in range(0, n, 500):
                    await host.publish("s0", batch[i:i + 500], external=False)
                    await asyncio.sleep(0)
            else:
                loop = asyncio.get_running_loop()
                start = loop.time()
                sent = 0
                while sent < n:
                    due = min(int((loop.time() - start) * rate) + 1, n)
                    while sent < due:
                        e = record(Tick(n=sent), stream="s0", correlation_id="bench",
                                   headers={"sent_ns": str(time.monotonic_ns())})
                        await host.publish("s0", [e], external=False)
                        sent += 1
                        await asyncio.sleep(0)
                    await asyncio.sleep(0.0005)
            result = await finish_worker(proc)
        result["wall"] = sw.elapsed
        return result


async def raw(n: int, per_message: int) -> float:
    messages = n // per_message
    body = per_message.to_bytes(4, "big") + PAYLOAD * per_message

    async def stream(request: bytes, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        for _ in range(messages):
            yield body

    return await _raw_rate("Stream", grpc.unary_stream_rpc_method_handler, stream,
                           "raw", str(messages * per_message))


async def _raw_rate(method: str, kind: Any, implementation: Any, *worker_args: str) -> float:
    """Events/s a worker reports against a raw grpc.aio server of one ``bench.Raw`` method
    (bytes in, bytes out); the worker gets the server's target after its mode."""
    handler = grpc.method_handlers_generic_handler("bench.Raw", {
        method: kind(implementation, request_deserializer=lambda b: b,
                     response_serializer=lambda b: b)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        mode, *rest = worker_args
        proc = await start_worker(mode, f"127.0.0.1:{port}", *rest)
        result = await finish_worker(proc)
        return result["count"] / result["elapsed"]
    finally:
        await server.stop(1)


async def ours_publish(n: int, callers: int) -> float:
    """Events/s published by ``callers`` concurrent one-event ``EventClient.publish`` calls in
    another process, to a cross-service stream of the host (memory store)."""
    s = EventStreaming()
    s.add_stream("in0", scope="cross_service")
    s.add_delivery("grpc", port=0)
    async with s.run() as host:
        target = f"127.0.0.1:{host.providers['grpc'].port}"
        proc = await start_worker("publish", target, "in0", str(n), str(callers))
        result = await finish_worker(proc)
        info = await host.stream_info("in0")
        if info.next_sequence != n:
            raise RuntimeError(f"gRPC publish: {info.next_sequence:,} events appended, "
                               f"{n:,} published")
        return result["count"] / result["elapsed"]


async def raw_publish(n: int, callers: int) -> float:
    async def publish(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request[:16]

    return await _raw_rate("Publish", grpc.unary_unary_rpc_method_handler, publish,
                           "rawpub", str(n), str(callers))


async def run(quick: bool, progress) -> list[Result]:  # type: ignore[no-untyped-def]
    n = 50_000 if quick else 200_000
    progress("gRPC: raw grpc.aio stream, one message per event")
    raw_one = await raw(n // 5, 1)
    progress("gRPC: raw grpc.aio stream, 100 events per message")
    raw_batch = await raw(n * 5, 100)
    progress("gRPC: ours, one stream to one remote consumer with acks")
    result = await ours(n)
    rate = result["count"] / result["elapsed"]
    results = [
        Result("gRPC remote consumer, acked", rate, baseline="raw grpc.aio 1 event/msg",
               baseline_events_per_s=raw_one, ratio=rate / raw_one),
        Result("gRPC remote consumer, acked (vs batched raw)", rate,
               baseline="raw grpc.aio 100 events/msg", baseline_events_per_s=raw_batch,
               ratio=rate / raw_batch),
    ]
    # remote consumers sharing one exclusive subscription, measured alike: from the first
    # publish until the worker processes together reported every event
    progress("gRPC: 1 remote consumer (1 process), shared-work measurement")
    one = await shared(n, 1, 1)
    for processes, per_process in ((10, 1), (10, 10)):
        consumers = processes * per_process
        progress(f"gRPC: {consumers} remote consumers in {processes} processes")
        many_rate = await shared(n, processes, per_process)
        results.append(Result(f"gRPC {consumers} remote consumers ({processes} processes)",
                              many_rate, baseline="1 remote consumer, same measurement",
                              baseline_events_per_s=one, ratio=many_rate / one))
    callers = 100
    progress(f"gRPC: raw grpc.aio unary calls, one event each, {callers} callers")
    raw_pub = await raw_publish(n // 10, callers)
    progress(f"gRPC: ours, publish() of one event each, {callers} callers")
    pub = await ours_publish(n // 2, callers)
    results.append(Result(f"gRPC publish, 1 event per call, {callers} callers", pub,
                          baseline=f"raw grpc.aio unary, 1 event per call, {callers} callers",
                          baseline_events_per_s=raw_pub, ratio=pub / raw_pub))
    seconds = 1.0 if quick else 3.0
    # paced: where the per-event cost would turn into queueing, p99 climbs steeply
    for paced_rate in (1_000, 5_000, 20_000):
        progress(f"gRPC: latency at {paced_rate:,} events/s")
        lat = await ours(int(paced_rate * seconds), rate=paced_rate)
        p50, p99, p999 = latency_stats(lat["latencies_ns"])
        results.append(Result(f"gRPC latency @{paced_rate // 1000}k/s", paced_rate,
                              p50_us=p50, p99_us=p99, extra={"p99_9_us": p999}))
    return results
