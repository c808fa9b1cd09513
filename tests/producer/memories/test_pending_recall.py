"""``search(include_pending=True)``: a turn submitted seconds ago is recalled before any
reflection; once its reflection commits, the memory is found and the raw turn is not. Real Redis,
a real Celery worker, local Qdrant, the default in-wheel embedder."""

from __future__ import annotations

import time

import pytest

from producer.memories import MemoryReader
from producer.memories.pending import PENDING_LIMIT
from tests.conftest import uid
from tests.support.llm_scripts import insert_each_user_turn

RAMEN = "I just moved to Osaka and I love miso ramen"


def _system(make_system, scripted):
    scripted.set_responder(insert_each_user_turn)
    return make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test")


def test_a_buffered_turn_is_found_pending_then_as_a_memory_after_the_commit(make_system, scripted) -> None:
    """Before the debounce fires: the user's turn, marked pending, ranked with the memories; not the
    assistant's turn, not another user's. After the commit: the memory, and no pending hit."""
    system = _system(make_system, scripted)
    store = system.runtime.store
    keys = system.runtime.coordinator.keys
    user, other = uid("u"), uid("v")
    system.producer.submit(user, "old", [{"role": "user", "content": "I work as a nurse", "id": "o1"}], after_seconds=0)
    system.wait_for(lambda: len(system.committed(user)) == 1, what="the first commit")
    turns = [
        {"role": "user", "content": RAMEN, "id": "m1"},
        {"role": "assistant", "content": "Osaka has wonderful miso ramen shops", "id": "m2"},
    ]
    system.producer.submit(user, "t", turns, after_seconds=30)
    system.producer.submit(other, "t", [{"role": "user", "content": RAMEN, "id": "x1"}], after_seconds=30)

    assert not any(r.pending for r in store.search(user, "where does the user live?")), "off by default"
    hits = store.search(user, "where does the user live?", limit=5, include_pending=True)
    pending = [r for r in hits if r.pending]
    assert [(r.content, r.id, r.kind, r.source.thread_id) for r in pending] == [(RAMEN, "pending:t:m1", "turn", "t")]
    assert hits[0].pending and hits[0].score > next(r for r in hits if not r.pending).score, "ranked with memories"
    assert {r.user_id for r in hits} == {user}
    assert store.search(user, "where does the user live?", include_pending=True, min_score=0.99) == []

    system.runtime.coordinator.flush_due(100, user)  # the quiet period ends now
    system.wait_for(lambda: len(system.committed(user, "t")) == 1, what="the commit of t")
    assert system.redis.llen(keys.buffer(user, "t")) == 0, "the commit trims the buffer"
    after = store.search(user, "where does the user live?", limit=5, include_pending=True)
    assert not any(r.pending for r in after)
    assert after[0].content == RAMEN and after[0].source.thread_id == "t"
    assert any(r.pending for r in store.search(other, "where does the user live?", include_pending=True))
    system.runtime.coordinator.flush_due(100, other)
    system.wait_for(lambda: len(system.committed(other)) == 1, what="the other user's commit")


def test_only_the_newest_user_turns_are_embedded(make_system, scripted) -> None:
    """At most PENDING_LIMIT turns, newest first, over all the user's threads; and what it costs."""
    system = _system(make_system, scripted)
    store = system.runtime.store
    user = uid("u")
    for n in range(PENDING_LIMIT + 5):
        thread = f"t{n % 3}"
        system.producer.submit(user, thread, [{"role": "user", "content": f"short fact number {n}"}], after_seconds=30)
        time.sleep(0.002)
    found = store.pending.fetch(user)
    assert len(found) == PENDING_LIMIT
    assert [t.content for _, t in found][:2] == [
        f"short fact number {PENDING_LIMIT + 4}",
        f"short fact number {PENDING_LIMIT + 3}",
    ]
    store.search(user, "warm up")
    started = time.perf_counter()
    hits = store.search(user, "which fact has number 7?", limit=PENDING_LIMIT, include_pending=True)
    with_pending_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    store.search(user, "which fact has number 7?", limit=PENDING_LIMIT)
    plain_ms = (time.perf_counter() - started) * 1000
    print(f"\nsearch with {PENDING_LIMIT} pending turns: {with_pending_ms:.1f} ms, without: {plain_ms:.1f} ms")
    assert len(hits) == PENDING_LIMIT and all(r.pending for r in hits)


def test_include_pending_without_redis_is_a_clear_error(tmp_path) -> None:
    from qdrant_client import QdrantClient

    from producer.memories.embeddings.hashing import HashEmbedder

    reader = MemoryReader(QdrantClient(path=str(tmp_path / "q")), HashEmbedder(64))
    with pytest.raises(ValueError, match="include_pending needs Redis"):
        reader.search("u", "q", include_pending=True)
    with pytest.raises(ValueError, match="may contain only"):
        reader.search("u:1", "q")
    reader.close()
