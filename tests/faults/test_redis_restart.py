"""Redis killed and restarted (AOF, appendfsync always) under a steady load of submits, with a
worker process running: producers follow their failure policy, the worker reconnects, and
every turn that was accepted is reflected exactly once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from producer import AsyncProducer, ProducerConfig
from schemas.settings import Settings
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.procs import PrivateRedis, settings_env, wait_until
from worker.memory.store import open_store

THREADS = 6


@pytest.fixture
def aof_redis(tmp_path: Path) -> Any:
    server = PrivateRedis(tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop()


async def _load(producer: AsyncProducer, stop_at: float, log: list[tuple[str, str, str, float]]) -> None:
    """One task per thread, one turn every 50 ms; every receipt recorded."""

    async def one(thread: str) -> None:
        i = 0
        while time.monotonic() < stop_at:
            mid = f"{thread}-m{i}"
            start = time.monotonic()
            receipt = await producer.submit(
                "u-" + thread, thread, [{"role": "user", "content": f"{thread} turn {i}", "id": mid}]
            )
            log.append((thread, mid, receipt.status, time.monotonic() - start))
            i += 1
            await asyncio.sleep(0.05)

    await asyncio.gather(*(one(f"t{n}") for n in range(THREADS)))


@pytest.mark.timeout(300)  # several worker processes in a row; generous for a loaded machine
def test_redis_restart_under_load_loses_no_accepted_turn(aof_redis, spawn, scripted, tmp_path) -> None:
    """Submits keep coming while Redis is SIGKILLed and restarted from its AOF: accepted turns
    survive; during the outage submits return "dropped" within the timeout (policy ``drop``);
    the chat server's retry of dropped turns (same message ids) lands once Redis is back;
    the worker process reconnects and reflects every turn exactly once."""
    scripted.set_responder(insert_each_user_turn)
    prefix = "aof"
    env = settings_env(
        redis_url=aof_redis.url(),
        key_prefix=prefix,
        qdrant_path=tmp_path / "qdrant",
        model=scripted.model,
        llm_api_base=scripted.base_url,
        llm_api_key="sk-test",
        after_seconds=0.5,
        lease_s=5,
        inflight_timeout_s=3,
        dispatch_interval_s=0.05,
        log_level="WARNING",
    )
    worker = spawn(env)
    log: list[tuple[str, str, str, float]] = []
    config = ProducerConfig(redis_url=aof_redis.url(), key_prefix=prefix, after_seconds=0.5, timeout_s=0.25)

    async def scenario() -> None:
        async with AsyncProducer(config) as producer:
            load = asyncio.create_task(_load(producer, time.monotonic() + 4.0, log))
            await asyncio.sleep(1.5)
            aof_redis.server.terminate()  # SIGKILL: no shutdown save, only the AOF survives
            await asyncio.sleep(1.0)
            await asyncio.to_thread(aof_redis.start)
            await load
            # the chat server retries what was dropped, with the same message ids
            for thread, mid, status, _ in list(log):
                if status == "dropped":
                    n = mid.rsplit("-m", 1)[1]
                    msg = {"role": "user", "content": f"{thread} turn {n}", "id": mid}
                    receipt = await producer.submit("u-" + thread, thread, [msg])
                    # "duplicate": the submit had reached Redis but its reply timed out
                    assert receipt.status in ("accepted", "duplicate")

    asyncio.run(scenario())
    statuses = [s for _, _, s, _ in log]
    assert statuses.count("dropped") >= THREADS, "the outage was not exercised"
    assert statuses.count("accepted") >= THREADS * 10
    assert set(statuses) == {"accepted", "dropped"}
    print(f"\nredis restart: {statuses.count('accepted')} accepted, {statuses.count('dropped')} dropped then retried")
    assert max(elapsed for *_, s, elapsed in log if s == "dropped") < 1.0, "dropped submits must return fast"

    import redis

    client = redis.Redis.from_url(aof_redis.url())
    try:
        try:
            wait_until(
                lambda: all(client.llen(f"{prefix}:buf:u-t{n}:t{n}") == 0 for n in range(THREADS))
                and client.zcard(f"{prefix}:due_ss") == 0
                and client.zcard(f"{prefix}:inflight_ss") == 0,
                90,
                "every thread reflected after the restart",
            )
        except AssertionError as e:  # say what was left and what the worker logged
            left = {
                "buffered": [client.llen(f"{prefix}:buf:u-t{n}:t{n}") for n in range(THREADS)],
                "due": client.zrange(f"{prefix}:due_ss", 0, -1, withscores=True),
                "inflight": client.zrange(f"{prefix}:inflight_ss", 0, -1, withscores=True),
                "dead": client.hkeys(f"{prefix}:dlq"),
                "now": client.time(),
                "alive": worker.alive(),
            }
            raise AssertionError(f"{e}; left: {left}; worker log tail:\n{worker.log()[-4000:]}") from None
        assert client.hlen(f"{prefix}:dlq") == 0
    finally:
        client.close()
    assert worker.alive(), "the worker must survive the outage"
    assert worker.stop() == 0
    settings = Settings(redis_url=SecretStr(aof_redis.url()), key_prefix=prefix, qdrant_path=tmp_path / "qdrant")
    store = open_store(settings)
    try:
        for n in range(THREADS):
            thread = f"t{n}"
            expected = sorted({f"{thread} turn {mid.rsplit('-m', 1)[1]}" for t, mid, _, _ in log if t == thread})
            assert sorted(m.content for m in store.list("u-" + thread)) == expected, "each turn exactly once"
    finally:
        store.close()


def test_spool_policy_delivers_spooled_turns_in_order_when_redis_returns(aof_redis) -> None:
    """Policy ``spool``: while Redis is down submits return "spooled" (bounded by spool_max,
    then "dropped"); once it is back the spool is sent first, so the thread's buffer holds every
    turn in submission order."""
    import json

    import redis

    from producer import Producer

    config = ProducerConfig(
        redis_url=aof_redis.url(), key_prefix="spool", on_unavailable="spool", spool_max=3, timeout_s=0.25
    )

    def turn(i: int) -> dict[str, str]:
        return {"role": "user", "content": f"turn {i}", "id": f"m{i}"}

    async def scenario() -> list[str]:
        async with AsyncProducer(config) as producer:
            assert (await producer.submit("alice", "t", [turn(0)])).status == "accepted"
            aof_redis.server.terminate()
            statuses = [(await producer.submit("alice", "t", [turn(i)])).status for i in (1, 2, 3, 4)]
            assert producer.spooled == 3
            await asyncio.to_thread(aof_redis.start)
            assert (await producer.submit("alice", "t", [turn(5)])).status == "accepted"
            assert producer.spooled == 0
            return statuses

    assert asyncio.run(scenario()) == ["spooled", "spooled", "spooled", "dropped"]
    with Producer(config) as producer:  # the sync twin, flushed explicitly
        aof_redis.server.terminate()
        assert producer.submit("alice", "t", [turn(6)]).status == "spooled"
        aof_redis.start()
        assert producer.flush() == 1
    client = redis.Redis.from_url(aof_redis.url())
    try:
        buffered = [json.loads(raw)["content"] for raw in client.lrange("spool:buf:alice:t", 0, -1)]
    finally:
        client.close()
    assert buffered == ["turn 0", "turn 1", "turn 2", "turn 3", "turn 5", "turn 6"]
