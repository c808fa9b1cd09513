"""select_existing against real qdrant-client local mode: what the extractor is shown, and the
work skipped for a user with no memories yet."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from producer.memories.embeddings import HashEmbedder
from schemas.memory import MemorySource
from schemas.messages import BufferedTurn
from schemas.profiles import DEFAULT
from schemas.reflection import MemoryOp
from worker.memory.retrieval import select_existing
from worker.memory.store import MemoryStore

SRC = MemorySource(thread_id="t1", generation=1, turn_ids=["m1"], turn_count=1)


class CountingEmbedder(HashEmbedder):
    """A real embedder that also counts the texts it was asked to embed."""

    def __init__(self) -> None:
        super().__init__(64)
        self.texts = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.texts += len(texts)
        return super().embed(texts)

    def embed_query(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MemoryStore]:
    s = MemoryStore(QdrantClient(path=str(tmp_path / "q")), HashEmbedder(64), namespace="mem")
    yield s
    s.close()


def remember(store: MemoryStore, user_id: str, content: str) -> str:
    ns = list(DEFAULT.format_namespace(user_id))
    op = MemoryOp(op="insert", id=str(uuid.uuid4()), content=content, ns=ns)
    store.apply(user_id, [op], source=SRC, now_ms=1_700_000_000_000)
    return op.id


def turns(*texts: str) -> list[BufferedTurn]:
    return [BufferedTurn(role="user", content=t, id=f"m{i}", ts_ms=i) for i, t in enumerate(texts)]


def test_a_user_without_memories_costs_no_embedding_and_sees_none(store: MemoryStore) -> None:
    """Another user's memories in the same collection do not count: bob has none, so nothing is
    embedded for him and nothing is shown."""
    remember(store, "alice", "likes miso ramen")
    embedder = CountingEmbedder()
    shown = select_existing(
        store, embedder, user_id="bob", thread_id="t", turns=turns("I like miso ramen"), profile=DEFAULT, limit=20
    )
    assert shown == []
    assert embedder.texts == 0


def test_a_user_with_memories_gets_the_vector_search(store: MemoryStore) -> None:
    """Once the user has a memory, the queries are embedded and searched as before: a memory the
    conversation does not name verbatim is still found by its vector."""
    mine = remember(store, "alice", "likes miso ramen")
    embedder = CountingEmbedder()
    shown = select_existing(
        store,
        embedder,
        user_id="alice",
        thread_id="t",
        turns=turns("likes miso ramen a lot"),
        profile=DEFAULT,
        limit=20,
    )
    assert [r.id for r in shown] == [mine]
    assert embedder.texts >= 1


def test_without_a_lexical_scan_the_vector_search_still_runs(store: MemoryStore) -> None:
    """lexical_scan_limit=0 says nothing about what is stored: the search is not skipped."""
    mine = remember(store, "alice", "likes miso ramen")
    embedder = CountingEmbedder()
    profile = replace(DEFAULT, lexical_scan_limit=0)
    shown = select_existing(
        store, embedder, user_id="alice", thread_id="t", turns=turns("miso ramen"), profile=profile, limit=20
    )
    assert [r.id for r in shown] == [mine]
    assert embedder.texts >= 1


def test_a_search_among_the_scanned_ids_finds_what_the_full_search_finds(store: MemoryStore) -> None:
    """Local mode names the scanned ids in the search: same hits, same order, same scores as the
    search over the whole collection; ids of another user find nothing (the user filter holds)."""
    theirs = [remember(store, "bob", f"bob fact {i} about ramen") for i in range(5)]
    mine = [remember(store, "alice", text) for text in ("likes miso ramen", "lives in Osaka", "plays the cello")]
    ns = "/".join(DEFAULT.format_namespace("alice"))
    vectors = HashEmbedder(64).embed(["ramen in Osaka", "music"])
    full = store.search_vectors("alice", vectors, limit_per_query=2, ns=ns)
    among = store.search_vectors("alice", vectors, limit_per_query=2, ns=ns, ids=mine)
    assert [(r.id, r.score) for r in among] == [(r.id, r.score) for r in full] and full
    assert store.search_vectors("alice", vectors, ns=ns, ids=theirs) == []
    assert store.search_vectors("alice", vectors, ns=ns, ids=[]) == []
    shown = select_existing(
        store, HashEmbedder(64), user_id="alice", thread_id="t", turns=turns("music"), profile=DEFAULT, limit=20
    )
    assert {r.id for r in shown} <= set(mine) and shown
