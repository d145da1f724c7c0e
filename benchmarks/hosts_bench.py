"""Hosts sharing a store: 2 host processes consuming one exclusive subscription on Redis, and on
PostgreSQL (each its own ``host.subscribe``, automatic acks), against 1, over the same number of
events already in the stream; alternating rounds, medians compared. A store whose plugin or
server is absent is skipped with a note."""

from __future__ import annotations

import json
import statistics
import time
import uuid

from svrnty_events import StreamType
from svrnty_events.plugins import collect_registry, get_plugin_manager

from .common import CountingWorkers, Result, streaming, ticks
from .postgres_server import postgres_server
from .redis_server import redis_server


def _options(store: str, url: str) -> dict:
    """A fresh stream for each round: its own key prefix, or its own schema."""
    tag = uuid.uuid4().hex[:8]
    if store == "redis":
        return {"url": url, "key_prefix": f"bench-hosts-{tag}:"}
    return {"url": url, "schema": f"bench_hosts_{tag}"}


async def _round(store: str, url: str, hosts: int, n: int) -> float:
    options = _options(store, url)
    s = streaming(stream_type=StreamType.PERSISTENT, window=500)
    s.config.store.plugin = store
    s.config.store.options = options
    events = ticks("s0", n)
    async with s.run() as host:  # fills the stream; consumes nothing
        for i in range(0, n, 1000):
            await host.publish("s0", events[i:i + 1000], external=False)
    argv = ["benchmarks.hosts_worker", store, json.dumps(options), "sub0"]
    async with CountingWorkers([argv] * hosts, ready_timeout=60) as workers:
        started = time.perf_counter()
        await workers.send(b"go\n")
        total = await workers.wait_total(n)
        elapsed = time.perf_counter() - started
        if total != n:
            raise RuntimeError(f"consumed {total} events of {n}")
        return n / elapsed


async def _compare(store: str, label: str, url: str, n: int, rounds: int,
                   progress) -> Result:  # type: ignore[no-untyped-def]
    one, two = [], []
    for r in range(rounds):
        progress(f"hosts: {label}, 1 then 2 host processes, round {r + 1} of {rounds}")
        one.append(await _round(store, url, 1, n))
        two.append(await _round(store, url, 2, n))
    a, b = statistics.median(one), statistics.median(two)
    extra = {} if rounds == 1 else {"rounds": rounds, "one": [round(x) for x in one],
                                    "two": [round(x) for x in two]}
    return Result(f"{label}: 2 host processes, exclusive", b, baseline="1 host process",
                  baseline_events_per_s=a, ratio=b / a, extra=extra)


async def run(quick: bool, progress) -> list[Result]:  # type: ignore[no-untyped-def]
    n = 20_000 if quick else 100_000
    rounds = 1 if quick else 3
    stores = collect_registry(get_plugin_manager()).stores
    results: list[Result] = []
    if "redis" in stores:
        with redis_server() as url:
            if url is None:
                progress("hosts: Redis skipped (redis-server is not installed)")
            else:
                results.append(await _compare("redis", "Redis", url, n, rounds, progress))
    else:
        progress("hosts: Redis skipped (svrnty-events-redis is not installed)")
    if "postgres" in stores:
        with postgres_server() as url:
            if url is not None:
                results.append(await _compare("postgres", "PostgreSQL", url, n, rounds,
                                              progress))
    else:
        progress("hosts: PostgreSQL skipped (svrnty-events-postgres is not installed)")
    return results
