"""Redis Streams event store for svrnty-events."""

from .store import RedisStore, RedisStoreOptions

__all__ = ["RedisStore", "RedisStoreOptions"]
