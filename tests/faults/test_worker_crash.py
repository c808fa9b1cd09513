"""Worker processes SIGKILLed at every stage of a reflection lose no turn, write no duplicate
memory and leave no stuck lease.

Local-mode Qdrant allows one process at a time, so each stage runs one worker process that
owns the Qdrant folder; it dies, and the next one starts on the same folder."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest

from producer import Producer, ProducerConfig
from schemas.memory import HistoryEntry
from tests.conftest import leaked_keys, uid
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.procs import WorkerProcess, stored_memories, wait_until
from tests.support.scripted_llm import Reply
from worker.memory.events import read_events
from worker.pipeline.faults import CRASH_ENV

KILLED = -signal.SIGKILL


@pytest.mark.timeout(300)  # several worker processes in a row; generous for a loaded machine
def test_worker_killed_at_each_stage_reflects_every_turn_once(
    worker_env, spawn, scripted, redis_url, redis_client, prefix, tmp_path
) -> None:
    """before the LLM call → during it → after journaling → after the Qdrant write → healthy:
    every turn becomes exactly one memory with exactly one history entry and one change event
    (no event id twice, none missing), and the lease and in-flight entry are released."""
    from worker.pipeline.keys import WorkerKeys as Keys

    keys = Keys(prefix)
    target: dict[str, Any] = {}
    killed_in_llm = threading.Event()

    def kill_during_call(body: dict[str, Any]) -> Reply:
        proc: WorkerProcess | None = target.pop("proc", None)
        if proc is not None:  # the request reached the LLM: kill the worker before it answers
            os.kill(proc.pid, signal.SIGKILL)
            killed_in_llm.set()
        return insert_each_user_turn(body)

    scripted.set_responder(kill_during_call)
    user = uid("u")
    turns = [{"role": "user", "content": f"fact {i} about me", "id": f"m{i}"} for i in range(3)]
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0.3)) as producer:
        assert producer.submit(user, "t", turns).status == "accepted"

        # 1. before the LLM call
        assert spawn(worker_env | {CRASH_ENV: "before_llm"}).wait(90) == KILLED
        assert scripted.chat_calls == 0

        # 2. during the LLM call
        proc = spawn(worker_env)
        target["proc"] = proc
        assert proc.wait(90) == KILLED and killed_in_llm.is_set()
        # (more than one call only if the machine stalled a worker past its 2 s lease, so
        # that a second reflection took over; the fence then keeps one of them from committing)
        assert scripted.chat_calls >= 1

        # 3. after the commit plan is journaled, before Qdrant is written
        assert spawn(worker_env | {CRASH_ENV: "after_journal"}).wait(90) == KILLED
        assert redis_client.exists(keys.journal(user, "t"))
        calls = scripted.chat_calls

        # 4. after the Qdrant write, before the buffer is trimmed (replaying the journal: no LLM call)
        assert spawn(worker_env | {CRASH_ENV: "after_qdrant_write"}).wait(90) == KILLED
        assert scripted.chat_calls == calls
        assert redis_client.llen(keys.buffer(user, "t")) == 3, "turns must stay until the commit ends"

        # 5. a healthy worker finishes the journaled commit, then reflects new turns normally
        healthy = spawn(worker_env)
        wait_until(lambda: not redis_client.exists(keys.journal(user, "t")), 60, "journal replayed")
        assert scripted.chat_calls == calls
        producer.submit(user, "t", [{"role": "user", "content": "one more fact", "id": "m3"}])
        wait_until(
            lambda: redis_client.llen(keys.buffer(user, "t")) == 0
            and redis_client.zcard(keys.inflight_ss) == 0
            and redis_client.zcard(keys.due_ss) == 0,
            60,
            "the new turn reflected",
        )
        assert healthy.stop() == 0, healthy.log()

    assert scripted.chat_calls > calls
    assert not redis_client.exists(keys.lease(user)), "no stuck lease"
    assert redis_client.hlen(keys.dlq) == 0
    assert leaked_keys(redis_client, prefix) == []
    memories = stored_memories(redis_url, prefix, tmp_path / "qdrant", user)
    contents = sorted(m.content for m in memories)
    assert contents == sorted([*(t["content"] for t in turns), "one more fact"]), "each turn once, no duplicates"
    events = [e for e in read_events(redis_client, keys.events, count=10_000) if e.user_id == user]
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids)), "no event written twice"
    assert sorted(e.memory_id for e in events) == sorted(m.id for m in memories), "one event per memory"
    history = [HistoryEntry.model_validate_json(x) for x in redis_client.lrange(keys.history(user), 0, -1)]
    assert sorted(h.memory_id for h in history) == sorted(m.id for m in memories), "one history entry per memory"


@pytest.mark.timeout(200)
def test_a_dead_workers_lease_is_waited_out_without_a_busy_loop(
    worker_env, spawn, scripted, redis_url, redis_client, prefix
) -> None:
    """A worker dies holding a user's 8 s lease. Its thread comes back (in-flight deadline 2 s)
    and waits for the lease once, instead of being dispatched and deferred every second; and no
    result is stored for the wait (only the commit's)."""
    from worker.pipeline.keys import WorkerKeys

    keys = WorkerKeys(prefix)
    target: dict[str, Any] = {}

    def kill_during_call(body: dict[str, Any]) -> Reply:
        proc: WorkerProcess | None = target.pop("proc", None)
        if proc is not None:
            os.kill(proc.pid, signal.SIGKILL)
        return insert_each_user_turn(body)

    scripted.set_responder(kill_during_call)
    env = worker_env | {"REVERIE_LEASE_S": "8"}
    user = uid("u")
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0.3)) as producer:
        producer.submit(user, "t", [{"role": "user", "content": "I keep bees", "id": "m0"}])
        target["proc"] = first = spawn(env)
        assert first.wait(90) == KILLED
        assert redis_client.exists(keys.lease(user)), "the dead worker's lease is still held"
        healthy = spawn(env)
        wait_until(
            lambda: redis_client.llen(keys.buffer(user, "t")) == 0, 60, "the turn reflected after the lease ran out"
        )
        assert healthy.stop() == 0, healthy.log()
    stats = {k.decode(): int(v) for k, v in redis_client.hgetall(keys.stats).items()}
    assert stats.get("committed") == 1
    assert stats.get("deferred", 0) <= 2, f"deferred {stats.get('deferred')} times: a busy loop"
    assert stats.get("dispatched", 0) <= 4
    results = list(redis_client.scan_iter(match=f"{keys.celery_prefix()}celery-task-meta-*", count=1000))
    assert len(results) == 1, "one stored result: the commit's"
    assert redis_client.ttl(results[0]) > 0, "results expire"


@pytest.mark.timeout(300)
def test_a_joint_reflection_killed_at_each_commit_step_reflects_every_turn_once(
    worker_env, spawn, scripted, redis_url, redis_client, prefix, tmp_path
) -> None:
    """Three threads of one user due together are reflected in one run, with one journal per
    thread. Killed after finalizing the first sibling (its turns trimmed, the others' not), and
    in a second round right after journaling: each journal is replayed on its own, and every
    turn becomes exactly one memory with one change event, with no further LLM call."""
    from worker.pipeline.keys import WorkerKeys as Keys

    keys = Keys(prefix)
    scripted.set_responder(insert_each_user_turn)
    user, threads = uid("u"), ("a", "b", "c")
    facts: list[str] = []

    def submit_round(producer: Producer, n: int) -> None:
        for t in threads:  # all due before the next worker starts: one joint reflection
            turns = [{"role": "user", "content": f"fact {n}.{i} of thread {t}", "id": f"{n}{t}{i}"} for i in range(2)]
            producer.submit(user, t, turns)
            facts.extend(turn["content"] for turn in turns)

    def wait_all_reflected() -> None:
        wait_until(
            lambda: all(redis_client.llen(keys.buffer(user, t)) == 0 for t in threads)
            and not any(redis_client.exists(keys.journal(user, t)) for t in threads)
            and redis_client.zcard(keys.inflight_ss) == 0
            and redis_client.zcard(keys.due_ss) == 0,
            90,
            "every journal replayed",
        )

    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0.3)) as producer:
        submit_round(producer, 1)
        assert spawn(worker_env | {CRASH_ENV: "after_sibling_finalize"}).wait(90) == KILLED
        assert scripted.chat_calls == 1
        assert sorted(redis_client.llen(keys.buffer(user, t)) for t in threads) == [0, 2, 2]
        healthy = spawn(worker_env)
        wait_all_reflected()
        assert healthy.stop() == 0, healthy.log()
        assert scripted.chat_calls == 1, "replays call no model"

        submit_round(producer, 2)
        assert spawn(worker_env | {CRASH_ENV: "after_journal"}).wait(90) == KILLED
        assert scripted.chat_calls == 2
        assert all(redis_client.exists(keys.journal(user, t)) for t in threads), "one journal per thread"
        healthy = spawn(worker_env)
        wait_all_reflected()
        assert healthy.stop() == 0, healthy.log()
    assert scripted.chat_calls == 2, "replays call no model"
    assert not redis_client.exists(keys.lease(user)), "no stuck lease"
    assert leaked_keys(redis_client, prefix) == []
    memories = stored_memories(redis_url, prefix, tmp_path / "qdrant", user)
    assert sorted(m.content for m in memories) == sorted(facts), "each turn once, no duplicates"
    events = [e for e in read_events(redis_client, keys.events, count=10_000) if e.user_id == user]
    assert len({e.event_id for e in events}) == len(events) == len(memories), "one event per memory"
