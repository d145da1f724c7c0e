"""Hosts sharing a store: 2 host processes consuming one exclusive subscription on Redis (each
its own ``host.subscribe``, automatic acks), against 1, over the same number of events already
in the stream; alternating rounds, medians compared."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import svrnty_events_redis  # noqa: F401  (skipped when the plugin is not installed)

from svrnty_events import StreamType

from .common import Result, streaming, ticks
from .redis_server import redis_server

ROOT = Path(__file__).resolve().parent.parent


async def _round(url: str, hosts: int, n: int) -> float:
    options = {"url": url, "key_prefix": f"bench-hosts-{uuid.uuid4().hex[:8]}:"}
    s = streaming(stream_type=StreamType.PERSISTENT, window=500)
    s.config.store.plugin = "redis"
    s.config.store.options = options
    events = ticks("s0", n)
    async with s.run() as host:  # fills the stream; consumes nothing
        for i in range(0, n, 1000):
            await host.publish("s0", events[i:i + 1000], external=False)
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.hosts_worker", "redis", json.dumps(options), "sub0",
        cwd=str(ROOT), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        for _ in range(hosts)]
    try:
        for p in procs:
            line = await asyncio.wait_for(p.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError(f"benchmark host did not start: {line!r}")
        counts = [0] * hosts
        started = time.perf_counter()
        for p in procs:
            p.stdin.write(b"go\n")
            await p.stdin.drain()

        async def follow(i: int, p: asyncio.subprocess.Process) -> None:
            while sum(counts) < n:
                line = await p.stdout.readline()
                if not line:
                    raise RuntimeError("a benchmark host exited")
                counts[i] = int(line)

        followers = [asyncio.create_task(follow(i, p)) for i, p in enumerate(procs)]
        while sum(counts) < n:
            done, _ = await asyncio.wait(followers, timeout=300,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise RuntimeError("the hosts did not consume every event in 300 s")
            for task in done:
                task.result()
                followers.remove(task)
            if not followers:
                break
        elapsed = time.perf_counter() - started
        for task in followers:
            task.cancel()
        if sum(counts) != n:
            raise RuntimeError(f"consumed {sum(counts)} events of {n}")
        return n / elapsed
    finally:
        for p in procs:
            if p.stdin is not None and not p.stdin.is_closing():
                p.stdin.close()
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), 30)
            except TimeoutError:
                p.kill()
                await p.wait()


async def run(quick: bool, progress) -> list[Result]:  # type: ignore[no-untyped-def]
    n = 20_000 if quick else 100_000
    rounds = 1 if quick else 3
    with redis_server() as url:
        if url is None:
            progress("hosts: skipped (redis-server is not installed)")
            return []
        one, two = [], []
        for r in range(rounds):
            progress(f"hosts: Redis, 1 then 2 host processes, round {r + 1} of {rounds}")
            one.append(await _round(url, 1, n))
            two.append(await _round(url, 2, n))
    a, b = statistics.median(one), statistics.median(two)
    return [Result("Redis: 2 host processes, exclusive", b, baseline="1 host process",
                   baseline_events_per_s=a, ratio=b / a)]
