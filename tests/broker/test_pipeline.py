"""The whole pipeline with RabbitMQ as the broker: worker processes (dispatcher inside) on quorum
queues with publisher confirms, the coordination state on Redis, the scripted LLM, local Qdrant.

submit → debounce → one reflection per quiet period → memories in Qdrant; and a worker SIGKILLed
mid-reflection: RabbitMQ puts its unacknowledged message back, the next worker takes it, and
every turn becomes exactly one memory."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from producer import Producer, ProducerConfig
from schemas.settings import Settings
from tests.conftest import keys_under, leaked_keys, uid
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.procs import WorkerProcess, wait_until
from tests.support.scripted_llm import Reply, ScriptedLLM
from worker.memory.store import open_store

pytestmark = pytest.mark.rabbitmq
KILLED = -signal.SIGKILL


def _memories(redis_url: str, prefix: str, qdrant: Path, user: str) -> list[str]:
    """Read after the workers stopped: local-mode Qdrant is one process's folder."""
    store = open_store(Settings(redis_url=SecretStr(redis_url), key_prefix=prefix, qdrant_path=qdrant))
    try:
        return sorted(m.content for m in store.list(user))
    finally:
        store.close()


def _stats(client: redis.Redis, prefix: str) -> dict[str, int]:
    from worker.pipeline.coordinator import Coordinator
    from worker.pipeline.keys import WorkerKeys

    return {k: int(v) for k, v in Coordinator(client, WorkerKeys(prefix)).stats().items()}


def _no_redis_broker_keys(client: redis.Redis, prefix: str) -> None:
    """Celery used RabbitMQ: no kombu queue or binding key under the prefix in Redis (results only)."""
    celery = [k for k in keys_under(client, prefix) if k.startswith(f"{prefix}:celery:")]
    assert [k for k in celery if "celery-task-meta-" not in k] == [], celery


@pytest.mark.timeout(180)
def test_one_reflection_per_quiet_period_on_rabbitmq(
    rabbit, rabbit_env, spawn, scripted: ScriptedLLM, redis_url, redis_client, prefix, tmp_path
) -> None:
    """Three threads, three turns each, then a second burst on one of them: four quiet periods,
    four LLM calls, every turn once in Qdrant, the queue drained, nothing left in flight."""
    scripted.set_responder(insert_each_user_turn)
    worker = spawn(rabbit_env)
    users = [uid("u"), uid("v")]
    threads = (("t1", users[0]), ("t2", users[0]), ("t3", users[1]))
    expected: dict[str, list[str]] = {u: [] for u in users}
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0.3)) as producer:
        for thread, user in threads:
            turns = [{"role": "user", "content": f"{thread} fact {i}", "id": f"m{i}"} for i in range(3)]
            assert producer.submit(user, thread, turns[:2]).status == "accepted"
            assert producer.submit(user, thread, turns[2:]).status == "accepted"
            expected[user] += [t["content"] for t in turns]

        def reflected(n: int) -> bool:
            committed = _stats(redis_client, prefix).get("committed", 0)
            return committed == n and all(producer.status(u, t).buffered_turns == 0 for t, u in threads)

        wait_until(lambda: reflected(3), 60, "three quiet periods reflected")
        assert scripted.chat_calls == 3
        producer.submit(users[0], "t1", [{"role": "user", "content": "t1 later fact", "id": "m9"}])
        expected[users[0]].append("t1 later fact")
        wait_until(lambda: reflected(4), 60, "the second quiet period of t1 reflected")
        assert not producer.status(users[0], "t1").in_flight
    assert worker.stop() == 0, worker.log()
    assert scripted.chat_calls == 4, "one LLM call per quiet period"
    assert rabbit.queue_depth(f"{prefix}.tasks") == 0
    for user in users:
        assert _memories(redis_url, prefix, tmp_path / "qdrant", user) == sorted(expected[user])
    _no_redis_broker_keys(redis_client, prefix)
    assert leaked_keys(redis_client, prefix) == []


@pytest.mark.timeout(200)
def test_a_worker_killed_mid_reflection_has_its_message_redelivered(
    rabbit, rabbit_env, spawn, scripted: ScriptedLLM, redis_url, redis_client, prefix, tmp_path
) -> None:
    """SIGKILL while the LLM answers: the message was not acknowledged (acks late), so RabbitMQ
    puts it back in the queue; a new worker takes it. The in-flight deadline (30 s here) never
    fires, so the redelivery, not Redis's requeue, brings the work back. Every turn becomes
    exactly one memory; no lease, journal or message is left."""
    from worker.pipeline.keys import WorkerKeys

    keys = WorkerKeys(prefix)
    queue = f"{prefix}.tasks"
    target: dict[str, Any] = {}

    def kill_during_call(body: dict[str, Any]) -> Reply:
        proc: WorkerProcess | None = target.pop("proc", None)
        if proc is not None:  # the request reached the LLM: kill the worker before it answers
            os.kill(proc.pid, signal.SIGKILL)
        return insert_each_user_turn(body)

    scripted.set_responder(kill_during_call)
    env = rabbit_env | {"REVERIE_INFLIGHT_TIMEOUT_S": "30"}
    user = uid("u")
    turns = [{"role": "user", "content": f"fact {i} about me", "id": f"m{i}"} for i in range(3)]
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0.3)) as producer:
        target["proc"] = first = spawn(env)
        assert producer.submit(user, "t", turns).status == "accepted"
        assert first.wait(90) == KILLED
        assert scripted.chat_calls == 1
        wait_until(lambda: rabbit.queue_depth(queue) == 1, 10, "the unacked message back in the queue")
        assert producer.status(user, "t").in_flight, "Redis still holds the claim: no requeue yet"

        second = spawn(env)
        wait_until(lambda: producer.status(user, "t").buffered_turns == 0, 60, "the turns reflected")
        assert second.stop() == 0, second.log()
        status = producer.status(user, "t")
        assert status.state == "idle" and not status.in_flight and status.committed_generation == 1

    stats = _stats(redis_client, prefix)
    assert stats.get("committed") == 1 and stats.get("requeued", 0) == 0, stats
    assert scripted.chat_calls == 2, "the killed call and the committed one"
    assert rabbit.queue_depth(queue) == 0
    assert not redis_client.exists(keys.lease(user)), "no stuck lease"
    assert not redis_client.exists(keys.journal(user, "t"))
    assert _memories(redis_url, prefix, tmp_path / "qdrant", user) == sorted(t["content"] for t in turns)
    _no_redis_broker_keys(redis_client, prefix)
    assert leaked_keys(redis_client, prefix) == []


def test_a_worker_on_rabbitmq_logs_no_broker_password(rabbit, rabbit_env, spawn, prefix) -> None:
    """A worker starts (consuming its prefix's queue), stops, and its logs and banner never show
    the broker URL's password."""
    worker = spawn(rabbit_env | {"REVERIE_LOG_LEVEL": "INFO"})
    wait_until(lambda: rabbit.consumers(f"{prefix}.tasks") == 1, 60, "the worker consuming its queue")
    assert worker.stop() == 0, worker.log()
    log = worker.log() + Path(f"{worker.log_path}.stdout").read_text(errors="replace")
    assert "guest:guest@" not in log and ":guest@" not in log, "Celery's banner and logs mask the URL"
    assert "amqp://" in log, "the banner was read"
