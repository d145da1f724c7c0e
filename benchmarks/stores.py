"""Store scenarios: append, and consume + ack, through the SQLite, Redis and PostgreSQL stores,
each beside the raw client doing the same work in the same run (raw sqlite3 batch inserts; raw
redis-py XADD / XREADGROUP / XACK; raw asyncpg batched inserts and a SKIP LOCKED claim-and-delete
loop). Skipped with a note when a store plugin or its server is absent."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

from svrnty_events import EventStreaming, StreamType

from .common import Result, Stopwatch, ticks
from .postgres_server import postgres_server
from .redis_server import redis_server

BATCH = 100
#: alternating rounds of raw and ours in the Redis scenarios (full run)
ROUNDS = 5


def _streaming(store: str, options: dict) -> EventStreaming:
    s = EventStreaming(store=store, store_options=options)
    s.add_stream("s0", type=StreamType.PERSISTENT)
    s.add_subscription("s0", "sub0", mode="exclusive", window=1000)
    return s


async def ours_append(store: str, options: dict, n: int) -> float:
    events = ticks("s0", n)
    async with _streaming(store, options).run() as host:
        with Stopwatch() as sw:
            for i in range(0, n, BATCH):
                await host.publish("s0", events[i:i + BATCH], external=False)
    return n / sw.elapsed


async def ours_consume(store: str, options: dict, n: int) -> float:
    """Consume + ack n events already in the stream (appended before the clock starts)."""
    async with _streaming(store, options).run() as host:
        events = ticks("s0", n)
        for i in range(0, n, 1000):
            await host.publish("s0", events[i:i + 1000], external=False)
        consumer = await host.open_consumer("sub0", "bench")
        with Stopwatch() as sw:
            seen = 0
            while seen < n:
                batch = await consumer.fetch(timeout=30)
                await consumer.ack([d.id for d in batch])
                seen += len(batch)
    return n / sw.elapsed


def raw_sqlite_append(path: Path, n: int, synchronous: str) -> float:
    rows = [(e.id, e.type, e.correlation_id, e.timestamp.isoformat(), e.data)
            for e in ticks("s0", n)]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, type TEXT, "
               "correlation_id TEXT, ts TEXT, data BLOB)")
    with Stopwatch() as sw:
        for i in range(0, n, BATCH):
            db.execute("BEGIN")
            db.executemany("INSERT INTO events (id, type, correlation_id, ts, data) "
                           "VALUES (?, ?, ?, ?, ?)", rows[i:i + BATCH])
            db.execute("COMMIT")
    db.close()
    return n / sw.elapsed


async def raw_redis_append(url: str, n: int) -> float:
    import redis.asyncio as redis

    client = redis.from_url(url)
    stream = f"raw-append-{uuid.uuid4().hex}"
    events = ticks("s0", n)
    try:
        with Stopwatch() as sw:
            for i in range(0, n, BATCH):
                async with client.pipeline(transaction=True) as pipe:
                    for e in events[i:i + BATCH]:
                        pipe.xadd(stream, {"id": e.id, "type": e.type, "data": e.data})
                    await pipe.execute()
        return n / sw.elapsed
    finally:
        await client.delete(stream)
        await client.aclose()


async def raw_redis_consume(url: str, n: int) -> float:
    """XREADGROUP + XACK of n entries already in the stream (added before the clock starts)."""
    import redis.asyncio as redis

    client = redis.from_url(url)
    stream = f"raw-consume-{uuid.uuid4().hex}"
    try:
        await client.xgroup_create(stream, "g", id="0", mkstream=True)
        for i in range(0, n, 1000):
            async with client.pipeline(transaction=False) as pipe:
                for e in ticks("s0", min(1000, n - i)):
                    pipe.xadd(stream, {"id": e.id, "type": e.type, "data": e.data})
                await pipe.execute()
        with Stopwatch() as sw:
            seen = 0
            while seen < n:
                reply = await client.xreadgroup("g", "c", {stream: ">"}, count=1000, block=1000)
                for _, entries in reply or []:
                    await client.xack(stream, "g", *[entry_id for entry_id, _ in entries])
                    seen += len(entries)
        return n / sw.elapsed
    finally:
        await client.delete(stream)
        await client.aclose()


_PG_TABLE = ("(seq bigint PRIMARY KEY, id text UNIQUE, type text, correlation_id text, "
             "ts bigint, data bytea)")


def _pg_rows(n: int) -> list[tuple]:
    return [(i, e.id, e.type, e.correlation_id, int(e.timestamp.timestamp() * 1e6), e.data)
            for i, e in enumerate(ticks("s0", n))]


async def _pg_insert(conn, table: str, rows: list[tuple]) -> None:  # type: ignore[no-untyped-def]
    await conn.execute(
        f"INSERT INTO {table} SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], "
        "$4::text[], $5::bigint[], $6::bytea[])", *[list(col) for col in zip(*rows)])


async def raw_postgres_append(url: str, n: int) -> float:
    """The same rows as the store appends, inserted with asyncpg in batches of BATCH, one
    transaction each (unnest: one statement per batch)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    table = f"raw_append_{uuid.uuid4().hex[:8]}"
    rows = _pg_rows(n)
    try:
        await conn.execute(f"CREATE TABLE {table} {_PG_TABLE}")
        with Stopwatch() as sw:
            for i in range(0, n, BATCH):
                async with conn.transaction():
                    await _pg_insert(conn, table, rows[i:i + BATCH])
        return n / sw.elapsed
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


async def raw_postgres_consume(url: str, n: int) -> float:
    """Claim-and-delete of n rows already in a queue table (inserted before the clock starts):
    ``DELETE ... WHERE seq IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 100) RETURNING``."""
    import asyncpg

    conn = await asyncpg.connect(url)
    table = f"raw_queue_{uuid.uuid4().hex[:8]}"
    rows = _pg_rows(n)
    try:
        await conn.execute(f"CREATE TABLE {table} {_PG_TABLE}")
        for i in range(0, n, 1000):
            await _pg_insert(conn, table, rows[i:i + 1000])
        claim = (f"DELETE FROM {table} WHERE seq IN (SELECT seq FROM {table} ORDER BY seq "
                 "LIMIT 100 FOR UPDATE SKIP LOCKED) RETURNING seq, id, type, correlation_id, "
                 "ts, data")
        with Stopwatch() as sw:
            seen = 0
            while seen < n:
                seen += len(await conn.fetch(claim))
        return n / sw.elapsed
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


async def _postgres(quick: bool, n: int, progress) -> list[Result]:  # type: ignore[no-untyped-def]
    results: list[Result] = []
    with postgres_server() as url:
        if url is None:
            return results
        rounds = 1 if quick else ROUNDS
        raw_a, ours_a, raw_c, ours_c = [], [], [], []
        for r in range(rounds):
            progress(f"stores: postgres append (round {r + 1}/{rounds})")
            raw_a.append(await raw_postgres_append(url, n))
            ours_a.append(await ours_append("postgres", {"url": url, "schema": f"bench_a{r}"}, n))
        for r in range(rounds):
            progress(f"stores: postgres consume + ack (round {r + 1}/{rounds})")
            raw_c.append(await raw_postgres_consume(url, n))
            ours_c.append(await ours_consume("postgres", {"url": url, "schema": f"bench_c{r}"},
                                             n))
        for name, baseline, ours, raw, target in (
                ("postgres append", "raw asyncpg batched insert", ours_a, raw_a, ">= 0.5"),
                ("postgres consume+ack", "raw asyncpg SKIP LOCKED claim+delete", ours_c, raw_c,
                 ">= 0.7")):
            mo, mr = statistics.median(ours), statistics.median(raw)
            extra = {"target": target}
            if rounds > 1:
                extra.update(rounds=rounds, ours=[round(x) for x in ours],
                             raw=[round(x) for x in raw])
            results.append(Result(name, mo, baseline=baseline, baseline_events_per_s=mr,
                                  ratio=mo / mr, extra=extra))
    return results


async def run(quick: bool, progress) -> list[Result]:  # type: ignore[no-untyped-def]
    from svrnty_events.plugins import collect_registry, get_plugin_manager

    stores = collect_registry(get_plugin_manager()).stores
    n = 10_000 if quick else 50_000
    results: list[Result] = []
    if "postgres" in stores:
        results += await _postgres(quick, n, progress)
    else:
        print("[benchmarks] stores: postgres skipped (svrnty-events-postgres not installed)",
              file=sys.stderr)
    if "sqlite" in stores:
        for synchronous in ("full", "normal"):
            with tempfile.TemporaryDirectory() as tmp:
                progress(f"stores: sqlite append (synchronous={synchronous})")
                raw = raw_sqlite_append(Path(tmp) / "raw.db", n, synchronous)
                ours = await ours_append("sqlite", {"path": f"{tmp}/a.db",
                                                    "synchronous": synchronous}, n)
                results.append(Result(f"sqlite append ({synchronous})", ours,
                                      baseline="raw sqlite3 batch insert",
                                      baseline_events_per_s=raw, ratio=ours / raw))
        with tempfile.TemporaryDirectory() as tmp:
            progress("stores: sqlite consume + ack")
            rate = await ours_consume("sqlite", {"path": f"{tmp}/c.db",
                                                 "synchronous": "normal"}, n)
            results.append(Result("sqlite consume+ack (normal)", rate))
    else:
        print("[benchmarks] stores: sqlite skipped (svrnty-events-sqlite not installed)",
              file=sys.stderr)
    if "redis" in stores:
        with redis_server() as url:
            if url is None:
                print("[benchmarks] stores: redis skipped (redis-server is not installed)",
                      file=sys.stderr)
                return results
            # raw and ours alternate, ROUNDS times each, and the medians are compared: one run
            # of each is at the mercy of whatever else the machine does meanwhile
            rounds = 1 if quick else ROUNDS
            raw_a, ours_a, raw_c, ours_c = [], [], [], []
            for r in range(rounds):
                progress(f"stores: redis append (round {r + 1}/{rounds})")
                raw_a.append(await raw_redis_append(url, n))
                ours_a.append(await ours_append(
                    "redis", {"url": url, "key_prefix": f"bench-a{r}:"}, n))
            for r in range(rounds):
                progress(f"stores: redis consume + ack (round {r + 1}/{rounds})")
                raw_c.append(await raw_redis_consume(url, n))
                ours_c.append(await ours_consume(
                    "redis", {"url": url, "key_prefix": f"bench-c{r}:"}, n))
            for name, baseline, ours, raw in (
                    ("redis append", "raw redis-py XADD pipeline", ours_a, raw_a),
                    ("redis consume+ack", "raw redis-py XREADGROUP+XACK", ours_c, raw_c)):
                mo, mr = statistics.median(ours), statistics.median(raw)
                extra = {} if rounds == 1 else {
                    "rounds": rounds, "ours": [round(x) for x in ours],
                    "raw": [round(x) for x in raw]}
                results.append(Result(name, mo, baseline=baseline, baseline_events_per_s=mr,
                                      ratio=mo / mr, extra=extra))
    else:
        print("[benchmarks] stores: redis skipped (svrnty-events-redis not installed)",
              file=sys.stderr)
    return results
