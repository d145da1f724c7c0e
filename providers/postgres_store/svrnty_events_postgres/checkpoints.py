"""Projection checkpoints, and projections that write their view in the store's transaction
(see :mod:`svrnty_events.projections`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.resources import files
from typing import Any, ClassVar

import asyncpg

from .connection import Connection

_TABLE = files(__package__).joinpath("checkpoints.sql").read_text(encoding="utf-8")


class Checkpoints(Connection):
    """The checkpoints part of :class:`~svrnty_events_postgres.PostgresStore`."""

    #: the effect of project_in_transaction may be a coroutine function (asyncpg is async)
    transaction_effects_may_await: ClassVar[bool] = True

    async def _create_checkpoints(self) -> None:
        async with self._conn() as conn:
            await conn.execute(_TABLE.format(s=self.s))

    async def load_checkpoint(self, projection: str) -> int:
        async with self._conn() as conn:
            value = await conn.fetchval(
                f"SELECT position FROM {self.s}.checkpoints WHERE name = $1", projection)
        return 0 if value is None else value

    async def _save(self, conn: asyncpg.Connection, projection: str, position: int,
                    expected: int | None) -> bool:
        if expected is None:
            await conn.execute(
                f"INSERT INTO {self.s}.checkpoints (name, position) VALUES ($1, $2) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
                "updated_at = now()", projection, position)
            return True
        if expected == 0:  # no row yet counts as 0
            await conn.execute(f"INSERT INTO {self.s}.checkpoints (name, position) "
                               "VALUES ($1, 0) ON CONFLICT (name) DO NOTHING", projection)
        status = await conn.execute(
            f"UPDATE {self.s}.checkpoints SET position = $2, updated_at = now() "
            "WHERE name = $1 AND position = $3", projection, position, expected)
        return status.endswith(" 1")

    async def save_checkpoint(self, projection: str, position: int, *,
                              expected: int | None = None) -> bool:
        async with self._tx() as conn:
            return await self._save(conn, projection, position, expected)

    async def project_in_transaction(self, projection: str, expected: int, position: int,
                                     effect: Callable[[Any], Any]) -> bool:
        """See the contract. ``effect`` gets the ``asyncpg.Connection`` of the transaction
        (it may be a coroutine function); it must not commit or roll back. The checkpoint row
        is locked first, so a second runner of the projection waits and then finds it moved."""
        async with self._tx(own=False) as conn:  # the effect runs on it
            if expected == 0:
                await conn.execute(f"INSERT INTO {self.s}.checkpoints (name, position) "
                                   "VALUES ($1, 0) ON CONFLICT (name) DO NOTHING", projection)
            saved = await conn.fetchval(
                f"SELECT position FROM {self.s}.checkpoints WHERE name = $1 FOR UPDATE",
                projection)
            if (saved or 0) != expected:
                return False
            result = effect(conn)
            if inspect.isawaitable(result):
                await result
            return await self._save(conn, projection, position, expected)
