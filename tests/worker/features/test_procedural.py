"""Procedural memory: record conversations + feedback, optimize the prompt in one LLM call,
fetch it cheaply; every version is kept."""

from __future__ import annotations

import pytest

from producer.errors import InvalidSubmission
from producer.prompts import PromptStore
from tests.support.scripted_llm import tool_calls_reply
from worker.tasks import OPTIMIZE_PROMPT

BASE = "You are a helpful cooking assistant."
IMPROVED = "You are a helpful cooking assistant. Answer in at most three sentences."


def test_prompt_optimizer_round_trip(make_system, scripted) -> None:
    """Examples with scores → one optimizer call → new version served by get_prompt, old in history."""
    system = make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test")
    prompts = PromptStore(system.redis, system.runtime.coordinator.keys)
    assert prompts.get_prompt("chef", default=BASE) == BASE
    assert prompts.set_prompt("chef", BASE).version == 1
    convo = [{"role": "user", "content": "How do I boil pasta?"}, {"role": "assistant", "content": "Long essay..."}]
    prompts.record_example("chef", convo, score=0.1, comment="far too long")
    prompts.record_example("chef", convo, score=0.9)
    scripted.set_responder(
        lambda body: tool_calls_reply([("update_prompt", {"prompt": IMPROVED, "rationale": "feedback: too long"})])
    )
    result = system.app.send_task(OPTIMIZE_PROMPT, kwargs={"key": "chef"}).get(timeout=30)
    assert result["outcome"] == "updated" and result["version"] == 2 and result["llm_calls"] == 1
    request = scripted.chat_requests[0]
    assert BASE in request["messages"][1]["content"] and "far too long" in request["messages"][1]["content"]
    assert request["tools"][0]["function"]["name"] == "update_prompt"
    assert prompts.get_prompt("chef") == IMPROVED
    current = prompts.current("chef")
    assert (current.version, current.source, current.examples_used) == (2, "optimizer", 2)
    assert [v.prompt for v in prompts.history("chef")] == [BASE]
    assert prompts.examples("chef") == []  # consumed


def test_invalid_proposal_is_retried_then_stores_nothing(make_system, scripted) -> None:
    system = make_system(
        model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test", validation_retries=1
    )
    prompts = PromptStore(system.redis, system.runtime.coordinator.keys)
    prompts.set_prompt("chef", BASE)
    prompts.record_example("chef", [{"role": "user", "content": "hi"}], score=0.5)
    scripted.set_responder(lambda body: tool_calls_reply([("update_prompt", {"prompt": ""})]))
    result = system.app.send_task(OPTIMIZE_PROMPT, kwargs={"key": "chef"}).get(timeout=30)
    assert (result["outcome"], result["llm_calls"]) == ("invalid", 2)
    assert prompts.get_prompt("chef") == BASE and prompts.current("chef").version == 1
    assert len(prompts.examples("chef")) == 1  # kept for the next run


def test_compare_and_set_and_validation(make_system) -> None:
    system = make_system()
    prompts = PromptStore(system.redis, system.runtime.coordinator.keys)
    prompts.set_prompt("bot", "v1")
    assert prompts.set_prompt("bot", "stale write", expected_version=0) is None
    assert prompts.get_prompt("bot") == "v1"
    with pytest.raises(InvalidSubmission, match="score"):
        prompts.record_example("bot", [{"role": "user", "content": "x"}], score=7)
    with pytest.raises(ValueError):
        prompts.get_prompt("bad key")
