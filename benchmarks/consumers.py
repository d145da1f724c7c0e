"""Consumer scenarios: the public consumer path (``async with host.subscribe(sub, consumer_id)
as deliveries: async for d in deliveries: ...``, automatic acks) on one host, per store (memory,
SQLite on a temp file, Redis on a throw-away redis-server, PostgreSQL on a throw-away server),
over events already in a
persistent stream of 16 partitions (200 workflows), for exclusive and consumer_group
subscriptions with 1 and 4 consumers, and one consumer over ``deliveries.batches()``; beside a
store-level ``claim`` + ``ack`` loop over the same events in the same run.

Every delivery is counted: a duplicate or a missing event fails the benchmark. consumer_group
rows also check that each workflow's events were processed in sequence order (a note).
"""

from __future__ import annotations

import asyncio
import importlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from svrnty_events import EventStreaming, StreamType
from svrnty_events.events import RecordedEvent, record

from .common import Result, Tick
from .postgres_server import postgres_server
from .redis_server import redis_server

STREAM = "s0"
PARTITIONS = 16
WORKFLOWS = 200
#: events per host.publish while the stream is filled (before any clock starts)
APPEND_BATCH = 1000
#: store-level claims: events per claim, visibility timeout
CLAIM_BATCH = 100
VISIBILITY = 30.0
#: seconds one measurement may take before the benchmark fails
TIMEOUT = 120.0
#: alternating rounds per store (full run, --quick); the medians are reported. A --quick
#: measurement on memory lasts a few ms, at the mercy of the machine: more rounds of it
ROUNDS = 3
QUICK_ROUNDS = 5
#: (name, mode, consumers): each its own subscription, so its own delivery state
PUBLIC = (("exclusive x1", "exclusive", 1), ("exclusive x4", "exclusive", 4),
          ("consumer_group x1", "consumer_group", 1),
          ("consumer_group x4", "consumer_group", 4))
STORE_LEVEL = "store_level"
#: the same as "exclusive x1", through ``async for batch in deliveries.batches()``
BATCHES = ("exclusive x1 batches", "exclusive", 1)
#: store name -> the module of its plugin (loaded alone: a broken plugin skips only its store)
PLUGINS = {"memory": "svrnty_events_memory.plugin", "sqlite": "svrnty_events_sqlite.plugin",
           "redis": "svrnty_events_redis.plugin", "postgres": "svrnty_events_postgres.plugin"}


class BenchmarkFailure(AssertionError):
    pass


def _sub_name(name: str) -> str:
    return name.replace(" ", "_")


def _streaming(store: str, options: dict[str, Any], plugin: object) -> EventStreaming:
    s = EventStreaming(store=store, store_options=options, load_entrypoints=False,
                       plugins=[plugin])
    s.add_stream(STREAM, type=StreamType.PERSISTENT, partitions=PARTITIONS)
    for name, mode, _ in (*PUBLIC, BATCHES):  # default options: window 100, visibility 30 s
        s.add_subscription(STREAM, _sub_name(name), mode=mode)
    s.add_subscription(STREAM, STORE_LEVEL, mode="exclusive")
    return s


def _events(n: int) -> list[RecordedEvent]:
    """n events over WORKFLOWS correlation ids, round robin; Tick.n is the workflow's index."""
    return [record(Tick(n=i // WORKFLOWS), stream=STREAM, correlation_id=f"wf-{i % WORKFLOWS}")
            for i in range(n)]


class Tally:
    """Every delivery of one measurement: distinct ids, duplicates, per-workflow order."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen: set[str] = set()
        self.duplicates: list[tuple[str, str, int]] = []
        self.last_sequence: dict[str, int] = {}
        self.order_violations = 0

    def add(self, event: RecordedEvent) -> bool:
        """Count one processed event; True once all n distinct events were processed."""
        if event.id in self.seen:
            self.duplicates.append((event.id, event.correlation_id, event.sequence))
        else:
            self.seen.add(event.id)
        last = self.last_sequence.get(event.correlation_id, -1)
        if event.sequence < last:
            self.order_violations += 1
        else:
            self.last_sequence[event.correlation_id] = event.sequence
        return len(self.seen) == self.n

    def check(self, label: str) -> None:
        if self.duplicates:
            print(f"[benchmarks] consumers: {label}: {len(self.duplicates)} duplicate "
                  f"deliveries, e.g. (id, workflow, sequence) {self.duplicates[:5]}",
                  file=sys.stderr)
        if self.duplicates or len(self.seen) != self.n:
            raise BenchmarkFailure(
                f"{label}: {len(self.seen):,} distinct events of {self.n:,} processed, "
                f"{len(self.duplicates):,} duplicates")


async def _until(event: asyncio.Event, tasks: list[asyncio.Future[None]], timeout: float,
                 label: str, tally: Tally) -> None:
    """Wait for ``event``; fail loudly on ``timeout`` or when a worker ends first."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        finished, _ = await asyncio.wait([waiter, *tasks], timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]
    if not event.is_set():
        what = "a consumer stopped" if finished else f"still waiting after {timeout:.0f} s"
        raise BenchmarkFailure(f"{label}: {what}, {len(tally.seen):,} of {tally.n:,} events "
                               "processed")


async def public_path(host: Any, subscription: str, consumers: int, n: int, label: str,
                      batches: bool = False) -> tuple[float, Tally]:
    """``consumers`` concurrent tasks, each ``async with host.subscribe(...)`` + ``async for``
    with automatic acks (over ``deliveries.batches()`` with ``batches``). The clock starts once
    every subscriber is open (nothing is claimed before the first ``async for`` asks) and stops
    when the n-th distinct event is processed."""
    tally = Tally(n)
    opened = 0
    all_open = asyncio.Event()
    go = asyncio.Event()
    done = asyncio.Event()
    subscribers: dict[int, Any] = {}
    finisher: list[int] = []

    async def worker(i: int) -> None:
        nonlocal opened
        async with host.subscribe(subscription, f"c{i}") as deliveries:
            subscribers[i] = deliveries
            opened += 1
            if opened == consumers:
                all_open.set()
            await go.wait()
            if batches:
                async for batch in deliveries.batches():
                    for d in batch:
                        if tally.add(d.record):
                            finisher.append(i)
                            done.set()
                    if done.is_set():
                        break
                return
            async for d in deliveries:
                if tally.add(d.record):
                    finisher.append(i)
                    done.set()
                    break

    tasks = [asyncio.ensure_future(worker(i)) for i in range(consumers)]
    try:
        await _until(all_open, tasks, 30.0, f"{label}: opening {consumers} subscriber(s)",
                     tally)
        start = time.perf_counter()
        go.set()
        await _until(done, tasks, TIMEOUT, label, tally)
        elapsed = time.perf_counter() - start
        # the worker that processed the last event leaves its loop by itself; the others wait
        # for events that will not come: close them (their loops end), then wait for every
        # worker to leave its `async with` (its last acks flushed)
        for i, s in subscribers.items():
            if i not in finisher and s.consumer is not None and not s.consumer.closed:
                await s.aclose()
        try:
            async with asyncio.timeout(30):
                await asyncio.gather(*tasks)
        except TimeoutError:
            raise BenchmarkFailure(f"{label}: consumers did not stop within 30 s of being "
                                   "closed") from None
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    tally.check(label)
    return n / elapsed, tally


async def store_level(host: Any, n: int, label: str) -> float:
    """claim (CLAIM_BATCH) + ack directly on host.store, one consumer of a subscription no
    engine consumer touches (its shared group, created by the host at start)."""
    store = host.store
    tally = Tally(n)
    group = ""
    start = time.perf_counter()
    deadline = start + TIMEOUT
    while len(tally.seen) < n:
        if time.perf_counter() > deadline:
            raise BenchmarkFailure(f"{label}: {len(tally.seen):,} of {n:,} events claimed "
                                   f"after {TIMEOUT:.0f} s")
        result = await store.claim(STORE_LEVEL, group, "raw", max_count=CLAIM_BATCH,
                                   visibility_timeout=VISIBILITY)
        if not result.claimed:
            await store.wait_for_change(STORE_LEVEL, group, result.version, 1.0)
            continue
        for c in result.claimed:
            tally.add(c.event)
        await store.ack(STORE_LEVEL, group, "raw", [c.event.id for c in result.claimed])
    elapsed = time.perf_counter() - start
    tally.check(label)
    return n / elapsed


async def one_round(store: str, options: dict[str, Any], plugin: object, n: int, r: int,
                    progress: Callable[[str], None]) -> dict[str, tuple[float, Tally | None]]:
    """A fresh host and store; n events appended; then each measurement once, in an order
    rotated by the round (so none always runs first, on a cold store, or last)."""
    out: dict[str, tuple[float, Tally | None]] = {}
    async with _streaming(store, options, plugin).run() as host:
        events = _events(n)
        for i in range(0, n, APPEND_BATCH):
            await host.publish(STREAM, events[i:i + APPEND_BATCH], external=False)
        info = await host.stream_info(STREAM)
        if info.length != n:
            raise BenchmarkFailure(f"consumers {store}: the stream holds {info.length:,} "
                                   f"events, {n:,} were appended")
        names = [STORE_LEVEL] + [name for name, _, _ in (*PUBLIC, BATCHES)]
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            label = f"consumers {store} {name}"
            progress(f"{label} (round {r + 1})")
            if name == STORE_LEVEL:
                out[name] = (await store_level(host, n, label), None)
            elif name == BATCHES[0]:
                out[name] = await public_path(host, _sub_name(name), 1, n, label, batches=True)
            else:
                consumers = next(c for nm, _, c in PUBLIC if nm == name)
                out[name] = await public_path(host, _sub_name(name), consumers, n, label)
    return out


async def bench_store(store: str, make_options: Callable[[int], dict[str, Any]], n: int,
                      rounds: int, progress: Callable[[str], None]) -> list[Result]:
    try:
        plugin = importlib.import_module(PLUGINS[store])
    except Exception as exc:  # a store being reworked may not import: skip it, loudly
        print(f"[benchmarks] consumers: {store} skipped (its plugin does not import: "
              f"{type(exc).__name__}: {exc})", file=sys.stderr)
        return []
    runs = [await one_round(store, make_options(r), plugin, n, r, progress)
            for r in range(rounds)]
    rate = {name: statistics.median(run[name][0] for run in runs) for name in runs[0]}
    per_round = {name: [round(run[name][0]) for run in runs] for name in runs[0]}

    def extra(name: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        tallies = [run[name][1] for run in runs]
        if name.startswith("consumer_group"):
            violations = sum(t.order_violations for t in tallies if t is not None)
            out["workflow_order"] = "ok" if violations == 0 else f"{violations} out of order"
        if rounds > 1:
            out["rounds"] = per_round[name]
        return out

    ex1, ex4 = rate["exclusive x1"], rate["exclusive x4"]
    cg1, cg4 = rate["consumer_group x1"], rate["consumer_group x4"]
    base = rate[STORE_LEVEL]
    p = f"consumers {store}"
    return [
        Result(f"{p} exclusive x1", ex1, extra=extra("exclusive x1")),
        Result(f"{p} exclusive x4", ex4, baseline="exclusive x1", baseline_events_per_s=ex1,
               ratio=ex4 / ex1, extra=extra("exclusive x4")),
        Result(f"{p} consumer_group x1", cg1, baseline="exclusive x1",
               baseline_events_per_s=ex1, ratio=cg1 / ex1, extra=extra("consumer_group x1")),
        Result(f"{p} consumer_group x4", cg4, baseline="exclusive x4",
               baseline_events_per_s=ex4, ratio=cg4 / ex4,
               extra={"cg4_over_cg1": round(cg4 / cg1, 2), **extra("consumer_group x4")}),
        Result(f"{p} public path vs store-level", ex1,
               baseline=f"store claim({CLAIM_BATCH})+ack", baseline_events_per_s=base,
               ratio=ex1 / base, extra={"target": ">= 0.7",
                                        **({"store_rounds": per_round[STORE_LEVEL]}
                                           if rounds > 1 else {})}),
        Result(f"{p} public path, batches, vs store-level", rate[BATCHES[0]],
               baseline=f"store claim({CLAIM_BATCH})+ack",
               baseline_events_per_s=base, ratio=rate[BATCHES[0]] / base,
               extra={"target": ">= 0.7", **extra(BATCHES[0])}),
    ]


async def run(quick: bool, progress) -> list[Result]:  # type: ignore[no-untyped-def]
    n = 5_000 if quick else 20_000
    rounds = QUICK_ROUNDS if quick else ROUNDS
    results: list[Result] = []
    results += await bench_store("memory", lambda r: {}, n, rounds, progress)
    with tempfile.TemporaryDirectory() as tmp:
        results += await bench_store("sqlite", lambda r: {"path": f"{tmp}/consumers-{r}.db"},
                                     n, rounds, progress)
    with redis_server() as url:
        if url is None:
            print("[benchmarks] consumers: redis skipped (redis-server is not installed)",
                  file=sys.stderr)
        else:
            results += await bench_store(
                "redis", lambda r: {"url": url, "key_prefix": f"bench-consumers{r}:"}, n,
                rounds, progress)
    with postgres_server() as url:
        if url is not None:
            results += await bench_store(
                "postgres", lambda r: {"url": url, "schema": f"bench_consumers{r}"}, n,
                rounds, progress)
    return results
