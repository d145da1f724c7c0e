from svrnty_events import hookimpl

from .store import MemoryStore, MemoryStoreOptions


@hookimpl
def register_event_stores(register):  # type: ignore[no-untyped-def]
    register("memory", MemoryStore, options=MemoryStoreOptions)
