from svrnty_events import hookimpl

from .store import RedisStore, RedisStoreOptions


@hookimpl
def register_event_stores(register):  # type: ignore[no-untyped-def]
    register("redis", RedisStore, options=RedisStoreOptions)
