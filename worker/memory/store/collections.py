"""Creating a collection: vectors sized by the embedder, Qdrant's multitenancy setup for the
shared strategy, and a payload index for every field a read filters on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from producer.memories.live import MODEL_KEY, concrete, model_id

if TYPE_CHECKING:
    from producer.memories.embeddings import Embedder
    from producer.memories.reader import MemoryReader


def create_collection(store: MemoryReader, name: str, embedder: Embedder | None = None) -> None:
    """Create ``name`` for ``embedder``'s vectors (default: the store's current one); another
    process may win the race: a 409 is fine. ``reverie reembed`` builds its target with this too."""
    shared = store.strategy == "shared"
    embedder = concrete(embedder or store.embedder)
    try:
        store._call(
            store.client.create_collection,
            name,
            vectors_config=qm.VectorParams(size=embedder.dims, distance=qm.Distance.COSINE),
            # the model is not recoverable from the (sanitised) name: readers of the live alias
            # look it up here (``producer.memories.live``)
            metadata={MODEL_KEY: model_id(embedder)},
            # Qdrant's multitenancy setup: per-tenant HNSW graphs instead of one global graph.
            hnsw_config=qm.HnswConfigDiff(payload_m=16, m=0) if shared else None,
        )
    except UnexpectedResponse as exc:  # 409: another process created it first
        if exc.status_code != 409:
            raise
    # Local mode warns that payload indexes have no effect there (brute-force search), and
    # tests treat warnings as errors: only a server gets the indexes.
    if store.local:
        return
    tenant = qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=shared)
    indexes: tuple[tuple[str, Any], ...] = (
        ("user_id", tenant),
        ("kind", qm.PayloadSchemaType.KEYWORD),
        ("ns_key", qm.PayloadSchemaType.KEYWORD),  # profile namespace filter of retrieval
        ("deleted", qm.PayloadSchemaType.BOOL),  # tombstones, excluded by every read
    )
    for field, schema in indexes:
        store._call(store.client.create_payload_index, name, field, field_schema=schema, wait=True)
