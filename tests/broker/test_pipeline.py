"""The whole pipeline with RabbitMQ as the broker: worker processes (dispatcher inside) on quorum
queues with publisher confirms, the coordination state on Redis, the scripted LLM, local Qdrant.

submit → debounce → one reflection per quiet period → memories in Qdrant; and a worker SIGKILLed
mid-reflection: RabbitMQ puts its unacknowledged message back, the next worker takes it, and
every turn becomes exactly one memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from producer import Producer, ProducerConfig
from tests.conftest import ROOT_DIR, keys_under, leaked_keys, uid
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.procs import WorkerProcess, stored_memories, wait_until
from tests.support.scripted_llm import Reply, ScriptedLLM

pytestmark = pytest.mark.rabbitmq
KILLED = -signal.SIGKILL


def _memories(redis_url: str, prefix: str, qdrant: Path, user: str) -> list[str]:
    """Read after the workers stopped: local-mode Qdrant is one process's folder."""
    return sorted(m.content for m in stored_memories(redis_url, prefix, qdrant, user))


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
    four thread commits, one LLM call per reflection (two threads of a user due together may
    share one), every turn once in Qdrant, the queue drained, nothing left in flight."""
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
        joined = _stats(redis_client, prefix).get("joined_threads", 0)
        assert scripted.chat_calls == 3 - joined
        producer.submit(users[0], "t1", [{"role": "user", "content": "t1 later fact", "id": "m9"}])
        expected[users[0]].append("t1 later fact")
        wait_until(lambda: reflected(4), 60, "the second quiet period of t1 reflected")
        assert not producer.status(users[0], "t1").in_flight
    assert worker.stop() == 0, worker.log()
    assert scripted.chat_calls == 4 - joined, "one LLM call per reflection"
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


@pytest.mark.timeout(150)
def test_reverie_worker_consumes_its_prefixed_queue_and_logs_no_password(
    rabbit, redis_url, rabbitmq_url, prefix, tmp_path
) -> None:
    """``reverie worker`` (the CLI a deployment runs) on RabbitMQ consumes ``<prefix>.tasks``,
    stops cleanly on SIGTERM, and neither its logs nor Celery's banner show the password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_")} | {
        "REVERIE_REDIS_URL": redis_url,
        "REVERIE_BROKER_URL": rabbitmq_url,
        "REVERIE_KEY_PREFIX": prefix,
        "REVERIE_QDRANT_PATH": str(tmp_path / "qdrant"),
        "REVERIE_LOCAL_READS": "false",
        "REVERIE_EMBEDDING_MODEL": "hash-64",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    exe = Path(sys.executable).with_name("reverie")
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen([str(exe), "worker"], env=env, cwd=ROOT_DIR, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: rabbit.consumers(f"{prefix}.tasks") == 1 or proc.poll() is not None, 90, "the worker consuming"
        )
        assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        proc.terminate()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
    text = (tmp_path / "worker.log").read_text(errors="replace")
    password = rabbitmq_url.split("@")[0].rsplit(":", 1)[-1]
    assert f"{prefix}.tasks" in text and "amqp://" in text, "the banner names the queue and the transport"
    assert f":{password}@" not in text, "Celery's banner and logs mask the URL's password"
