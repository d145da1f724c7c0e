"""The database file: one connection on one worker thread (:class:`Database`), and the lock
that keeps a second process out (:class:`FileLock`, :class:`DatabaseInUseError`)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from svrnty_events.errors import StoreUnavailableError, SvrntyEventsError

from .schema import prepare

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

T = TypeVar("T")


class DatabaseInUseError(SvrntyEventsError):
    """Another process has the database file open: one host per SQLite file."""

    def __init__(self, path: str, lock_path: str, holder: str) -> None:
        self.path, self.lock_path = path, lock_path
        who = f"process {holder}" if holder else "another process"
        super().__init__(
            f'SQLite event store "{path}" is already in use by {who} (lock file "{lock_path}"); '
            "svrnty-events-sqlite serves one host per database file: stop the other host, or "
            "give this one another path")


class Database:
    """One SQLite connection on one dedicated thread, so blocking calls never stall the event
    loop. Jobs run in submission order; a job that raises has its transaction rolled back."""

    def __init__(self, path: str, *, synchronous: str, busy_timeout: float) -> None:
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self.conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="svrnty-sqlite")
        await self.call(self._open)

    def _open(self, _conn: None) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                               check_same_thread=True)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal" and self.path != ":memory:":
                raise StoreUnavailableError(f'SQLite event store "{self.path}": cannot switch '
                                            f"to WAL mode (journal mode is {mode})")
            conn.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
            prepare(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the database thread."""
        if self._executor is None:
            raise StoreUnavailableError(f'SQLite event store "{self.path}" is not open')
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._run, fn, args)
        except RuntimeError as exc:  # executor shut down by close()
            if "shutdown" in str(exc):
                raise StoreUnavailableError(f'SQLite event store "{self.path}" is closed') \
                    from None
            raise

    async def transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the database thread in one write transaction."""
        return await self.call(_in_transaction, fn, args)

    async def query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """The rows of one statement."""
        return await self.call(lambda conn: conn.execute(sql, args).fetchall())

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement (a transaction of its own). Returns how many rows it changed."""
        return await self.call(lambda conn: conn.execute(sql, args).rowcount)

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self.conn
        if conn is None:
            return fn(None, *args)
        try:
            return fn(conn, *args)
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreUnavailableError(f'SQLite event store "{self.path}": {exc}') from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._close)
        finally:
            executor.shutdown(wait=True)

    def _close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.execute("PRAGMA optimize")
            conn.close()


def _in_transaction(conn: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    result = fn(conn, *args)
    conn.execute("COMMIT")  # if fn raised, Database._run rolls back
    return result


class FileLock:
    """An exclusive advisory lock on ``<path>.lock``, released by the OS if the process dies."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = f"{path}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        Path(self.lock_path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:  # pragma: no cover - Windows
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            try:
                holder = os.read(fd, 64).decode(errors="replace").strip()
            finally:
                os.close(fd)
            raise DatabaseInUseError(self.path, self.lock_path, holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the lock
