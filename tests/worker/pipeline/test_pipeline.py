"""End to end: producer → Redis → dispatcher → Celery worker → scripted LLM → Qdrant."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.conftest import leaked_keys, uid
from tests.support.contracts import check_five_submits_reflect_once, check_one_user_never_interleaves, llm_system
from tests.support.llm_scripts import conversation_lines, insert_each_user_turn
from tests.support.scripted_llm import Reply, tool_calls_reply


def test_burst_on_one_thread_makes_one_llm_call(make_system, scripted, redis_client) -> None:
    """Six turns in quick succession → one reflection, one extraction call, six memories."""
    system = llm_system(make_system, scripted)
    user = uid("alice")
    for i in range(6):
        system.producer.submit(user, "t1", [{"role": "user", "content": f"fact number {i}", "id": f"m{i}"}])
    system.wait_for(lambda: len(system.committed(user)) == 1, what="one commit")
    system.wait_idle()
    assert scripted.chat_calls == 1
    assert system.committed(user)[0].turns == 6
    contents = sorted(m.content for m in system.runtime.store.list(user))
    assert contents == sorted(f"fact number {i}" for i in range(6))
    assert system.redis.llen(system.runtime.coordinator.keys.buffer(user, "t1")) == 0
    assert leaked_keys(redis_client, system.settings.key_prefix) == []


def test_five_submits_half_a_second_apart_reflect_once(make_system, scripted) -> None:
    """LangMem's local executor ran 2 reflections here; a trailing-edge debounce runs 1."""
    check_five_submits_reflect_once(llm_system(make_system, scripted), scripted, after_seconds=3)


def test_two_threads_reflect_separately(make_system, scripted) -> None:
    """Each (user, thread) has its own buffer and debounce (reflected one by one here: joined,
    they would share one reflection, ``test_siblings.py``)."""
    system = llm_system(make_system, scripted, join_siblings=0)
    user = uid("u")
    for thread in ("a", "b"):
        system.producer.submit(user, thread, [{"role": "user", "content": f"hello from {thread}"}])
    system.wait_for(lambda: len(system.committed(user)) == 2, what="two commits")
    assert sorted(r.thread_id for r in system.committed(user)) == ["a", "b"]
    assert scripted.chat_calls == 2


def test_max_wait_fires_on_a_thread_that_never_goes_quiet(make_system, scripted) -> None:
    """Turns every 0.2 s with a 1 s debounce would never be due; max_wait=1.5 s caps the wait (the
    stream lasts 6 s: room for a cold first reflection of the session on a loaded machine)."""
    system = llm_system(make_system, scripted)
    user = uid("u")
    deadline = time.monotonic() + 6.0
    i = 0
    while time.monotonic() < deadline:
        system.producer.submit(user, "t", [{"role": "user", "content": f"chatty {i}"}], after_seconds=1.0, max_wait=1.5)
        i += 1
        time.sleep(0.2)
    assert len(system.committed(user)) >= 1, "max_wait did not fire while the thread stayed busy"
    system.wait_idle()
    assert sum(r.turns for r in system.committed(user)) == i


@pytest.mark.timeout(120)
def test_max_wait_bounds_when_memories_land_even_when_the_model_is_slower_than_the_user(make_system, scripted) -> None:
    """A turn every 0.5 s for 14 s, a 1.5 s model, debounce 1 s, max_wait 5 s, rollback policy:
    each reflection is overtaken by a newer turn, yet every turn's memory is committed within
    max_wait plus one reflection of its arrival (slack for a loaded machine), exactly once."""
    latency_s, max_wait_s, slack_s = 1.5, 5.0, 3.0
    system = llm_system(make_system, scripted, max_wait_s=max_wait_s)
    scripted.latency_s = latency_s
    user = uid("u")
    sent: dict[str, float] = {}
    stop = time.monotonic() + 14.0
    i = 0
    while time.monotonic() < stop:
        text = f"turn number {i}"
        system.producer.submit(user, "t", [{"role": "user", "content": text, "id": f"m{i}"}], after_seconds=1.0)
        sent[text] = time.time()
        i += 1
        time.sleep(0.5)
    system.wait_for(lambda: len(system.runtime.store.list(user)) == len(sent), timeout_s=40, what="every turn")
    system.wait_idle()
    memories = system.runtime.store.list(user)
    assert sorted(m.content for m in memories) == sorted(sent), "every turn reflected exactly once"
    late = {m.content: round(m.created_at.timestamp() - sent[m.content], 1) for m in memories}
    bound = max_wait_s + latency_s + slack_s
    assert {text: s for text, s in late.items() if s > bound} == {}, f"committed later than {bound} s"
    assert int(system.runtime.coordinator.stats().get("committed_overdue", 0)) >= 1
    assert sum(r.turns for r in system.committed(user)) == len(sent)


def _slow_insert_first_call(gate: threading.Event) -> Any:
    def responder(body: dict[str, Any]) -> Reply:
        gate.set()
        return insert_each_user_turn(body)

    return responder


def test_turn_during_reflection_rolls_back_then_reflects_everything(make_system, scripted) -> None:
    """Rollback policy: the running job commits nothing; the next one sees all turns."""
    system = llm_system(make_system, scripted)
    in_llm = threading.Event()
    scripted.set_responder(_slow_insert_first_call(in_llm))
    scripted.latency_s = 1.5
    user = uid("u")
    system.producer.submit(
        user,
        "t",
        [{"role": "user", "content": "first", "id": "1"}, {"role": "user", "content": "second", "id": "2"}],
    )
    assert in_llm.wait(10)
    system.producer.submit(user, "t", [{"role": "user", "content": "third", "id": "3"}])
    system.wait_for(lambda: len(system.committed(user)) == 1, timeout_s=15, what="commit after rollback")
    system.wait_idle()
    assert [o for o in system.outcomes(user) if o != "deferred"] == ["rolled_back", "committed"]
    assert system.committed(user)[0].turns == 3
    assert sorted(m.content for m in system.runtime.store.list(user)) == ["first", "second", "third"]
    assert scripted.chat_calls == 2


def test_finish_policy_commits_the_snapshot_and_keeps_the_new_turn(make_system, scripted) -> None:
    """Finish policy: the running job commits its snapshot; the new turn gets its own reflection."""
    system = llm_system(make_system, scripted, overlap_policy="finish")
    in_llm = threading.Event()
    scripted.set_responder(_slow_insert_first_call(in_llm))
    scripted.latency_s = 1.5
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "first", "id": "1"}])
    assert in_llm.wait(10)
    system.producer.submit(user, "t", [{"role": "user", "content": "second", "id": "2"}])
    system.wait_for(lambda: len(system.committed(user)) == 2, timeout_s=15, what="two commits")
    assert [r.turns for r in system.committed(user)] == [1, 1]
    assert sorted(m.content for m in system.runtime.store.list(user)) == ["first", "second"]


def test_superseded_job_never_calls_the_llm(make_system, scripted) -> None:
    """A task for an old generation ends as superseded with zero LLM calls. It stores no result
    (nothing reads one; Flower gets the SUPERSEDED state from the task's event, see test_flower)."""
    from worker.tasks import REFLECT

    system = llm_system(make_system, scripted, after_seconds=30)
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "one"}])
    system.producer.submit(user, "t", [{"role": "user", "content": "two"}])  # generation 2, due in 30 s
    result = system.app.send_task(REFLECT, kwargs={"user_id": user, "thread_id": "t", "generation": 1})
    system.wait_for(lambda: system.outcomes(user) == ["superseded"], timeout_s=15, what="superseded")
    [summary] = [r for r in system.results if r.user_id == user]
    assert summary.llm_calls == 0
    assert scripted.chat_calls == 0
    assert result.state == "PENDING", "no result stored for a job that did no work"
    assert system.redis.llen(system.runtime.coordinator.keys.buffer(user, "t")) == 2
    system.redis.delete(system.runtime.coordinator.keys.due_ss)  # not due for 30 s: spare the idle wait


def test_reflections_of_one_user_never_interleave(make_system, scripted) -> None:
    """Two threads of one user due together, reflected one by one: the second extraction starts
    after the first ends."""
    check_one_user_never_interleaves(llm_system(make_system, scripted, join_siblings=0), scripted)


def test_sibling_threads_of_a_user_take_the_lease_in_turn_without_polling(make_system, scripted) -> None:
    """Three threads of one user fall due together; each reflection takes 1.5 s. The lease goes
    to one, and the others wait for its release (a hand-over), not for a fixed retry: at most
    1 + 2 deferrals in all, where retrying every second defers them about twice as often.
    (One by one: joined, they would share one reflection.)"""
    system = llm_system(make_system, scripted, join_siblings=0)
    scripted.latency_s = 1.5
    user = uid("u")
    for thread in ("a", "b", "c"):
        system.producer.submit(user, thread, [{"role": "user", "content": f"fact of thread {thread}"}])
    system.wait_for(lambda: len(system.committed(user)) == 3, timeout_s=30, what="three commits")
    system.wait_idle()
    assert system.outcomes(user).count("deferred") <= 3
    assert sorted(m.content for m in system.runtime.store.list(user)) == [f"fact of thread {t}" for t in "abc"]


def test_memories_are_searchable_per_user_only(make_system, scripted) -> None:
    """Search and list never cross users."""
    system = llm_system(make_system, scripted)
    alice, bob = uid("alice"), uid("bob")
    system.producer.submit(alice, "t", [{"role": "user", "content": "I love miso ramen"}])
    system.producer.submit(bob, "t", [{"role": "user", "content": "I love miso ramen too"}])
    system.wait_for(lambda: len(system.committed()) == 2, what="two commits")
    store = system.runtime.store
    assert [m.content for m in store.search(alice, "ramen")] == ["I love miso ramen"]
    assert [m.content for m in store.search(bob, "ramen")] == ["I love miso ramen too"]
    assert all(m.user_id == alice for m in store.list(alice))


def test_update_keeps_id_and_created_at(make_system, scripted) -> None:
    """The model sees memory '0' by alias; updating it keeps the id and creation time."""
    system = llm_system(make_system, scripted)
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "I like ramen"}])
    system.wait_for(lambda: len(system.committed(user)) == 1, what="first commit")
    before = system.runtime.store.list(user)[0]
    seen: list[list[str]] = []

    def update_first(body: dict[str, Any]) -> Reply:
        seen.append(conversation_lines(body))
        prompt = body["messages"][1]["content"]
        assert before.id not in prompt, "raw memory ids must never reach the model"
        assert "[0] (Memory) I like ramen" in prompt
        return tool_calls_reply([("update_memory", {"memory_id": "0", "content": "Likes miso ramen best"})])

    scripted.set_responder(update_first)
    system.producer.submit(user, "t", [{"role": "user", "content": "Actually miso ramen is my favourite"}])
    system.wait_for(lambda: len(system.committed(user)) == 2, what="second commit")
    [after] = system.runtime.store.list(user)
    assert seen == [["user: Actually miso ramen is my favourite"]]
    assert (after.id, after.created_at) == (before.id, before.created_at)
    assert after.content == "Likes miso ramen best" and after.version == 2
    assert after.updated_at >= before.updated_at
