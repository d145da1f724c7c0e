"""Exactly-once effects across SIGKILL: an effect that writes to the store's own database runs
in the transaction of its processed mark and its ack (``process_once_in_store``), so a host
killed at any point and restarted applies every event's effect exactly once."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

SCRIPT = Path(__file__).parent / "effect_host.py"
EVENTS = 400
KILLS = 10
ROUND_TIMEOUT = 60.0


def _processed(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _start(db: Path, log: Path, round_no: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SVRNTY_EVENTS_PLUGINS": "sqlite"}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(db), str(log), str(round_no),
                             str(EVENTS)], env=env, stderr=subprocess.PIPE)


def test_transactional_effects_run_exactly_once_across_sigkills(tmp_path: Path) -> None:
    db, log = tmp_path / "events.db", tmp_path / "processed.log"
    rng = random.Random(int(os.environ.get("SQLITE_KILL_SEED", "3")))
    kills = 0
    for round_no in range(KILLS):
        before = _processed(log)
        target = before + rng.randint(5, 30)
        proc = _start(db, log, round_no)
        try:
            deadline = time.monotonic() + ROUND_TIMEOUT
            while _processed(log) < target and proc.poll() is None:
                assert time.monotonic() < deadline, "host made no progress"
                time.sleep(0.002)
            if proc.poll() is None:
                time.sleep(rng.uniform(0, 0.01))  # mid-effect, mid-commit, mid-claim
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(timeout=10) == -signal.SIGKILL
                kills += 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            proc.stderr.close()
    assert kills == KILLS and _processed(log) < EVENTS  # every round was killed mid-stream
    final = _start(db, log, KILLS)  # runs to the end: nothing left to consume
    try:
        assert final.wait(timeout=ROUND_TIMEOUT) == 0, final.stderr.read().decode()[-2000:]
    finally:
        if final.poll() is None:
            final.kill()
        final.stderr.close()
    with closing(sqlite3.connect(db)) as conn:
        effects = Counter(row[0] for row in conn.execute("SELECT event_id FROM effects"))
        ids = [row[0] for row in conn.execute("SELECT id FROM events ORDER BY seq")]
    assert len(ids) == EVENTS
    assert set(effects) == set(ids)  # every event's effect ...
    assert [i for i, n in effects.items() if n > 1] == []  # ... exactly once
