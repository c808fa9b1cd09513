"""Extraction: tool generation and validation (pure), and the litellm path against the scripted server."""

from __future__ import annotations

import time

import pytest

from producer.memories.embeddings import HashEmbedder
from schemas.messages import BufferedTurn
from schemas.profiles import Profile
from tests.support.food import food_profile
from tests.support.scripted_llm import Fault, ScriptedLLM, tool_calls_reply
from worker.errors import LLMUnavailable
from worker.memory.extraction import LLMExtractor, OfflineExtractor
from worker.memory.extraction.tools import ToolCall, judge, tool_specs
from worker.memory.llm import LLMClient

FOOD = food_profile


def test_tools_follow_the_schema_and_the_flags() -> None:
    names = [t["function"]["name"] for t in tool_specs(FOOD)]
    assert names == ["insert_user_food_preference", "update_user_food_preference", "delete_memory"]
    update = tool_specs(FOOD)[1]["function"]["parameters"]
    assert update["required"][0] == "memory_id"
    assert "delete_memory" not in [t["function"]["name"] for t in tool_specs(Profile(name="d"))]


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [
        ("insert_user_food_preference", "{not json", "not valid JSON"),
        ("insert_user_food_preference", '{"food_name": "ramen", "preference": 300}', "preference"),
        ("update_user_food_preference", '{"memory_id": "9", "food_name": "x", "preference": 1}', "'9' is not one"),
        ("update_user_food_preference", '{"memory_id": "3f2a-uuid", "food_name": "x", "preference": 1}', "not one"),
        ("delete_memory", '{"memory_id": "0"}', None),
        ("drop_database", "{}", "unknown or disabled tool"),
    ],
)
def test_tool_calls_are_validated(name: str, arguments: str, error: str | None) -> None:
    verdict = judge(ToolCall("c1", name, arguments), FOOD, n_existing=2)
    if error is None:
        assert verdict.error is None and verdict.op is not None and verdict.op.alias == 0
    else:
        assert verdict.op is None and error in (verdict.error or "")


def test_deletes_are_refused_when_disabled() -> None:
    verdict = judge(ToolCall("c1", "delete_memory", '{"memory_id": "0"}'), Profile(name="d"), n_existing=1)
    assert verdict.error and "disabled" in verdict.error


def _turns(*texts: str) -> list[BufferedTurn]:
    return [BufferedTurn(role="user", content=t, ts_ms=0) for t in texts]


def test_retry_after_is_honoured(llm: ScriptedLLM) -> None:
    """A 429 with Retry-After: 1 is retried after about a second, then succeeds."""
    llm.reset()
    llm.enqueue(Fault.status(429, retry_after_s=1.0), tool_calls_reply([("insert_memory", {"content": "tea"})]))
    ex = LLMExtractor(Profile(name="default"), LLMClient(llm.model, api_base=llm.base_url, api_key="sk-test"))
    start = time.monotonic()
    out = ex.extract(_turns("I like tea"), [])
    assert time.monotonic() - start >= 0.9
    assert (out.llm_calls, [op.content for op in out.ops]) == (2, ["tea"])
    llm.reset()


def test_persistent_llm_errors_raise_llm_unavailable(llm: ScriptedLLM) -> None:
    llm.reset()
    llm.enqueue(Fault.status(500), Fault.status(500))
    ex = LLMExtractor(
        Profile(name="default"),
        LLMClient(llm.model, api_base=llm.base_url, api_key="sk-test", max_retries=1, backoff_max_s=0.1),
    )
    with pytest.raises(LLMUnavailable):
        ex.extract(_turns("x"), [])
    assert llm.chat_calls == 2
    llm.reset()


def test_offline_extractor_stores_user_turns_and_skips_near_duplicates() -> None:
    """Not an LLM: verbatim user statements; a repeat of one is no second memory (the latest
    wording wins); the assistant's turns are not facts about the user."""
    ex = OfflineExtractor(HashEmbedder(256))
    turns = [*_turns("I love miso ramen", "I love miso ramen!"), BufferedTurn(role="assistant", content="ok", ts_ms=0)]
    out = ex.extract(turns, [])
    assert [op.content for op in out.ops] == ["I love miso ramen!"]
    assert out.llm_calls == 0 and "not an LLM" in ex.name
