"""Soak: many threads × 5 turns from concurrent async producers, two worker processes.

Every thread is reflected exactly once for its quiet period (LLM calls = threads), memory counts
are exact, and Redis holds no leftover transient state (no buffer, journal or lease; every
remaining key has a TTL).

CI runs 300 threads. The full size is::

    REVERIE_SOAK_THREADS=10000 uv run pytest -m slow

Setup: local-mode Qdrant allows one process per folder, so each worker process owns its own
folder (a shard); every reflection writes its memories to the shard of the process that ran it.
That is sound for this test because a thread is reflected exactly once: its memories land in
exactly one shard, so the total over shards counts every memory once, and a duplicate (a second
reflection or a replayed write) would show up as an extra point. Existing-memory retrieval is
off (``existing_limit=0``), so a user whose threads ran in different shards is reflected the
same as if they shared one. Leases, claims and the debounce are shared through Redis, exactly as
with a Qdrant server."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

import pytest
from qdrant_client import QdrantClient

from producer import AsyncProducer, ProducerConfig
from tests.conftest import keys_under, leaked_keys
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.procs import settings_env, wait_until

THREADS = int(os.environ.get("REVERIE_SOAK_THREADS", "300"))
PRODUCERS = 64
WORKERS = 2
TURNS = [("user", 0), ("assistant", 1), ("user", 2), ("assistant", 3), ("user", 4)]
USER_TURNS = sum(role == "user" for role, _ in TURNS)


async def produce(config: ProducerConfig, statuses: Counter[str]) -> float:
    """PRODUCERS coroutines; each takes a thread and submits its 5 turns back to back."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(THREADS):
        queue.put_nowait(n)

    async def producer_task(producer: AsyncProducer) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            user, thread = f"user{n // 2}", f"thread{n}"
            for role, i in TURNS:
                msg = {"role": role, "content": f"{thread} {role} turn {i}", "id": f"{thread}-{i}"}
                statuses[(await producer.submit(user, thread, [msg])).status] += 1

    start = time.monotonic()
    async with AsyncProducer(config) as producer:
        await asyncio.gather(*(producer_task(producer) for _ in range(PRODUCERS)))
    return time.monotonic() - start


@pytest.mark.slow
@pytest.mark.timeout(max(120, 60 + THREADS // 2))
def test_soak_every_thread_reflected_once(spawn, scripted, redis_url, redis_client, prefix, tmp_path) -> None:
    """THREADS threads × 5 turns: one reflection each, exact memory counts, Redis back to baseline."""
    scripted.set_responder(insert_each_user_turn)
    base = settings_env(
        redis_url=redis_url,
        key_prefix=prefix,
        model=scripted.model,
        llm_api_base=scripted.base_url,
        llm_api_key="sk-test",
        after_seconds=2.0,
        max_wait_s=600,
        existing_limit=0,
        dispatch_max_inflight=64,
        dispatch_interval_s=0.05,
        lease_s=60,
        inflight_timeout_s=120,
        log_level="WARNING",
    )
    shards = [tmp_path / f"qdrant{i}" for i in range(WORKERS)]
    workers = [spawn(base | settings_env(qdrant_path=shard), concurrency=16) for shard in shards]
    statuses: Counter[str] = Counter()
    config = ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=2.0, timeout_s=5.0)
    submit_s = asyncio.run(produce(config, statuses))
    assert statuses == {"accepted": THREADS * len(TURNS)}, statuses

    def stats() -> dict[str, int]:
        return {k.decode(): int(v) for k, v in redis_client.hgetall(f"{prefix}:stats").items()}

    wait_until(lambda: stats().get("committed", 0) >= THREADS, 60 + THREADS * 0.2, "every thread committed")
    wait_until(
        lambda: redis_client.zcard(f"{prefix}:due_ss") == 0 and redis_client.zcard(f"{prefix}:inflight_ss") == 0,
        30,
        "idle",
    )
    for worker in workers:
        assert worker.stop() == 0, worker.log()

    final = stats()
    assert final["committed"] == THREADS
    assert final["reflected_turns"] == THREADS * len(TURNS)
    assert final.get("failed", 0) == 0 and final.get("dead_lettered", 0) == 0
    assert final.get("requeued", 0) == 0, "backpressure: no claim outlived its deadline waiting in the broker"
    # one LLM call per reflection; a reflection takes in the user's other threads due with it
    assert final.get("llm_calls", 0) == THREADS - final.get("joined_threads", 0)
    assert scripted.chat_calls == final["llm_calls"], "one LLM call per reflection"
    transient = [k for k in keys_under(redis_client, prefix) if any(p in k for p in (":buf:", ":journal:", ":lease:"))]
    assert transient == []
    assert leaked_keys(redis_client, prefix) == []

    contents: Counter[str] = Counter()
    for shard in shards:
        client = QdrantClient(path=str(shard))
        try:
            for collection in client.get_collections().collections:
                offset = None
                while True:
                    points, offset = client.scroll(collection.name, limit=1000, offset=offset, with_payload=True)
                    contents.update(str((p.payload or {})["content"]) for p in points)
                    if offset is None:
                        break
        finally:
            client.close()
    assert sum(contents.values()) == THREADS * USER_TURNS, "memory count exact"
    assert max(contents.values()) == 1, "no duplicate memory"
    turns = THREADS * len(TURNS)
    print(f"\nsoak: {THREADS} threads, {turns} turns submitted in {submit_s:.1f}s, {len(contents)} memories")
