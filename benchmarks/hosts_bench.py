"""Hosts sharing a store: 2 host processes consuming one exclusive subscription on Redis (each
its own ``host.subscribe``, automatic acks), against 1, over the same number of events already
in the stream; alternating rounds, medians compared."""

from __future__ import annotations

import json
import statistics
import time
import uuid

import svrnty_events_redis  # noqa: F401  (skipped when the plugin is not installed)

from svrnty_events import StreamType

from .common import CountingWorkers, Result, streaming, ticks
from .redis_server import redis_server


async def _round(url: str, hosts: int, n: int) -> float:
    options = {"url": url, "key_prefix": f"bench-hosts-{uuid.uuid4().hex[:8]}:"}
    s = streaming(stream_type=StreamType.PERSISTENT, window=500)
    s.config.store.plugin = "redis"
    s.config.store.options = options
    events = ticks("s0", n)
    async with s.run() as host:  # fills the stream; consumes nothing
        for i in range(0, n, 1000):
            await host.publish("s0", events[i:i + 1000], external=False)
    argv = ["benchmarks.hosts_worker", "redis", json.dumps(options), "sub0"]
    async with CountingWorkers([argv] * hosts, ready_timeout=60) as workers:
        started = time.perf_counter()
        await workers.send(b"go\n")
        total = await workers.wait_total(n)
        elapsed = time.perf_counter() - started
        if total != n:
            raise RuntimeError(f"consumed {total} events of {n}")
        return n / elapsed


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
