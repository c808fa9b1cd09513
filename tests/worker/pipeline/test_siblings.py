"""Joint reflection of sibling threads, on a real Redis, Qdrant local mode and the scripted model
through litellm: a user's threads due together are reflected in one run (one LLM call, one
commit), a thread still in its quiet period is left alone, and a turn that reaches a taken-in
sibling during extraction rolls the run back without stranding the reflected thread."""

from __future__ import annotations

import time
from typing import Any

from producer.keys import member
from schemas.reflection import ReflectArgs
from tests.conftest import leaked_keys, uid
from tests.support.contracts import llm_system
from tests.support.llm_scripts import conversation_lines, insert_each_user_turn
from tests.support.scripted_llm import Reply
from worker.pipeline.coordinator import decode_turn


def _submit(system: Any, user: str, thread: str, text: str, after_seconds: float = 0.0) -> None:
    system.producer.submit(user, thread, [{"role": "user", "content": text}], after_seconds=after_seconds)


def _claim_and_run(system: Any, user: str, thread: str) -> Any:
    """What the dispatcher and the task do for one thread, in this process."""
    [claim] = system.runtime.coordinator.claim([member(user, thread)], 60_000)
    return system.runtime.reflector.run(ReflectArgs(user_id=user, thread_id=thread, generation=claim.generation))


def _late_turn_in_b(system: Any, user: str) -> Any:
    """A responder that, during the first extraction, submits a new turn to thread b."""
    first = True

    def respond(body: dict[str, Any]) -> Reply:
        nonlocal first
        if first:
            first = False
            _submit(system, user, "b", "late fact of thread b", after_seconds=20)
        return insert_each_user_turn(body)

    return respond


def test_threads_due_together_are_reflected_in_one_call(make_system, scripted, redis_client, prefix) -> None:
    """Three threads of one user fall due at the same moment: one extraction call reads all
    their turns in submit order, one commit writes every memory, every buffer is emptied, each
    thread's status records the commit, and nothing is left scheduled."""
    system = llm_system(make_system, scripted)
    user = uid("u")
    for thread in ("a", "b", "c"):
        _submit(system, user, thread, f"fact of thread {thread}", after_seconds=20)
        time.sleep(0.005)  # distinct submit times: the merged order is theirs
    assert system.runtime.coordinator.flush_due(100, user) == 3  # all due now, as after an outage
    system.wait_for(lambda: len(system.committed(user)) == 1, what="the joint commit")
    system.wait_idle()
    assert scripted.chat_calls == 1
    request = scripted.chat_requests[0]
    # in submit order, each line led by its chat (numbered by first appearance, never the thread id)
    expected = ["[chat 1] user: fact of thread a", "[chat 2] user: fact of thread b", "[chat 3] user: fact of thread c"]
    assert conversation_lines(request, chats=True) == expected
    assert "several chats with the same user" in request["messages"][1]["content"]
    [result] = system.committed(user)
    assert sorted([result.thread_id, *result.siblings]) == ["a", "b", "c"]
    assert result.turns == 3 and result.inserted == 3
    assert sorted(m.content for m in system.runtime.store.list(user)) == [f"fact of thread {t}" for t in "abc"]
    keys = system.runtime.coordinator.keys
    for thread in "abc":
        assert redis_client.llen(keys.buffer(user, thread)) == 0
        assert not redis_client.exists(keys.journal(user, thread))
        status = system.producer.status(user, thread)
        assert status.state == "idle" and status.last is not None and status.last.outcome == "committed"
    stats = system.runtime.coordinator.stats()
    assert stats["joint_reflections"] == 1 and stats["joined_threads"] == 2
    assert not redis_client.exists(keys.lease(user))
    assert redis_client.scard(keys.waiters(user)) == 0
    assert [k for k in leaked_keys(redis_client, prefix) if user in k] == []


def test_a_sibling_still_in_its_quiet_period_is_not_taken(make_system, scripted, redis_client) -> None:
    """Thread b's debounce has not run out: a reflects alone, b's turn stays buffered and due."""
    system = llm_system(make_system, scripted, start_dispatcher=False)
    user = uid("u")
    _submit(system, user, "a", "fact of thread a")
    _submit(system, user, "b", "fact of thread b", after_seconds=20)
    result = _claim_and_run(system, user, "a")
    assert (result.outcome, result.siblings, result.turns) == ("committed", [], 1)
    keys = system.runtime.coordinator.keys
    assert redis_client.llen(keys.buffer(user, "b")) == 1
    assert redis_client.zscore(keys.due_ss, member(user, "b")) is not None
    assert [m.content for m in system.runtime.store.list(user)] == ["fact of thread a"]


def test_join_siblings_zero_reflects_each_thread_alone(make_system, scripted, redis_client) -> None:
    system = llm_system(make_system, scripted, start_dispatcher=False, join_siblings=0)
    user = uid("u")
    _submit(system, user, "a", "fact of thread a")
    _submit(system, user, "b", "fact of thread b")
    result = _claim_and_run(system, user, "a")
    assert (result.outcome, result.siblings) == ("committed", [])
    assert redis_client.llen(system.runtime.coordinator.keys.buffer(user, "b")) == 1
    assert _claim_and_run(system, user, "b").outcome == "committed"
    assert scripted.chat_calls == 2


def test_a_thread_with_a_failure_pending_is_not_taken(make_system, scripted, redis_client) -> None:
    """A sibling whose last attempt failed waits for its backoff (it may be a poison thread)."""
    system = llm_system(make_system, scripted, start_dispatcher=False)
    user = uid("u")
    _submit(system, user, "a", "fact of thread a")
    _submit(system, user, "b", "fact of thread b")
    redis_client.hset(system.runtime.coordinator.keys.thread(user, "b"), "attempts", 1)
    assert _claim_and_run(system, user, "a").siblings == []


def test_a_turn_in_a_taken_sibling_rolls_back_and_the_thread_runs_again(make_system, scripted, redis_client) -> None:
    """Rollback policy: a turn reaches b while a and b are reflected together. Nothing is
    written, both keep their turns, a is due again at once (nothing else would run it), and its
    next run leaves b, which is in a new quiet period, alone."""
    system = llm_system(make_system, scripted, start_dispatcher=False)
    user = uid("u")
    _submit(system, user, "a", "fact of thread a")
    _submit(system, user, "b", "fact of thread b")
    system.runtime.coordinator.claim([member(user, "b")], 60_000)  # b's task was sent too
    scripted.set_responder(_late_turn_in_b(system, user))
    rolled = _claim_and_run(system, user, "a")
    assert (rolled.outcome, rolled.turns) == ("rolled_back", 2)
    assert "sibling" in (rolled.reason or "")
    keys = system.runtime.coordinator.keys
    assert system.runtime.store.list(user) == []
    assert [redis_client.llen(keys.buffer(user, t)) for t in "ab"] == [1, 2]
    assert not redis_client.exists(keys.journal(user, "a")) and not redis_client.exists(keys.journal(user, "b"))
    assert not redis_client.exists(keys.lease(user))
    assert system.runtime.coordinator.due_candidates(10)[0] == [member(user, "a")]
    again = _claim_and_run(system, user, "a")
    assert (again.outcome, again.siblings) == ("committed", [])
    assert [m.content for m in system.runtime.store.list(user)] == ["fact of thread a"]
    assert redis_client.llen(keys.buffer(user, "b")) == 2
    assert scripted.chat_calls == 2


def test_finish_policy_commits_what_was_read_and_keeps_a_siblings_new_turn(make_system, scripted, redis_client) -> None:
    """Finish policy: a turn that reaches a taken-in sibling during extraction does not stop the
    commit; the sibling's turns that were read are trimmed, the new one stays buffered and due."""
    system = llm_system(make_system, scripted, start_dispatcher=False, overlap_policy="finish")
    user = uid("u")
    _submit(system, user, "a", "fact of thread a")
    _submit(system, user, "b", "fact of thread b")
    scripted.set_responder(_late_turn_in_b(system, user))
    result = _claim_and_run(system, user, "a")
    assert (result.outcome, result.siblings, result.turns) == ("committed", ["b"], 2)
    keys = system.runtime.coordinator.keys
    assert sorted(m.content for m in system.runtime.store.list(user)) == ["fact of thread a", "fact of thread b"]
    left = [decode_turn(raw).content for raw in redis_client.lrange(keys.buffer(user, "b"), 0, -1)]
    assert left == ["late fact of thread b"]
    assert redis_client.zscore(keys.due_ss, member(user, "b")) is not None
    assert redis_client.llen(keys.buffer(user, "a")) == 0
