"""In-memory event store for svrnty-events."""

from .store import MemoryStore, MemoryStoreOptions

__all__ = ["MemoryStore", "MemoryStoreOptions"]
