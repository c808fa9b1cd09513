"""Reading memories on the hot path: ``MemoryReader`` searches, lists and gets one user's
memories, always under the user filter, embedding queries exactly as the workers do.

Importing this package loads qdrant-client (``import producer`` alone does not)::

    from producer.memories import open_reader
    reader = open_reader(Settings())          # REVERIE_QDRANT_URL, REVERIE_EMBEDDING_MODEL…
    hits = reader.search("user-42", "where does the user live?", limit=5)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from producer.errors import StoreLocked, StoreUnavailable
from producer.memories.embeddings import Embedder, embedder_factory, make_embedder
from producer.memories.pending import PendingTurns
from producer.memories.reader import MemoryReader
from schemas.memory import MemoryRecord

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from schemas.settings import Settings

__all__ = [
    "Embedder",
    "MemoryReader",
    "MemoryRecord",
    "PendingTurns",
    "StoreLocked",
    "StoreUnavailable",
    "open_pending",
    "open_qdrant",
    "open_reader",
]


def open_qdrant(settings: Settings) -> QdrantClient:
    """The Qdrant client the settings name: a server when ``qdrant_url`` is set, else local mode."""
    from qdrant_client import QdrantClient

    if settings.qdrant_url:
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        # No version probe at start-up: it is a network call that only warns, and processes may
        # start before Qdrant does. Outages surface as StoreUnavailable on use.
        return QdrantClient(url=settings.qdrant_url, api_key=api_key, check_compatibility=False)
    settings.qdrant_path.mkdir(parents=True, exist_ok=True)
    try:
        # Every call is serialised by the reader's lock, so sharing the sqlite connections across
        # threads is safe (macOS builds of sqlite would refuse otherwise).
        return QdrantClient(path=str(settings.qdrant_path), force_disable_check_same_thread=True)
    except RuntimeError as e:
        if "already accessed" not in str(e):
            raise
        raise StoreLocked(
            f"the local-mode Qdrant folder {settings.qdrant_path} is in use by another process (a worker, "
            "the demo or a CLI command): local mode allows one process; to run more, use a Qdrant server "
            "(set REVERIE_QDRANT_URL)"
        ) from None


def open_reader(settings: Settings, *, embedder: Embedder | None = None) -> MemoryReader:
    """A reader for these settings, with the embedder the workers use (``REVERIE_EMBEDDING_MODEL``).
    In local mode, when a worker owns the folder, reads go through that worker's socket."""
    if settings.qdrant_url is None:
        from producer.memories.local_socket import SocketReader, socket_path

        path = socket_path(settings.qdrant_path)
        if path is not None and SocketReader(path).alive():
            return SocketReader(path)  # type: ignore[return-value]
    return MemoryReader(
        open_qdrant(settings),
        embedder or make_embedder(settings),
        namespace=settings.namespace,
        strategy=settings.collection_strategy,
        pending=open_pending(settings),
        refresh_s=settings.collection_refresh_s,
        embedder_factory=embedder_factory(settings),
    )


def open_pending(settings: Settings) -> PendingTurns | None:
    """Buffered-turn recall for ``search(include_pending=True)``, when a Redis URL is configured.
    The client connects on first use, with the producer's short timeout."""
    url = settings.resolved_redis_url()
    if url is None:
        return None
    from producer.connect import open_sync
    from producer.keys import Keys

    timeout = settings.redis_timeout_s

    def connect() -> object:
        return open_sync(url, cluster=settings.redis_cluster, socket_timeout=timeout, socket_connect_timeout=timeout)

    keys = Keys(settings.key_prefix, settings.shards, tagged=settings.redis_cluster or None)
    return PendingTurns(None, keys, owns_client=True, connect=connect)
