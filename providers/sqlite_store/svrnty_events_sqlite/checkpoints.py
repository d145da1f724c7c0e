"""Projection checkpoints, and projections that write their view in the store's transaction
(see :mod:`svrnty_events.projections`)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from importlib.resources import files
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .log import Log

    _Base = Log
else:
    _Base = object

_TABLE = files(__package__).joinpath("checkpoints.sql").read_text(encoding="utf-8")


def create_table(conn: sqlite3.Connection) -> None:
    conn.executescript(_TABLE)


def _position(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT position FROM checkpoints WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else row[0]


def _save(conn: sqlite3.Connection, name: str, position: int) -> None:
    conn.execute("INSERT INTO checkpoints (name, position, updated_at) VALUES (?, ?, ?) "
                 "ON CONFLICT DO UPDATE SET position = excluded.position, "
                 "updated_at = excluded.updated_at",
                 (name, position, int(time.time() * 1_000_000)))


class Checkpoints(_Base):
    """The checkpoints part of :class:`~svrnty_events_sqlite.SqliteStore`."""

    async def load_checkpoint(self, projection: str) -> int:
        return await self._db.call(_position, projection)

    async def save_checkpoint(self, projection: str, position: int, *,
                              expected: int | None = None) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            if expected is not None and _position(conn, projection) != expected:
                return False
            _save(conn, projection, position)
            return True

        return await self._db.transaction(run)

    async def project_in_transaction(self, projection: str, expected: int, position: int,
                                     effect: Callable[[Any], Any]) -> bool:
        """See the contract. ``effect`` gets the ``sqlite3.Connection`` and runs on the
        store's database thread, inside the transaction (it must not commit it)."""
        def run(conn: sqlite3.Connection) -> bool:
            if _position(conn, projection) != expected:
                return False
            effect(conn)
            _save(conn, projection, position)
            return True

        return await self._db.transaction(run)
