"""A projection host SIGKILLed at random points while it catches up over 10,000 events on
SQLite, restarted several times: its view, written in the store's transaction with the
checkpoint, equals the view built without interruption (every event's effect counted: none
skipped, none repeated)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

EVENTS = 10_000
KEYS = 13

HOST = textwrap.dedent(f'''
    import asyncio, json, sys
    from svrnty_events import Event, EventStreaming
    from svrnty_events.events import record

    class ProjCrashCounted(Event):
        key: str
        n: int

    path, mode = sys.argv[1], sys.argv[2]
    streaming = EventStreaming(store="sqlite", store_options={{"path": path,
                                                               "synchronous": "normal"}})
    streaming.add_stream("crash", type="persistent")

    if mode == "project":
        @streaming.projection("crash-totals", stream="crash", batch_size=25)
        def totals(event, ctx):
            c = ctx.connection
            # a row per event: applying one twice breaks the primary key (the projection
            # would fault and never catch up)
            c.execute("INSERT INTO applied (event_id, n) VALUES (?, ?)", (ctx.record.id, event.n))
            c.execute("INSERT INTO totals VALUES (?, ?, 1) ON CONFLICT DO UPDATE SET "
                      "total = total + excluded.total, seen = seen + 1", (event.key, event.n))

    async def main():
        async with streaming.run() as host:
            if mode == "populate":
                def tables(conn):
                    conn.execute("CREATE TABLE applied (event_id TEXT PRIMARY KEY, n INTEGER)")
                    conn.execute("CREATE TABLE totals (key TEXT PRIMARY KEY, total INTEGER, "
                                 "seen INTEGER)")
                await host.store._db.transaction(tables)
                for start in range(0, {EVENTS}, 500):
                    await host.publish("crash", [
                        record(ProjCrashCounted(key=f"k{{i % {KEYS}}}", n=i), stream="crash",
                               correlation_id=f"c{{i}}") for i in range(start, start + 500)],
                        external=False)
                return
            print("started", (await host.projections.status("crash-totals"))[0].position,
                  flush=True)
            status = await host.projections.wait_caught_up("crash-totals", timeout=600)
            print(json.dumps({{"position": status.position, "lag": status.lag}}), flush=True)

    asyncio.run(main())
''')


def _checkpoint(db: str) -> int:
    import sqlite3
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT position FROM checkpoints WHERE name = 'crash-totals'"
                           ).fetchone()
        return 0 if row is None else row[0]
    except sqlite3.OperationalError:  # the table is created as the host starts
        return 0
    finally:
        conn.close()


def _env() -> dict[str, str]:
    return {**os.environ, "SVRNTY_EVENTS_PLUGINS": "sqlite"}


@pytest.mark.slow
def test_sigkill_at_random_points_neither_skips_nor_repeats_an_effect(tmp_path: Path) -> None:
    script = tmp_path / "host.py"
    script.write_text(HOST)
    db = str(tmp_path / "crash.db")
    subprocess.run([sys.executable, str(script), db, "populate"], check=True, env=_env(),
                   timeout=300)
    rng = random.Random(21)
    positions: list[int] = []
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, str(script), db, "project"],
                                stdout=subprocess.PIPE, text=True, env=_env())
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the host is up and projecting
            assert line.startswith("started"), line
            positions.append(int(line.split()[1]))
            # a random point of the catch-up: once the checkpoint passes a random target,
            # plus a random fraction of a batch's time (the kill lands anywhere in a batch)
            target = rng.randrange(positions[-1] + 1, positions[-1] + EVENTS // 8)
            deadline = time.monotonic() + 120
            while _checkpoint(db) < target and proc.poll() is None:
                assert time.monotonic() < deadline, "the projection does not advance"
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.003))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
            if proc.stdout is not None:
                proc.stdout.close()
    final = subprocess.run([sys.executable, str(script), db, "project"], capture_output=True,
                           text=True, env=_env(), timeout=600)
    assert final.returncode == 0, final.stderr
    result = json.loads(final.stdout.strip().splitlines()[-1])
    assert result == {"position": EVENTS, "lag": 0}
    assert kills == 6, "the host finished before it could be killed"
    # the host was killed in the middle of the catch-up, and progress was kept between runs
    assert positions == sorted(positions) and 0 < positions[-1] < EVENTS, positions

    import sqlite3
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*), count(DISTINCT n), sum(n) FROM applied").fetchone() \
        == (EVENTS, EVENTS, sum(range(EVENTS)))
    expected = {f"k{k}": (sum(range(k, EVENTS, KEYS)), len(range(k, EVENTS, KEYS)))
                for k in range(KEYS)}
    got = {key: (total, seen) for key, total, seen in conn.execute("SELECT * FROM totals")}
    assert got == expected
    conn.close()
