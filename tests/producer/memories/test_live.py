"""The live collection alias on the read path (local-mode Qdrant): looked up at most once per
``refresh_s`` (a search pays no extra round trip), by one thread while the others keep the
current view, and followed to a collection of another model with that model's embedder."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from producer.memories.embeddings import HashEmbedder
from producer.memories.live import MODEL_KEY
from producer.memories.reader import MemoryReader


def _collection(client: QdrantClient, name: str, model: str, dims: int, text: str) -> None:
    client.create_collection(
        name, vectors_config=qm.VectorParams(size=dims, distance=qm.Distance.COSINE), metadata={MODEL_KEY: model}
    )
    payload = {
        "user_id": "alice",
        "content": text,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    vector = HashEmbedder(dims).embed([text])[0]
    client.upsert(name, points=[qm.PointStruct(id=str(uuid.uuid4()), vector=vector, payload=payload)])


@pytest.fixture
def client(tmp_path: Path) -> Any:
    c = QdrantClient(path=str(tmp_path / "qdrant"))
    _collection(c, "memories__hash-16", "hash-16", 16, "old collection: likes ramen")
    yield c
    c.close()


def _counting(client: QdrantClient, monkeypatch: pytest.MonkeyPatch, delay_s: float = 0.0) -> list[float]:
    calls: list[float] = []
    real = client.get_aliases

    def get_aliases(**kwargs: Any) -> Any:
        calls.append(time.monotonic())
        time.sleep(delay_s)
        return real(**kwargs)

    monkeypatch.setattr(client, "get_aliases", get_aliases)
    return calls


def test_searches_look_the_alias_up_once_per_refresh_interval(client, monkeypatch) -> None:
    calls = _counting(client, monkeypatch)
    reader = MemoryReader(client, HashEmbedder(16), refresh_s=0.3)
    for _ in range(30):
        assert reader.search("alice", "ramen")[0].content == "old collection: likes ramen"
    assert len(calls) == 1
    time.sleep(0.35)
    reader.search("alice", "ramen")
    assert len(calls) == 2


def test_one_thread_looks_the_alias_up_while_the_others_keep_the_current_view(client, monkeypatch) -> None:
    reader = MemoryReader(client, HashEmbedder(16), refresh_s=0.2)
    reader.search("alice", "ramen")  # first lookup done
    time.sleep(0.25)  # expired
    calls = _counting(client, monkeypatch, delay_s=0.5)  # a slow lookup
    found: list[int] = []
    threads = [threading.Thread(target=lambda: found.append(len(reader.search("alice", "ramen")))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert found == [1] * 6 and len(calls) == 1


def test_a_reader_follows_the_alias_to_another_model(client) -> None:
    """After a switch the reader embeds its queries with the new collection's model (from the
    collection's metadata) and reads the new collection, within refresh_s."""
    reader = MemoryReader(client, HashEmbedder(16), refresh_s=0.2)
    assert reader.embedder.dims == 16
    _collection(client, "memories__hash-32", "hash-32", 32, "new collection: likes ramen")
    client.update_collection_aliases(
        change_aliases_operations=[
            qm.CreateAliasOperation(
                create_alias=qm.CreateAlias(collection_name="memories__hash-32", alias_name="memories__live")
            )
        ]
    )
    time.sleep(0.25)
    assert [h.content for h in reader.search("alice", "ramen")] == ["new collection: likes ramen"]
    assert reader.embedder.dims == 32 and reader.embedder.name == "hash-32"
