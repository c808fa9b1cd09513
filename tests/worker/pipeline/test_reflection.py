"""Reflection failure paths and crash recovery, with the real worker and scripted LLM."""

from __future__ import annotations

from typing import Any

from producer.keys import member
from schemas.reflection import ReflectArgs
from tests.conftest import uid
from tests.support.contracts import llm_system
from tests.support.crash import journal_then_die
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.scripted_llm import Reply, tool_calls_reply
from worker.tasks import REFLECT


def test_invalid_arguments_go_back_to_the_model_then_commit(make_system, scripted) -> None:
    """A malformed call is answered with its error; the corrected call is written."""
    system = llm_system(make_system, scripted)
    scripted.enqueue(
        tool_calls_reply([("insert_memory", {"content": 123})]),
        tool_calls_reply([("insert_memory", {"content": "likes tea"})]),
    )
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "I like tea"}])
    system.wait_for(lambda: len(system.committed(user)) == 1, what="commit")
    assert scripted.chat_calls == 2
    feedback = scripted.chat_requests[1]["messages"]
    assert any(m["role"] == "tool" and "ERROR: invalid arguments: content" in m["content"] for m in feedback)
    assert [m.content for m in system.runtime.store.list(user)] == ["likes tea"]


def test_unknown_alias_is_rejected_and_nothing_is_written(make_system, scripted) -> None:
    """The model names memory '5' it was never shown: retried, then dead-lettered, nothing written."""
    system = llm_system(make_system, scripted, validation_retries=1, max_attempts=1)
    user = uid("u")

    def bad(_: dict[str, Any]) -> Reply:
        return tool_calls_reply(
            [("insert_memory", {"content": "fine"}), ("update_memory", {"memory_id": "5", "content": "x"})]
        )

    scripted.set_responder(bad)
    system.producer.submit(user, "t", [{"role": "user", "content": "hello"}])
    system.wait_for(lambda: "dead_lettered" in system.outcomes(user), what="dead letter")
    assert scripted.chat_calls == 2  # first try + one correction round
    assert system.runtime.store.list(user) == []
    [letter] = system.runtime.coordinator.dead_letters()
    assert (letter.user_id, letter.thread_id) == (user, "t")
    assert "still invalid" in letter.reason
    keys = system.runtime.coordinator.keys
    assert system.redis.llen(keys.buffer(user, "t")) == 1, "turns stay buffered for replay"
    assert system.redis.zcard(keys.due_ss) == 0
    assert system.runtime.coordinator.replay_dead(user, "t")
    scripted.set_responder(insert_each_user_turn)
    system.wait_for(lambda: len(system.committed(user)) == 1, what="commit after replay")
    assert [m.content for m in system.runtime.store.list(user)] == ["hello"]


def test_failure_is_retried_with_backoff_from_redis(make_system, scripted) -> None:
    """An LLM 500 after retries fails the attempt; the thread is rescheduled, then commits."""
    from tests.support.scripted_llm import Fault

    system = llm_system(make_system, scripted, llm_max_retries=0)
    scripted.enqueue(Fault.status(500))
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "persist me"}])
    system.wait_for(lambda: len(system.committed(user)) == 1, timeout_s=20, what="commit after retry")
    assert system.outcomes(user)[0] == "failed"
    assert [m.content for m in system.runtime.store.list(user)] == ["persist me"]


def test_malformed_task_arguments_fail_naming_the_field(make_system, scripted) -> None:
    """A reflect task sent by hand with bad ids fails with a clear error and touches nothing."""
    system = llm_system(make_system, scripted)
    result = system.app.send_task(REFLECT, kwargs={"user_id": "a:b", "thread_id": "t", "generation": 0})
    try:
        result.get(timeout=15)
        raise AssertionError("task should have failed")
    except Exception as e:
        assert type(e).__name__ == "InvalidTaskArguments"
        assert "user_id" in str(e) and "generation" in str(e)
    assert scripted.chat_calls == 0


def test_a_journal_left_by_a_dead_worker_is_replayed_without_the_llm(make_system, scripted) -> None:
    """Crash between journaling and trimming: the next run applies the journal, no duplicate."""
    system = llm_system(make_system, scripted, after_seconds=30)
    runtime = system.runtime
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "remember me", "id": "m1"}])
    # Do what a worker does up to the commit point, then "die" before the trim.
    coordinator, reflector = runtime.coordinator, runtime.reflector
    plan, _ = journal_then_die(system, user, "t", ["remember me"])
    result = reflector.run(ReflectArgs(user_id=user, thread_id="t", generation=plan.generation))
    assert result.outcome == "replayed"
    assert scripted.chat_calls == 0
    memories = runtime.store.list(user)
    assert [m.id for m in memories] == [plan.ops[0].id]
    assert system.redis.llen(coordinator.keys.buffer(user, "t")) == 0
    assert coordinator.journal_raw(user, "t") is None


def test_a_deferred_task_older_than_the_last_dispatch_does_not_queue_the_thread_again(make_system) -> None:
    """A stale task finds the user's lease busy: when a newer generation's task was already
    dispatched, it covers the thread, so the stale one must not put it back in the due set
    (that sent an extra task that found nothing to do); a current one waits for the lease."""
    system = make_system(start_dispatcher=False)
    coordinator, keys = system.runtime.coordinator, system.runtime.coordinator.keys
    user = uid("u")
    for text in ("one", "two", "three"):
        system.producer.submit(user, "t", [{"role": "user", "content": text}], after_seconds=60, max_wait=120)
    system.redis.zadd(keys.due_ss, {member(user, "t"): 0})  # due now, claimed by hand (no dispatcher)
    [claim] = coordinator.claim([member(user, "t")], 60_000)
    assert claim.generation == 3
    holder = coordinator.acquire_lease(user, 60_000)  # the generation-3 task runs
    assert holder > 0
    stale = system.runtime.reflector.run(ReflectArgs(user_id=user, thread_id="t", generation=2))
    assert stale.outcome == "deferred"
    assert system.redis.zscore(keys.due_ss, member(user, "t")) is None, "the stale task queued the thread again"
    assert system.redis.zscore(keys.inflight_ss, member(user, "t")) is not None, "the running task's claim stays"
    current = system.runtime.reflector.run(ReflectArgs(user_id=user, thread_id="t", generation=3))
    assert current.outcome == "deferred"
    assert system.redis.zscore(keys.due_ss, member(user, "t")) is not None, "a current task waits for the lease"
    system.redis.delete(keys.lease(user))
    system.redis.zrem(keys.due_ss, member(user, "t"))
