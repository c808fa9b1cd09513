"""Cost counters tell the truth when things go wrong: every LLM call is counted, with its tokens,
including the retries after a 500 and the calls of reflections that failed."""

from __future__ import annotations

from tests.conftest import uid
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.scripted_llm import Fault, tool_calls_reply


def _system(make_system, scripted, **overrides):  # type: ignore[no-untyped-def]
    return make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test", **overrides)


def test_a_failed_call_and_its_retry_are_both_counted(make_system, scripted) -> None:
    scripted.set_responder(insert_each_user_turn)
    scripted.enqueue(Fault.status(500))
    system = _system(make_system, scripted)
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "I keep bees"}])
    system.wait_for(lambda: len(system.committed(user)) == 1, what="commit")
    stats = system.runtime.coordinator.stats()
    assert scripted.chat_calls == 2
    assert (stats["llm_calls"], stats["llm_calls_failed"]) == (2, 1)
    assert stats["prompt_tokens"] > 0


def test_a_poisoned_thread_counts_every_call_it_made(make_system, scripted) -> None:
    """The model never answers validly: two attempts × (one call + one correction round) = four
    paid calls, all in the stats although nothing was committed."""
    scripted.set_responder(lambda body: tool_calls_reply([("insert_memory", {"content": 5})]))
    system = _system(make_system, scripted, max_attempts=2, validation_retries=1)
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "poison"}])
    system.wait_for(lambda: system.runtime.coordinator.dead_letters() != [], timeout_s=30, what="dead letter")
    stats = system.runtime.coordinator.stats()
    assert scripted.chat_calls == 4
    assert stats["llm_calls"] == stats["llm_calls_in_failures"] == 4
    assert stats["prompt_tokens"] > 0 and stats["completion_tokens"] > 0
