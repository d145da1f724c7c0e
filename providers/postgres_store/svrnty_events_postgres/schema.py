"""The database layout: ``schema.sql`` creates it in a new schema on first start, and the
``schema_version`` table says which version wrote it. A schema of another version is refused
(the tables are left unchanged) with what to do."""

from __future__ import annotations

from importlib.resources import files

import asyncpg

from svrnty_events.errors import StoreFormatError

#: the version this code writes and reads
SCHEMA_VERSION = 3


#: versions this code upgrades from: version N-1 to N by ``upgrade_<N>.sql``
UPGRADES = {1: "upgrade_2.sql", 2: "upgrade_3.sql"}


def script(schema: str, name: str = "schema.sql") -> str:
    text = files(__package__).joinpath(name).read_text(encoding="utf-8")
    return text.replace("{s}", f'"{schema}"')


async def prepare(conn: asyncpg.Connection, schema: str, where: str) -> None:
    """Create the schema and its tables if missing, in one transaction under an advisory lock
    (hosts starting together create them once). Raises StoreFormatError for a schema of
    another version."""
    s = f'"{schema}"'
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"svrnty:{schema}")
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL",
                                     f"{s}.schema_version")
        if not exists:
            tables = await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema)
            if tables:
                raise StoreFormatError(
                    f"PostgreSQL store at {where}",
                    f'schema "{schema}" holds {tables} table(s) but no schema_version table: it '
                    "was not written by svrnty-events-postgres",
                    'set the store option "schema" to a schema of its own')
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            await conn.execute(script(schema))
            await conn.execute(f"INSERT INTO {s}.schema_version (version, written_by) "
                               "VALUES ($1, 'svrnty-events-postgres')", SCHEMA_VERSION)
            return
        found = await conn.fetchval(f"SELECT max(version) FROM {s}.schema_version")
        while found in UPGRADES:  # an older version this code upgrades, in this transaction
            await conn.execute(script(schema, UPGRADES[found]))
            found += 1
            await conn.execute(f"INSERT INTO {s}.schema_version (version, written_by) "
                               "VALUES ($1, 'svrnty-events-postgres')", found)
    if found is None or found == SCHEMA_VERSION:
        return
    if found > SCHEMA_VERSION:
        raise StoreFormatError(
            f"PostgreSQL store at {where}",
            f'schema "{schema}" has version {found}, written by a newer '
            f"svrnty-events-postgres; this one knows version {SCHEMA_VERSION}",
            "upgrade svrnty-events-postgres on this host (the tables are left unchanged), or "
            'set the store option "schema" to another schema')
    raise StoreFormatError(
        f"PostgreSQL store at {where}",
        f'schema "{schema}" has version {found}, older than the version {SCHEMA_VERSION} this '
        "svrnty-events-postgres writes, and it has no upgrade from it",
        "run the svrnty-events-postgres version that wrote it, or export the events and start "
        'a new schema (store option "schema")')
