from svrnty_events import hookimpl

from .store import SqliteStore, SqliteStoreOptions


@hookimpl
def register_event_stores(register):  # type: ignore[no-untyped-def]
    register("sqlite", SqliteStore, options=SqliteStoreOptions)
