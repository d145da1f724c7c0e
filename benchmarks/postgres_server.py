"""A throw-away PostgreSQL server for the store benchmarks, started like the PostgreSQL store's
tests start theirs (svrnty_events_postgres.server: initdb into a temporary folder, a free
loopback port, fsync on as a real server has it)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def postgres_server() -> Iterator[str | None]:
    """Yields a postgresql:// URL, or None (with a note) when the PostgreSQL store plugin or
    the server binaries are not installed."""
    try:
        from svrnty_events_postgres.server import MISSING, find_binaries, running_postgres
    except ImportError as exc:
        print(f"[benchmarks] postgres skipped (svrnty-events-postgres: {exc})", file=sys.stderr)
        yield None
        return
    if find_binaries() is None:
        print(f"[benchmarks] postgres skipped ({MISSING})", file=sys.stderr)
        yield None
        return
    with running_postgres(fsync=True) as server:
        yield server.url()
