"""The database layout: ``schema.sql`` creates it in a new file, ``upgrade_<N>.sql`` brings a
file of version N-1 to version N. The version is SQLite's ``PRAGMA user_version``."""

from __future__ import annotations

import sqlite3
from importlib.resources import files

from svrnty_events.errors import StoreFormatError

#: the version this code writes; a file at a lower version is upgraded when it is opened
SCHEMA_VERSION = 3


def _script(name: str) -> str:
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


def prepare(conn: sqlite3.Connection, path: str) -> None:
    """Create the tables in a new file or upgrade an older one, in one transaction (the file
    lock guarantees no other process opens the file meanwhile). Raises StoreFormatError for a
    file written by a newer version."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise StoreFormatError(
            f'SQLite event store "{path}"',
            f"the file has schema version {found}, written by a newer svrnty-events-sqlite; "
            f"this one knows versions up to {SCHEMA_VERSION}",
            "upgrade svrnty-events-sqlite (the file is left unchanged), or give this host "
            "another path")
    if found == SCHEMA_VERSION:
        return
    steps = [_script("schema.sql")] if found == 0 else \
        [_script(f"upgrade_{v}.sql") for v in range(found + 1, SCHEMA_VERSION + 1)]
    conn.executescript("BEGIN IMMEDIATE;\n" + "\n".join(steps) +
                       f"\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;")
