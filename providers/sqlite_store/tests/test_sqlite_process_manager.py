"""A process manager host SIGKILLed at random points over 1,000 workflows: every follow-up
command is sent exactly once (its event counted once per workflow in the store), however
many times a handler ran again after a crash."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from svrnty_events.config import StreamConfig
from svrnty_events_sqlite import SqliteStore

SCRIPT = Path(__file__).parent / "pm_host.py"
WORKFLOWS = 1000


async def _round(db: Path, rng: random.Random, log) -> tuple[bool, int, int]:
    """Run the host until a random moment after it is ready, then SIGKILL it. Returns
    (done, follow-ups seen, handler runs seen)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), str(db), "run", str(WORKFLOWS),
        stdout=asyncio.subprocess.PIPE, stderr=log)
    assert proc.stdout is not None
    followed = runs = 0
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"ready", line
        deadline = time.monotonic() + rng.uniform(0.0, 0.25)
        while time.monotonic() < deadline:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(),
                                              max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                break
            words = line.split()
            if not words or words[0] == b"done":
                return bool(words), followed, runs
            followed, runs = int(words[1]), int(words[2])
        return False, followed, runs
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_follow_up_commands_sent_exactly_once_across_sigkills(tmp_path):
    db = tmp_path / "pm.db"
    subprocess.run([sys.executable, str(SCRIPT), str(db), "seed", str(WORKFLOWS)],
                   check=True, timeout=120, capture_output=True)
    rng = random.Random(20261202)
    kills, total_runs, started = 0, 0, time.monotonic()
    with open(tmp_path / "hosts.stderr", "wb") as log:
        while True:
            done, followed, runs = await _round(db, rng, log)
            total_runs += runs
            if done:
                break
            kills += 1
            assert time.monotonic() - started < 150, \
                f"not done after {kills} kills ({followed} follow-ups)"
    async with SqliteStore({"path": str(db)}) as store:
        await store.create_stream(StreamConfig(name="pmk-flow", type="persistent"))
        started_events = await store.read("pmk-flow", event_types=["PmkStarted"])
        follow_ups = await store.read("pmk-flow", event_types=["PmkFollowedUp"])
    assert len(started_events) == WORKFLOWS
    sent = Counter(e.correlation_id for e in follow_ups)
    assert set(sent) == {e.correlation_id for e in started_events}  # none lost
    assert set(sent.values()) == {1}  # none twice
    assert sorted(e.decode()["n"] if isinstance(e.decode(), dict) else e.decode().n
                  for e in follow_ups) == list(range(WORKFLOWS))
    assert kills >= 3, "the host was hardly interrupted; the test proves little"
    print(f"{kills} SIGKILLs, {total_runs}+ handler runs for {WORKFLOWS} workflows")
