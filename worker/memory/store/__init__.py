"""The memory store over Qdrant: reads (the hot path's ``MemoryReader``), idempotent writes,
collection creation and per-user erasure, each in its own module."""

from worker.memory.store.memory_store import MemoryStore, open_store

__all__ = ["MemoryStore", "open_store"]
