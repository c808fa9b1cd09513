"""Payload indexes on a Qdrant server. No server runs on these machines and local mode skips
indexes, so this one test uses a stub client that records the calls (the only stub here)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar

from producer.memories.embeddings import HashEmbedder
from worker.memory.store import MemoryStore


def test_server_collections_get_tenant_namespace_and_tombstone_indexes() -> None:
    """A new server collection gets an index for every filtered field: user_id (is_tenant),
    kind, ns_key (profile namespace) and deleted (tombstones)."""
    created: list[tuple[str, Any]] = []

    class ServerStub:
        init_options: ClassVar[dict[str, Any]] = {"url": "http://qdrant.invalid:6333"}

        def collection_exists(self, name: str) -> bool:
            return False

        def get_aliases(self) -> Any:  # the live alias of ``reverie reembed``: none yet
            return SimpleNamespace(aliases=[])

        def create_collection(self, name: str, **kwargs: Any) -> None:
            created.append(("collection", name))

        def create_payload_index(self, name: str, field: str, field_schema: Any, wait: bool) -> None:
            created.append((field, field_schema))

    store = MemoryStore(ServerStub(), HashEmbedder(16))  # type: ignore[arg-type]
    store.ensure_collection("alice")  # what the first write does
    fields = {name: schema for name, schema in created if name != "collection"}
    assert set(fields) == {"user_id", "kind", "ns_key", "deleted"}
    assert fields["user_id"].is_tenant is True
