"""One host per database file: a second process is refused at start with an error naming the
file, and can open it once the first one is gone (even if that one was killed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from svrnty_events.testing import within
from svrnty_events_sqlite import DatabaseInUseError, SqliteStore, SqliteStoreOptions

OPEN_STORE = textwrap.dedent("""
    import asyncio, sys
    from svrnty_events_sqlite import DatabaseInUseError, SqliteStore, SqliteStoreOptions

    async def main(path, hold):
        store = SqliteStore(SqliteStoreOptions(path=path))
        try:
            await store.start()
        except DatabaseInUseError as exc:
            print(exc, flush=True)
            sys.exit(3)
        print("opened", flush=True)
        if hold:
            await asyncio.sleep(3600)
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2] == "hold"))
""")


def run_second(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", OPEN_STORE, str(path), "once"],
                          capture_output=True, text=True, timeout=30)


async def test_second_process_is_refused_with_the_path(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = SqliteStore(SqliteStoreOptions(path=str(db)))
    await within(store.start())
    try:
        second = run_second(db)
        assert second.returncode == 3, second.stderr
        assert str(db) in second.stdout and f"process {os.getpid()}" in second.stdout
        # a second store in the same process is refused the same way
        with pytest.raises(DatabaseInUseError) as err:
            await SqliteStore(SqliteStoreOptions(path=str(db))).start()
        assert err.value.path == str(db)
    finally:
        await store.close()
    assert run_second(db).stdout.strip() == "opened"


async def test_lock_of_a_killed_process_is_gone(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    holder = subprocess.Popen([sys.executable, "-c", OPEN_STORE, str(db), "hold"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "opened"
        assert run_second(db).returncode == 3
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        assert run_second(db).stdout.strip() == "opened"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        holder.stdout.close()
