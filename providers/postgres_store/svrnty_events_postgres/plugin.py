from svrnty_events import hookimpl

from .store import PostgresStore, PostgresStoreOptions


@hookimpl
def register_event_stores(register):  # type: ignore[no-untyped-def]
    register("postgres", PostgresStore, options=PostgresStoreOptions)
