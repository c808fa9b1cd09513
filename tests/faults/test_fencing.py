"""Fencing: a worker that stalls after journaling and loses its lease cannot write over the
work of the reflection that took the lease after it."""

from __future__ import annotations

import pytest

from producer.memories.embeddings import HashEmbedder
from schemas.memory import MemorySource
from schemas.reflection import MemoryOp
from tests.conftest import uid
from worker.errors import ReverieError
from worker.memory.extraction.base import PlannedOp
from worker.memory.planning import build_plan


def test_stale_lease_holder_cannot_write_qdrant_or_trim(make_system) -> None:
    """A journals an update, stalls, its lease expires; B takes the lease, finishes A's journal
    and commits a newer update. When A wakes up, its write and its trim are both refused."""
    system = make_system(start_dispatcher=False)
    store, coord, reflector = system.runtime.store, system.runtime.coordinator, system.runtime.reflector
    emb: HashEmbedder = system.runtime.embedder
    user = uid("u")
    original = MemoryOp(op="insert", id="00000000-0000-4000-8000-000000000001", content="likes tea")
    store.apply(user, [original], source=MemorySource(), now_ms=1_000)
    system.producer.submit(
        user, "t", [{"role": "user", "content": "actually coffee", "id": "m1"}], after_seconds=3600, max_wait=3600
    )
    [memory] = store.list(user)
    turns = coord.snapshot(user, "t", 10).turns

    def plan(text: str, now_ms: int):
        op = PlannedOp("update", "Memory", {"content": text}, text, alias=0)
        return build_plan(
            user_id=user,
            thread_id="t",
            generation=1,
            namespace=system.settings.namespace,
            turns=turns,
            existing=store.list(user),
            ops=[op],
            embedder=emb,
            kind="semantic",
            now_ms=now_ms,
        )

    token_a = coord.acquire_lease(user, 60_000)
    stale = plan("likes coffee (A)", 2_000)
    assert coord.prepare(token_a, stale, "rollback") == "ok"
    # A stalls; its lease expires and B gets a newer fencing token
    system.redis.delete(coord.keys.lease(user))
    token_b = coord.acquire_lease(user, 60_000)
    assert token_b > token_a
    reflector._apply(stale, token_b)  # B finishes A's journaled commit (the replay path)
    newer = plan("likes coffee, flat white (B)", 3_000)
    token_c = coord.acquire_lease(user, 60_000)
    assert coord.prepare(token_c, newer, "finish") == "ok"
    reflector._apply(newer, token_c)
    [after_b] = store.list(user)
    assert after_b.content == "likes coffee, flat white (B)"

    with pytest.raises(ReverieError, match="lease lost"):
        reflector._apply(stale, token_a)  # A wakes up
    [final] = store.list(user)
    assert (final.id, final.content, final.version) == (memory.id, after_b.content, after_b.version)
    assert coord.finalize(token_a, stale) == "lost_lease"
